"""
Predicting on a list of images of mixed sizes, three ways, timed interleaved in one process::

    python -m benchmarks batch-prediction [--config-file configs/yolos_ti.py] [--sizes 480x640 640x480 ...] [KEY=VALUE ...]

- one image at a time;
- grouped by size, what :class:`~yolos_d2.engine.YOLOSPredictor` does with a list: one forward
  per resized size, nothing padded;
- padded and masked: one forward of all images zero-padded to the largest resized size, each
  given the position embeddings of its own patch grid, its padding patches masked out of every
  attention (so that, unlike the original's padded batches, its detections are its own).

Each way resizes the images as the predictor does (the config's test resize) and returns their
detections. The model has random weights; ``--sizes`` are the images' sizes before the resize
(default: a COCO-like mix at five resized sizes). The largest difference of each way's logits and
boxes from one image at a time is printed, then, for ``--batch-sizes``, the throughput of lists
of one image size.
"""
import argparse
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import instantiate
from detectron2.structures import Instances
from omegaconf import DictConfig

from yolos_d2.checkpoint import save_checkpoint_atomic
from yolos_d2.config import load_config
from yolos_d2.inference import YOLOSPredictor
from yolos_d2.modeling import YOLOS
from yolos_d2.modeling.transformer import Block
from yolos_d2.tools import cli
from yolos_d2.utils.table import format_table
from .timing import Timing, add_repeats_argument, time_interleaved, timings

__all__ = ["masked_padded_forward", "random_predictor", "run", "main"]

# COCO-like image sizes, (height, width): at YOLOS-Ti's eval size 512, five resized sizes.
DEFAULT_SIZES = [(480, 640), (640, 480), (427, 640), (480, 640), (640, 427), (375, 500), (640, 640), (480, 640)]


def add_random_model_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config-file`` (default configs/yolos_ti.py) and overrides of the model built with random weights."""
    config_help = "a LazyConfig whose model is built with random weights (default configs/yolos_ti.py)"
    cli.add_config_arguments(parser, required=False, config_help=config_help, weights=False, device=False)
    parser.set_defaults(config_file="configs/yolos_ti.py")


def random_predictor(cfg: DictConfig, **kwargs) -> YOLOSPredictor:
    """A :class:`YOLOSPredictor` (``kwargs``) on the CPU for the config ``cfg`` and random weights (seed 0)."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        weights = os.path.join(folder, "random.pth")
        save_checkpoint_atomic({"model": instantiate(cfg.model).state_dict()}, weights)
        return YOLOSPredictor(cfg, weights=weights, device="cpu", **kwargs)


def _masked_block(
    block: Block, x: torch.Tensor, attn_mask: torch.Tensor, num_queries: Optional[int] = None
) -> torch.Tensor:
    """
    ``block`` on (B, N, D) tokens with an attention mask (B, 1, 1, N), True where a key counts:
    (B, Q, D) outputs of the last Q = ``num_queries`` (default N) tokens.
    """
    attn = block.attn
    batch, num_tokens, dim = x.shape
    qkv = attn.qkv(block.norm1(x)).view(batch, num_tokens, 3, attn.num_heads, attn.head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    if num_queries is not None:
        q, x = q[:, :, -num_queries:], x[:, -num_queries:]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    x = x + attn.proj(out.transpose(1, 2).reshape(batch, q.shape[2], dim))
    return x + block.mlp(block.norm2(x))


def _scatter_patches(
    sequence: torch.Tensor, grid: Tuple[int, int], padded: Tuple[int, int], num_det: int
) -> torch.Tensor:
    """
    (..., 1 + r * c + K, D) tokens of an r x c patch grid -> (..., 1 + R * C + K, D) of the R x C
    ``padded`` grid, the patches at its top left, zeros elsewhere.
    """
    rows, cols = grid
    patches = sequence[..., 1 : 1 + rows * cols, :].unflatten(-2, (rows, cols))
    placed = F.pad(patches, (0, 0, 0, padded[1] - cols, 0, padded[0] - rows)).flatten(-3, -2)
    return torch.cat([sequence[..., :1, :], placed, sequence[..., sequence.shape[-2] - num_det :, :]], dim=-2)


@torch.no_grad()
def masked_padded_forward(model: YOLOS, images: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """
    The detector on ``images`` ((3, h, w) uint8 each, sides multiples of the patch size) in one
    forward: zero-padded to the largest size, each image's tokens given the position embeddings
    of its own patch grid, its padding patches masked out of the attention.

    Returns:
        "pred_logits" (B, K, C + 1) and "pred_boxes" (B, K, 4), boxes normalised by each image's size.
    """
    backbone = model.detector.backbone
    patch, num_det = backbone.patch_size, backbone.num_det_tokens
    padded_images = model.preprocess_image([{"image": image} for image in images])
    padded = tuple(side // patch for side in padded_images.tensor.shape[-2:])
    grids = [(h // patch, w // patch) for h, w in padded_images.image_sizes]

    x = backbone.patch_embed(padded_images.tensor)
    batch = x.shape[0]
    x = torch.cat([backbone.cls_token.expand(batch, -1, -1), x, backbone.det_token.expand(batch, -1, -1)], dim=1)
    pos, mid, keys = [], [], []
    for rows, cols in grids:
        image_pos, image_mid = backbone.position_embeddings((rows, cols))
        pos.append(_scatter_patches(image_pos, (rows, cols), padded, num_det))
        mid.append(_scatter_patches(image_mid, (rows, cols), padded, num_det) if image_mid is not None else None)
        keys.append(_scatter_patches(torch.ones(1 + rows * cols + num_det, 1), (rows, cols), padded, num_det)[:, 0])
    x = x + torch.cat(pos)
    attn_mask = torch.stack(keys).bool().to(x.device)[:, None, None, :]
    for i, block in enumerate(backbone.blocks):
        last = i == len(backbone.blocks) - 1
        x = _masked_block(block, x, attn_mask, num_det if last else None)
        if mid[0] is not None and not last:
            x = x + torch.cat([m[i] for m in mid])
    tokens = backbone.norm(x)
    detector = model.detector
    return {"pred_logits": detector.class_embed(tokens), "pred_boxes": detector.bbox_embed(tokens).sigmoid()}


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) array -> (3, H, W) tensor."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


@dataclass(frozen=True)
class WayTiming(Timing):
    """
    A way of predicting on the list; ``ratio`` against grouped by size. The largest differences of
    its detections' scores and boxes (pixels) from one image at a time's.
    """

    score_difference: float
    box_difference: float


@dataclass(frozen=True)
class ListTiming(Timing):
    """
    A list of ``images`` copies of one image; ``ratio`` against the first list's time,
    ``rate_ratio`` its images per second over the first list's.
    """

    images: int
    rate_ratio: float


@dataclass(frozen=True)
class BatchPredictionResult:
    """
    The number of ``images`` and their distinct ``resized_sizes`` (H, W, sorted), the three ways on
    the list of them, and the lists of copies of one image.
    """

    images: int
    resized_sizes: List[Tuple[int, int]]
    ways: List[WayTiming]
    lists: List[ListTiming]

    @property
    def padded_size(self) -> Tuple[int, int]:
        """(H, W) all the resized images are padded to."""
        return max(h for h, _ in self.resized_sizes), max(w for _, w in self.resized_sizes)


def run(
    predictor: YOLOSPredictor, sizes: Sequence[Tuple[int, int]], batch_sizes: Sequence[int], repeats: int
) -> BatchPredictionResult:
    """
    ``predictor`` on random images of ``sizes`` (H, W, before its resize) the three ways, then on
    lists of ``batch_sizes`` copies of the first image, each timed over ``repeats`` rounds.
    """
    model = predictor.model
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]

    def padded_and_masked() -> List[Instances]:
        outputs = masked_padded_forward(model, [_as_tensor(predictor.resize(image)) for image in images])
        return [
            model.postprocess(logits, boxes, image.shape[:2], model.clip_boxes)
            for logits, boxes, image in zip(outputs["pred_logits"], outputs["pred_boxes"], images)
        ]

    ways = {
        "one at a time": lambda: [predictor(image) for image in images],
        "grouped by size": lambda: predictor(images),
        "padded and masked": padded_and_masked,
    }
    results = {name: way() for name, way in ways.items()}
    times = time_interleaved(ways, repeats=repeats, warmup=1)
    score_differences, box_differences = {}, {}
    for name, instances in results.items():
        pairs = list(zip(instances, results["one at a time"]))
        score_differences[name] = max((a.scores - b.scores).abs().max().item() for a, b in pairs)
        box_differences[name] = max((a.pred_boxes.tensor - b.pred_boxes.tensor).abs().max().item() for a, b in pairs)

    image = images[0]
    lists = {f"{n} x {image.shape[0]}x{image.shape[1]}": [image] * n for n in batch_sizes}
    list_times = time_interleaved(
        {name: (lambda same=same: predictor(same)) for name, same in lists.items()}, repeats=repeats, warmup=1
    )
    rates = {name: len(lists[name]) / seconds for name, seconds in list_times.items()}
    first = next(iter(lists))
    return BatchPredictionResult(
        images=len(images),
        resized_sizes=sorted({predictor.resize(image).shape[:2] for image in images}),
        ways=timings(
            times, "grouped by size", WayTiming, score_difference=score_differences, box_difference=box_differences
        ),
        lists=timings(
            list_times,
            first,
            ListTiming,
            images={name: len(same) for name, same in lists.items()},
            rate_ratio={name: rate / rates[first] for name, rate in rates.items()},
        ),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks batch-prediction",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_random_model_config_argument(parser)
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=cli.image_size,
        default=DEFAULT_SIZES,
        metavar="HxW",
        help="the list's images: height and width in pixels before the resize, one image each "
        f"(default: {len(DEFAULT_SIZES)} COCO-like sizes)",
    )
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        type=cli.positive_int,
        default=[1, 2, 4, 8],
        metavar="N",
        help="images per list of one size, a row each (default 1 2 4 8)",
    )
    add_repeats_argument(parser, default=5)
    args = cli.parse_args(parser, argv)
    with cli.usage_errors(parser):
        predictor = random_predictor(load_config(args.config_file, args.opts))
    result = run(predictor, args.sizes, args.batch_sizes, args.repeats)

    sizes = ", ".join(f"{h}x{w}" for h, w in result.resized_sizes)
    print(
        f"{args.config_file}, random weights, CPU ({torch.get_num_threads()} threads): {result.images} images resized "
        f"to {len(result.resized_sizes)} sizes ({sizes}); padded to {result.padded_size[0]}x{result.padded_size[1]}"
    )
    rows = [
        [way.name, f"{way.seconds:.2f}", f"{result.images / way.seconds:.2f}", f"{way.ratio:.2f}",
         f"{way.score_difference:.1e}", f"{way.box_difference:.1e}"]
        for way in result.ways
    ]
    header = ["way", "s per list", "images/s", "time / grouped", "max |score diff|", "max |box diff| px"]
    print(format_table(header, rows) + "\n(differences from one image at a time)")
    rows = [
        [same.name, f"{same.seconds:.2f}", f"{same.images / same.seconds:.2f}", f"{same.rate_ratio:.2f}"]
        for same in result.lists
    ]
    print(format_table(["list of one image size", "s per list", "images/s", "images/s / first's"], rows))
