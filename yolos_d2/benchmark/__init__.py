"""
Benchmarks, each printing a table of ratios measured in one process::

    python -m yolos_d2.benchmark.inference    # detector vs transformers' YOLOS, FLOP/s vs GEMM
    python -m yolos_d2.benchmark.training     # training step speed and peak memory
    python -m yolos_d2.benchmark.evaluation   # COCO evaluation vs pycocotools
"""
