"""
The size and cost of the models that configs describe, as a Markdown table::

    yolos-model-info --config-file configs/yolos_s.py configs/quickstart.py [KEY=VALUE ...]

(also ``python -m yolos_d2.tools.model_info``). For each config: the backbone (width, depth,
heads), the parameters of the model it builds (in millions), and the FLOPs of one image at the
config's evaluation size: an ``--image-size`` image (height x width in pixels, each side at most
8192, default 480x640, COCO's most common size) resized by the config's test-time resize (:class:`yolos_d2.data.EvalResize`,
without the predictor's cap on the longer side) and padded as the model pads it. FLOPs count
the matrix products (2 per multiply-add; normalisations, activations and softmax, a few percent,
are left out) as the model computes them: its last block for the ``[DET]`` tokens only
(:func:`yolos_d2.modeling.flops.detector_flops`). Overrides apply to every config.
"""
import argparse
import dataclasses
import math
import os
from typing import List, Optional, Sequence, Tuple

from detectron2.config import instantiate
from omegaconf import DictConfig

from ..config import prepare_config
from ..data import EvalResize
from ..modeling import YOLOS
from ..modeling.flops import detector_flops
from ..utils.table import format_table
from . import cli

__all__ = ["ModelInfo", "main", "model_info"]

HEADER = ["config", "backbone (dim, depth, heads)", "parameters (M)", "input (HxW)", "GFLOPs"]


@dataclasses.dataclass
class ModelInfo:
    embed_dim: int
    depth: int
    num_heads: int
    parameters: int
    input_size: Tuple[int, int]  # (H, W) of the tensor the FLOPs are counted on
    flops: int

    def row(self, name: str) -> List[str]:
        """The table row of this model, named ``name``."""
        return [
            name,
            f"{self.embed_dim}, {self.depth}, {self.num_heads}",
            f"{self.parameters / 1e6:.2f}",
            "x".join(map(str, self.input_size)),
            f"{self.flops / 1e9:.1f}",
        ]


def model_info(cfg: DictConfig, image_size: Tuple[int, int]) -> ModelInfo:
    """The size of the model ``cfg`` describes (built on the CPU) and its FLOPs on an image of ``image_size`` (H, W)."""
    model: YOLOS = instantiate(cfg.model)
    backbone = model.detector.backbone
    resized = EvalResize.from_config(cfg).output_shape(*image_size)
    input_size = tuple(math.ceil(side / model.size_divisibility) * model.size_divisibility for side in resized)
    return ModelInfo(
        embed_dim=backbone.embed_dim,
        depth=backbone.depth,
        num_heads=backbone.blocks[0].attn.num_heads,
        parameters=sum(p.numel() for p in model.parameters()),
        input_size=input_size,
        flops=detector_flops(backbone, model.detector.num_classes, input_size, det_only_last_block=True),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", nargs="+", required=True, metavar="FILE", help="LazyConfigs, one row each")
    parser.add_argument(
        "--image-size",
        type=cli.image_size,
        default=(480, 640),
        metavar="HxW",
        help=f"the image resized, each side from 1 to {cli.MAX_IMAGE_SIDE} pixels (default 480x640)",
    )
    args = cli.parse_args(parser, argv)
    image_size = args.image_size

    rows = []
    for config_file in args.config_file:
        with cli.usage_errors(parser):
            cfg = prepare_config(config_file, args.opts)
            rows.append(model_info(cfg, image_size).row(os.path.relpath(config_file)))
    print(format_table(HEADER, rows))
    print(
        f"\nGFLOPs of one {image_size[0]}x{image_size[1]} image resized at the config's eval size: matrix products, "
        "2 FLOPs per multiply-add (fvcore and detectron2's analyze_model count 1), the last block "
        "for the [DET] tokens only."
    )
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
