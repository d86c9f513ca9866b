"""
Where ``[DET]`` tokens look: the last block's self-attention from chosen ``[DET]`` tokens to the
image patches, per head and averaged over the heads, over the image with the token's box::

    yolos-attention-maps --config-file configs/quickstart.py --input image.png --output attention/ \\
        --weights output/quickstart/model_final.pth

(also ``python -m yolos_d2.tools.attention_maps``).

The tokens are ``--tokens 0 5 ...``, else the ``--top-k`` (default 3) highest scoring. For each,
``det_token_<index>.png`` shows the mean over the heads, then each head, over the image as the
model sees it (resized by the config's test mapper, then to at most ``--max-size`` pixels on its
longer side). Each panel has its own colour scale from 0 to its largest weight. The weights on
the patches sum to less than 1: the rest goes to ``[CLS]`` and the ``[DET]`` tokens. A figure
that would replace the input image, the config file or the weights, and a setting out of its
range, are refused before anything is done (exit status 2). Each figure is written atomically: a
write that fails (e.g. a full disk) leaves no partial file and ends the command (exit status 1),
naming it.
"""
import argparse
import logging
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..config import prepare_config
from ..inference import YOLOSPredictor
from ..inference.attention import attention_over_image, det_token_patch_attention, padded_patch_grid, record_attention
from ..visualization import draw_token_attention
from . import cli
from .outputs import check_folder_output, check_outputs, config_inputs

logger = logging.getLogger(__name__)


def check_tokens(tokens: Optional[Sequence[int]], num_tokens: int) -> None:
    """Raise ``ValueError`` naming the indices of ``tokens`` (if given) outside 0..``num_tokens``-1."""
    outside = [t for t in tokens or () if not 0 <= t < num_tokens]
    if outside:
        raise ValueError(
            f"--tokens {outside} are not [DET] tokens of this model, which has {num_tokens} (0..{num_tokens - 1})"
        )


def select_tokens(scores: torch.Tensor, tokens: Optional[Sequence[int]], top_k: int) -> List[int]:
    """
    Args:
        scores: (K,) each ``[DET]`` token's score.
        tokens: token indices asked for (checked by :func:`check_tokens`), or None for the
            ``top_k`` highest scoring.

    Returns:
        token indices.
    """
    if tokens:
        return list(tokens)
    return scores.topk(min(top_k, len(scores))).indices.tolist()


def token_pixel_maps(
    weights: torch.Tensor,
    tokens: Sequence[int],
    image_size: Tuple[int, int],
    size_divisibility: int,
    patch_size: int,
) -> np.ndarray:
    """
    Args:
        weights: (1, heads, K, N) attention weights of the K ``[DET]`` tokens, recorded by
            :func:`record_attention` with ``num_queries=K``, on any device.
        tokens: the ``[DET]`` token indices to draw.
        image_size: (H, W) of the image the model saw, before its padding.
        size_divisibility, patch_size: the model's padding multiple and patch side in pixels.

    Returns:
        (len(tokens), heads, H, W) each token's weights per head on the pixels, on the CPU.
    """
    grid = padded_patch_grid(image_size, size_divisibility, patch_size)
    num_det_tokens = weights.shape[2]
    patch_maps = det_token_patch_attention(weights, grid, num_det_tokens)[0]  # (heads, K, rows, cols)
    pixel_maps = attention_over_image(patch_maps[:, list(tokens)].transpose(0, 1), patch_size, image_size)
    return pixel_maps.cpu().numpy()


def figure_path(output: str, token: int) -> str:
    """The figure of ``[DET]`` token ``token`` in the folder ``output``."""
    return os.path.join(output, f"det_token_{token}.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--input", required=True, help="an image file")
    parser.add_argument("--output", required=True, help="folder for the figures (created)")
    parser.add_argument("--tokens", type=int, nargs="+", help="[DET] token indices (default: the top-k by score)")
    parser.add_argument(
        "--top-k", type=cli.positive_int, default=3, help="how many of the highest scoring tokens to draw"
    )
    cli.add_max_size_argument(parser)
    args = cli.parse_args(parser, argv)

    with cli.usage_errors(parser):  # a config mistake, an output that must not be written, a setting out of range
        cfg = prepare_config(args.config_file, args.opts, args.weights, args.device)
        num_tokens = cfg.model.detector.backbone.num_det_tokens
        check_tokens(args.tokens, num_tokens)
        # Any token may be among the top k: no figure may replace an input.
        candidates = args.tokens or range(num_tokens)
        figures = [figure_path(args.output, token) for token in candidates]
        check_folder_output(args.output)
        check_outputs([args.output, *figures], [args.input, *config_inputs(args.config_file, cfg)])
        predictor = YOLOSPredictor(cfg, max_size=args.max_size)
    try:
        image = predictor.resize(predictor.image_array(args.input))
    except (OSError, ValueError) as e:
        logger.error(f"Cannot read --input {args.input!r}: {e}")
        return 1
    backbone = predictor.model.detector.backbone
    with record_attention(backbone, num_queries=backbone.num_det_tokens) as recorded:
        instances = predictor.predict(image)
    if not recorded:
        raise RuntimeError("The last block's attn.qkv was not called in the forward: its attention cannot be recorded")
    tokens = select_tokens(instances.scores, args.tokens, args.top_k)

    pixel_maps = token_pixel_maps(
        recorded[-1], tokens, image.shape[:2], predictor.model.size_divisibility, backbone.patch_size
    )
    class_names = predictor.metadata.get("thing_classes")
    rgb = image[:, :, ::-1] if predictor.input_format == "BGR" else image
    for token, head_maps in zip(tokens, pixel_maps):
        class_id, score = int(instances.pred_classes[token]), float(instances.scores[token])
        name = class_names[class_id] if class_names else f"class {class_id}"
        path = figure_path(args.output, token)
        title = f"{os.path.basename(args.input)}: [DET] token {token}, {name} {score:.2f}"
        try:
            draw_token_attention(rgb, head_maps, instances.pred_boxes.tensor[token].tolist(), title, path)
        except OSError as e:
            logger.error("%s", e)
            return 1
        logger.info(f"Wrote the attention of [DET] token {token} ({name} {score:.2f}) to {path}")
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
