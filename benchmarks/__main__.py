"""
Run one of yolos_d2's benchmarks from the repository root, each printing a table of ratios
measured in one process::

    python -m benchmarks inference [--device cuda] [--cases CONFIG:HxW:BATCH ...]
    python -m benchmarks training [--config-file CONFIG] [--batch 2] [--size 512x688]
    python -m benchmarks evaluation [--images 500]
    python -m benchmarks padded-evaluation --config-file CONFIG --weights WEIGHTS [--crop-seed 0]
    python -m benchmarks nonfinite-check [--config-file CONFIG]
    python -m benchmarks batch-prediction [--config-file CONFIG] [--sizes 480x640 640x480 ...]
    python -m benchmarks onnx-pipeline [--config-file CONFIG] [--time-size 480x640]
    python -m benchmarks precision --config-file CONFIG --weights WEIGHTS
    python -m benchmarks data-loading [--images 200] [--configs CONFIG ...]
    python -m benchmarks threads [--config-file configs/quickstart.py] [--competitors 1]
    python -m benchmarks coco-scale [--images 118287] [--eval-images 5000]
    python -m benchmarks gpu [--device cuda] [--output FILE] [--dry-run]

``python -m benchmarks NAME --help`` describes each.
"""
import argparse
import importlib
from typing import Optional, Sequence

from yolos_d2.tools import cli

__all__ = ["BENCHMARKS", "main"]

# Subcommand -> (module of benchmarks whose main(argv) runs it, what it measures).
BENCHMARKS = {
    "inference": ("inference", "detector speed against transformers' YOLOS, FLOP rate against a GEMM"),
    "training": ("training", "training step speed and peak memory per precision, with/without activation checkpointing"),
    "evaluation": ("evaluation", "COCO evaluation speed against pycocotools, and their AP"),
    "padded-evaluation": ("padded_evaluation", "AP one image at a time against the original's padded pairs"),
    "nonfinite-check": ("nonfinite_check", "the share of a training step the non-finite prediction check takes"),
    "batch-prediction": ("batch_prediction", "lists of mixed sizes: grouped by size against padded and masked"),
    "onnx-pipeline": ("onnx_pipeline", "the whole-pipeline ONNX file against the predictor: agreement and time"),
    "data-loading": ("data_loading", "images per second one data-loader worker maps, training and test mappers"),
    "threads": ("threads", "training steps beside competing processes: torch's default threads, 1 and auto"),
    "precision": ("precision", "AP and forward time of a trained model: float32, int8 (PyTorch, onnxruntime), bfloat16"),
    "coco-scale": ("coco_scale", "a COCO train2017-sized json: loading, image-file check; 5,000 images' evaluation"),
    "gpu": ("gpu", "the GPU measurements in one table: CUDA vs CPU, inference, training, 2 processes"),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(f"  {name:18} {what}" for name, (_, what) in BENCHMARKS.items()),
    )
    parser.add_argument("benchmark", choices=list(BENCHMARKS), help="which benchmark to run")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args(argv)
    module = importlib.import_module(f"benchmarks.{BENCHMARKS[args.benchmark][0]}")
    module.main(args.arguments)
    return 0


if __name__ == "__main__":
    cli.console_script(main)()
