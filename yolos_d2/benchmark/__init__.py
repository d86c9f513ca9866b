"""
Benchmarks, each printing a table of ratios measured in one process; run them with the
``yolos-benchmark`` command (:mod:`yolos_d2.tools.benchmark`)::

    yolos-benchmark inference          # detector vs transformers' YOLOS, FLOP/s vs GEMM
    yolos-benchmark training           # training step speed and peak memory
    yolos-benchmark evaluation         # COCO evaluation vs pycocotools
    yolos-benchmark padded-evaluation  # AP one image at a time vs the original's padded pairs
    yolos-benchmark nonfinite-check    # the share of a training step the non-finite check takes
"""
