"""
Convert DeiT/ViT, original YOLOS or Hugging Face YOLOS weights into a yolos_d2 checkpoint::

    yolos-convert SRC DST --format {deit,yolos,hf} [--config-file CONFIG] [KEY=VALUE ...]

(also ``python -m yolos_d2.tools.convert``).

SRC is a checkpoint file (for ``hf``, the folder written by ``save_pretrained``); DST is written
atomically as ``{"model": state_dict, "new_keys": [...]}``, loadable with ``DetectionCheckpointer``
or as ``train.init_checkpoint``. "new_keys" names the model's tensors the source format does not
have (for ``deit``: the ``[DET]`` tokens, their and the mid-layer position embeddings, the heads);
``YOLOSCheckpointer`` leaves them to the model's initialisation. With ``--config-file`` (required
for ``deit``, whose position embedding is resized to the config's ``init_pe_size``) the result is
checked against the model the config builds and the keys it leaves to the model's initialisation
are listed; the config is loaded and checked as training checks it.
"""
import argparse
import logging

from detectron2.config import instantiate

from ..checkpoint import check_checkpoint_fits, convert_file, save_checkpoint_atomic
from ..checkpoint.converters import NEW_KEYS
from . import cli

logger = logging.getLogger(__name__)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="checkpoint file, or Hugging Face model folder for --format hf")
    parser.add_argument("dst", help="output .pth file")
    parser.add_argument("--format", required=True, choices=["deit", "yolos", "hf"], help="format of SRC")
    cli.add_config_arguments(
        parser, required=False, config_help="the target model's config (required for deit)", weights=False, device=False
    )
    parser.add_argument(
        "--keep-class-ids",
        action="store_true",
        help="keep a 92-output COCO class head (91 category ids + no-object) instead of mapping it "
        "to detectron2's 80 contiguous classes",
    )
    args = cli.parse_args(parser, argv)

    if args.config_file is None:
        if args.format == "deit":
            parser.error("--format deit needs --config-file: the position embedding is resized to its init_pe_size")
        if args.opts:
            parser.error(f"KEY=VALUE overrides ({' '.join(args.opts)}) need --config-file")
        model = None
    else:
        with cli.usage_errors(parser):  # a config mistake, or an argument the model refuses (e.g. init_pe_size)
            model = instantiate(cli.load_config(args.config_file, args.opts).model)
    init_grid = model.detector.backbone.init_grid if model is not None else None
    try:
        state, dropped = convert_file(args.src, args.format, init_grid, args.keep_class_ids)
        if model is not None:
            check_checkpoint_fits(model, state, args.src)
    except (FileNotFoundError, KeyError, ValueError) as e:
        logger.error("%s", e.args[0] if e.args else e)
        return 1
    if dropped:
        logger.info("Left out %d source keys not used by YOLOS: %s", len(dropped), ", ".join(dropped))
    if model is not None:
        new = sorted(set(model.state_dict()) - set(state))
        if new:
            logger.info("Left to the model's initialisation (%d): %s", len(new), ", ".join(new))
    checkpoint = {"model": state, "__author__": "yolos_d2.tools.convert", "new_keys": NEW_KEYS[args.format]}
    save_checkpoint_atomic(checkpoint, args.dst)
    logger.info("Wrote %d tensors to %s", len(state), args.dst)
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
