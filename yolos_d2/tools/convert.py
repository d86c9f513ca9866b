"""
Convert weights into yolos_d2 checkpoints, and yolos_d2 checkpoints into other formats::

    yolos-convert SRC DST --format FORMAT [--config-file CONFIG] [--keep-class-ids] [KEY=VALUE ...]
    yolos-convert SRC DST --to {hf,yolos} --config-file CONFIG [--keep-class-ids] [KEY=VALUE ...]

(also ``python -m yolos_d2.tools.convert``).

In (``--format``): SRC is an original YOLOS checkpoint (``yolos``), a transformers
``save_pretrained`` folder (``hf``) or a ViT release to initialise the backbone from (``deit``,
``deit3``, ``augreg``, ``mae``, ``mocov3``, ``dino``; see docs/weights.md). DST is written
atomically as ``{"model": state_dict, "new_keys": [...], "position_embedding_grids": {...}}``,
loadable with ``DetectionCheckpointer`` or as ``train.init_checkpoint``. "new_keys" names the
model's tensors the source format does not have (for the ViT releases: the ``[DET]`` tokens, their
and the mid-layer position embeddings, the heads); ``YOLOSCheckpointer`` leaves them to the
model's initialisation. With ``--config-file`` (required for the ViT releases, whose position
embedding is resized to the config's ``init_pe_size``) the position embeddings are resized to
the config's sizes, the result is checked against the model the config builds and the keys it
leaves to the model's initialisation are listed; the config is loaded and checked as training
checks it.

Out (``--to``): SRC is a yolos_d2 checkpoint of the config's model, loaded as the tools load
weights (:func:`~yolos_d2.inference.build_inference_model`): every tensor of the model must be in
it unless ``train.init_checkpoint_strict=False``, its EMA of the weights is converted where it has
one unless ``train.eval_with_ema=False`` (the log says which), and weights holding infinite or NaN
values are refused.
``hf`` writes the folder DST for transformers' ``YolosForObjectDetection.from_pretrained``
(config.json, labelled with the class names of the config's test dataset, and
model.safetensors); ``yolos`` writes the original code's checkpoint DST, ``{"model": its
Detector's state dict, "args": the init_pe_size, mid_pe_size and det_token_num to build it with}``.

Both ways, the weights written must hold finite values, and KEY=VALUE overrides may set only the
config keys the conversion reads: ``model.*`` in, and for ``--to`` also ``dataloader.*`` (the class
names), ``train.init_checkpoint_strict`` and ``train.eval_with_ema``. A DST that would replace
SRC or the config file, a DST file that is a folder, and for ``--to hf`` a DST that is a file or a
folder that is not empty, are refused before anything is done (exit status 2). DST is written
atomically (for ``--to hf`` the whole folder): a conversion that fails, e.g. on a full disk,
leaves no partial file and ends the command (exit status 1), naming it.
"""
import argparse
import dataclasses
import logging
import os
from typing import List, Sequence

import torch
from detectron2.config import instantiate

from ..config import prepare_config
from ..checkpoint import check_checkpoint_fits, convert_file, save_checkpoint_atomic
from ..checkpoint.checkpointer import check_finite
from ..checkpoint.formats import FORMATS_IN, FORMATS_OUT
from ..checkpoint.huggingface import save_huggingface
from ..checkpoint.key_maps import Converted
from ..checkpoint.original import save_original_yolos
from ..checkpoint.position_embeddings import (
    GRIDS_KEY,
    grids_record,
    position_embedding_grids,
    resize_position_embeddings,
)
from ..checkpoint.vit_families import FAMILIES
from ..inference import build_inference_model, metadata_of_test_dataset
from ..utils.file_io import create_atomic
from . import cli
from .outputs import check_file_output, check_folder_output, check_outputs

logger = logging.getLogger(__name__)

# The config keys each direction reads (prefixes): an override of another would change nothing.
KEYS_READ_IN = ("model.",)
KEYS_READ_OUT = ("model.", "dataloader.", "train.init_checkpoint_strict", "train.eval_with_ema")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="checkpoint file, or Hugging Face model folder for --format hf")
    parser.add_argument("dst", help="output .pth file, or folder for --to hf")
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--format", choices=FORMATS_IN, help="convert SRC, in this format, to a yolos_d2 checkpoint")
    direction.add_argument("--to", choices=FORMATS_OUT, help="convert the yolos_d2 checkpoint SRC to this format")
    cli.add_config_arguments(
        parser,
        required=False,
        config_help="the model's config (required for the ViT releases and for --to)",
        weights=False,
        device=False,
    )
    parser.add_argument(
        "--keep-class-ids",
        action="store_true",
        help="keep a class head over COCO's category ids (92 outputs: 91 ids + no-object) as it is: "
        "do not map it to detectron2's 80 contiguous classes, nor these back to COCO's ids for --to yolos",
    )
    args = cli.parse_args(parser, argv)
    if args.to is not None:
        return _convert_out(parser, args)
    return _convert_in(parser, args)


def _convert_in(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.config_file is None:
        if args.format in FAMILIES:
            parser.error(
                f"--format {args.format} needs --config-file: the position embedding is resized to its init_pe_size"
            )
        if args.opts:
            parser.error(f"KEY=VALUE overrides ({' '.join(args.opts)}) need --config-file")
        model = None
    else:
        with cli.usage_errors(parser):  # a config mistake, or an argument the model refuses (e.g. init_pe_size)
            _check_overrides_read(args.opts, KEYS_READ_IN, "--format")
            model = instantiate(prepare_config(args.config_file, args.opts).model)
    with cli.usage_errors(parser):
        _check_dst_file(args)
    init_grid = model.detector.backbone.init_grid if model is not None else None
    try:
        converted = convert_file(args.src, args.format, init_grid, args.keep_class_ids)
        check_finite(converted.state, args.src, keys=converted.state.keys())
        if model is not None:
            converted = _fit(converted, model, args.src)
    except (FileNotFoundError, KeyError, ValueError) as e:
        logger.error("%s", e.args[0] if e.args else e)
        return 1
    if converted.dropped:
        dropped = converted.dropped
        logger.info("Left out %d source keys not used by YOLOS: %s", len(dropped), ", ".join(dropped))
    if model is not None:
        new = sorted(set(model.state_dict()) - set(converted.state))
        if new:
            logger.info("Left to the model's initialisation (%d): %s", len(new), ", ".join(new))
    checkpoint = {
        "model": converted.state,
        "__author__": "yolos_d2.tools.convert",
        "new_keys": converted.new_keys,
        GRIDS_KEY: grids_record(converted.grids),
    }
    try:
        save_checkpoint_atomic(checkpoint, args.dst)
    except OSError as e:
        logger.error("%s", e)
        return 1
    logger.info("Wrote %d tensors to %s", len(converted.state), args.dst)
    return 0


def _fit(converted: Converted, model: torch.nn.Module, src: str) -> Converted:
    """
    ``converted`` with its position embeddings resized to ``model``'s grids, checked to fit
    ``model``; its LayerNorm epsilon, if it states one, compared with the model's.
    """
    grids = position_embedding_grids(model)
    state = resize_position_embeddings(converted.state, converted.grids, grids, src)
    check_checkpoint_fits(model, state, src)
    _compare_layer_norm_eps(converted.layer_norm_eps, model.detector.backbone.norm.eps)
    return dataclasses.replace(converted, state=state, grids={k: g for k, g in grids.items() if k in state})


def _compare_layer_norm_eps(source_eps, model_eps: float) -> None:
    if source_eps is None or source_eps == model_eps:
        return
    logger.warning(
        "config.json says layer_norm_eps %g, the config's model uses %g (model.detector.backbone.norm_eps). "
        "The original YOLOS was trained with 1e-6, as yolos_d2's configs use; with %g the outputs differ from "
        "transformers' (by up to about 1e-3 on logits and 2e-4 on boxes for random weights). To reproduce "
        "transformers' outputs exactly, add model.detector.backbone.norm_eps=%g.",
        source_eps, model_eps, model_eps, source_eps,
    )


def _convert_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.config_file is None:
        parser.error(f"--to {args.to} needs --config-file: the config of the model SRC holds")
    # A config mistake, a DST that must not be written, a checkpoint that does not fit.
    with cli.usage_errors(parser):
        _check_overrides_read(args.opts, KEYS_READ_OUT, "--to")
        if args.to == "hf":
            check_folder_output(args.dst, "DST", empty=True)
        else:
            _check_dst_file(args)
        cfg = prepare_config(args.config_file, args.opts, weights=args.src, device="cpu")
        model = build_inference_model(cfg)
    class_names = _class_names(cfg)
    state = model.state_dict()
    try:
        if args.to == "hf":
            create_atomic(args.dst, lambda folder: save_huggingface(state, cfg, class_names, folder))
        else:
            save_original_yolos(state, position_embedding_grids(model), args.dst, class_names, args.keep_class_ids)
    except (ValueError, OSError) as e:  # a model transformers' YOLOS cannot hold, a write that fails
        logger.error("%s", e)
        return 1
    logger.info("Wrote %s in the %s format", args.dst, {"hf": "Hugging Face", "yolos": "original YOLOS"}[args.to])
    return 0


def _check_overrides_read(overrides: Sequence[str], keys_read: Sequence[str], direction: str) -> None:
    """Raise ValueError naming the ``overrides`` of keys outside ``keys_read`` (prefixes): ``direction`` reads none."""
    unread = [text for text in overrides if not text.lstrip("+").split("=", 1)[0].startswith(tuple(keys_read))]
    if unread:
        read = ", ".join(f"{key}*" if key.endswith(".") else key for key in keys_read)
        raise ValueError(f"{' '.join(unread)}: yolos-convert {direction} reads no other config keys than {read}")


def _check_dst_file(args: argparse.Namespace) -> None:
    """
    Raise ValueError if the file DST is a folder, would replace SRC or the config file, or lies
    inside SRC, a Hugging Face folder.
    """
    check_file_output(args.dst, "DST")
    inputs = [args.src] + ([args.config_file] if args.config_file else [])
    check_outputs([args.dst], inputs, [args.src] if os.path.isdir(args.src) else [], argument="DST")


def _class_names(cfg) -> List[str]:
    """The thing_classes of the config's test dataset, or class_0, class_1, ... if it has none."""
    try:
        return list(metadata_of_test_dataset(cfg).thing_classes)
    except (AttributeError, KeyError, FileNotFoundError, ValueError) as e:
        num_classes = cfg.model.detector.num_classes
        logger.info(
            "No class names from the config's test dataset (%s): naming the classes class_0 ... class_%d.",
            e, num_classes - 1,
        )
        return [f"class_{i}" for i in range(num_classes)]


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
