"""
Run one of yolos_d2's benchmarks (:mod:`yolos_d2.benchmark`), each printing a table of ratios
measured in one process::

    yolos-benchmark inference [--device cuda] [--cases CONFIG:HxW:BATCH ...]
    yolos-benchmark training [--config-file CONFIG] [--batch 2] [--size 512x688]
    yolos-benchmark evaluation [--images 500]
    yolos-benchmark padded-evaluation --config-file CONFIG --weights WEIGHTS [--crop-seed 0]
    yolos-benchmark nonfinite-check [--config-file CONFIG]
    yolos-benchmark batch-prediction [--config-file CONFIG] [--sizes 480x640 640x480 ...]
    yolos-benchmark onnx-pipeline [--config-file CONFIG] [--time-size 480x640]
    yolos-benchmark precision --config-file CONFIG --weights WEIGHTS
    yolos-benchmark data-loading [--images 200] [--configs CONFIG ...]
    yolos-benchmark threads [--config-file configs/quickstart.py] [--competitors 1]

(also ``python -m yolos_d2.tools.benchmark``). ``yolos-benchmark NAME --help`` describes each.
"""
import argparse
import importlib
from typing import Optional, Sequence

from . import cli

__all__ = ["BENCHMARKS", "main"]

# Subcommand -> (module of yolos_d2.benchmark whose main(argv) runs it, what it measures).
BENCHMARKS = {
    "inference": ("inference", "detector speed against transformers' YOLOS, FLOP rate against a GEMM"),
    "training": ("training", "training step speed and peak memory, with and without activation checkpointing"),
    "evaluation": ("evaluation", "COCO evaluation speed against pycocotools, and their AP"),
    "padded-evaluation": ("padded_evaluation", "AP one image at a time against the original's padded pairs"),
    "nonfinite-check": ("nonfinite_check", "the share of a training step the non-finite prediction check takes"),
    "batch-prediction": ("batch_prediction", "lists of mixed sizes: grouped by size against padded and masked"),
    "onnx-pipeline": ("onnx_pipeline", "the whole-pipeline ONNX file against the predictor: agreement and time"),
    "data-loading": ("data_loading", "images per second one data-loader worker maps, training and test mappers"),
    "threads": ("threads", "training steps beside competing processes: torch's default threads, 1 and auto"),
    "precision": ("precision", "AP of a trained model in float32, int8 (PyTorch and onnxruntime) and bfloat16"),
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
    module = importlib.import_module(f"yolos_d2.benchmark.{BENCHMARKS[args.benchmark][0]}")
    module.main(args.arguments)
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
