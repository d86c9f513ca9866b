"""
The command-line habits every yolos_d2 tool shares:

- ``--config-file FILE``, a LazyConfig;
- ``KEY=VALUE`` config overrides anywhere on the command line (``+KEY=VALUE`` adds a key),
  applied strictly: a key the config does not have is an error naming it;
- ``--weights FILE``, the same as ``train.init_checkpoint=FILE``, and ``--device``, the same as
  ``train.device=DEVICE``, where the tool has weights to load or a model to run;
- a config mistake, weights that do not fit the model or a file that does not exist end the
  command at start with the usual usage error (exit status 2) naming them.

The tools load and check the config as training does (:func:`yolos_d2.config.prepare_config`),
and build models with weights by :func:`yolos_d2.inference.build_inference_model`.
"""
import argparse
import contextlib
import importlib
import logging
import math
import re
import sys
from typing import Callable, Iterator, NoReturn, Optional, Sequence, Tuple

from ..inference.precision import PRECISIONS
from ..inference.predictor import DEFAULT_MAX_SIZE

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_IMAGE_SIDE",
    "OVERRIDE",
    "add_batch_size_argument",
    "add_config_arguments",
    "add_max_size_argument",
    "add_precision_argument",
    "add_scale_argument",
    "console_script",
    "finish",
    "fraction",
    "image_size",
    "non_negative_int",
    "parse_args",
    "positive_int",
    "positive_number",
    "usage_errors",
]

# A config override: an optional "+" or "++", a dotted key, "=", a value.
OVERRIDE = re.compile(r"^\+{0,2}[A-Za-z_][\w.]*=")

# Images per list given to YOLOSPredictor by the tools: YOLOS-Ti at 512x672 on 2 CPU cores
# predicts 1.7 to 1.8 times as many images per second in lists of 4 as one at a time, and 1.9 in
# lists of 8 (python -m benchmarks batch-prediction, two runs).
DEFAULT_BATCH_SIZE = 4

# The longest image side, in pixels, that yolos-model-info's --image-size takes: beyond any
# photograph YOLOS is run on.
MAX_IMAGE_SIDE = 8192


def add_config_arguments(
    parser: argparse.ArgumentParser,
    required: bool = True,
    config_help: str = "a LazyConfig, e.g. configs/quickstart.py",
    weights: bool = True,
    device: bool = True,
) -> None:
    """
    ``--config-file`` (``required`` or not, described by ``config_help``) and, if asked for,
    ``--weights`` and ``--device``; see :func:`parse_args` for the overrides.
    """
    parser.add_argument("--config-file", required=required, metavar="FILE", help=config_help)
    if weights:
        parser.add_argument(
            "--weights",
            metavar="FILE",
            help="a yolos_d2 checkpoint, e.g. output/quickstart/model_final.pth (sets train.init_checkpoint)",
        )
    if device:
        parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (sets train.device)")
    parser.epilog = (
        (parser.epilog + "\n\n" if parser.epilog else "")
        + "KEY=VALUE arguments, anywhere on the command line, override config keys, e.g. "
        "model.detector.backbone.depth=6 (+KEY=VALUE adds a key)."
    )


def add_max_size_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-size``, the :class:`~yolos_d2.inference.YOLOSPredictor` argument of the same name."""
    parser.add_argument(
        "--max-size",
        type=non_negative_int,
        default=DEFAULT_MAX_SIZE,
        metavar="PIXELS",
        help="scale images whose longer side is still longer than this after the config's test-time resize "
        f"down to it: 0 (no limit) or at least the model's patch size (default {DEFAULT_MAX_SIZE})",
    )


def add_scale_argument(parser: argparse.ArgumentParser, max_pixels: int) -> None:
    """``--scale``: the size of a tool's drawings relative to their image, at most ``max_pixels`` pixels each."""
    parser.add_argument(
        "--scale",
        type=positive_number,
        default=1.0,
        help=f"drawing size relative to the image (3: 3x larger); at most {max_pixels} pixels a drawing",
    )


def finish(logger: logging.Logger, summary: str, skipped: Sequence[str]) -> int:
    """
    Log a tool's closing ``summary`` ("Wrote N of M ..."), naming the ``skipped`` inputs, and
    return its exit status: 1 when some were skipped, else 0.
    """
    if skipped:
        logger.warning(f"{summary}; skipped {len(skipped)}: {', '.join(skipped)}")
        return 1
    logger.info(summary)
    return 0


def add_batch_size_argument(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``: how many images the tool gives :class:`~yolos_d2.inference.YOLOSPredictor` at once."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="images (or video frames) predicted in one list; those of one size after the resize share a forward "
        f"(default {DEFAULT_BATCH_SIZE})",
    )


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision``: what :class:`~yolos_d2.inference.YOLOSPredictor` runs the model in."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="int8: Linear layers with int8 weights (CPU); bf16: bfloat16 autocast where the device computes it "
        "natively, else fp32 with a warning (default fp32; see docs/deployment.md)",
    )


def positive_int(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    return _whole_number(text, minimum=1)


def non_negative_int(text: str) -> int:
    """An argument that must be a whole number of at least 0."""
    return _whole_number(text, minimum=0)


def image_size(text: str) -> Tuple[int, int]:
    """An argument ``HxW``: two whole numbers of pixels from 1 to :data:`MAX_IMAGE_SIDE`; (H, W)."""
    sides = text.lower().split("x")
    if len(sides) != 2:
        raise argparse.ArgumentTypeError(f"must be HEIGHTxWIDTH in pixels, e.g. 480x640, got {text!r}")
    height, width = (_whole_number(side, minimum=1, maximum=MAX_IMAGE_SIDE) for side in sides)
    return height, width


def positive_number(text: str) -> float:
    """An argument that must be a finite number above 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def fraction(text: str) -> float:
    """An argument that must be a number from 0 to 1."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def _whole_number(text: str, minimum: int, maximum: Optional[int] = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
    return value


def _number(text: str) -> float:
    """A finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """
    Parse ``argv`` (default ``sys.argv[1:]``). Every argument that looks like ``KEY=VALUE`` (a
    dotted key) goes to ``args.opts``, wherever it is, also after an option taking a list
    (``--input a.png b.png train.seed=1``); the others are parsed by ``parser``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args([a for a in argv if not OVERRIDE.match(a)])
    args.opts = [a for a in argv if OVERRIDE.match(a)]
    return args


@contextlib.contextmanager
def usage_errors(parser: argparse.ArgumentParser) -> Iterator[None]:
    """
    Inside, ``ValueError`` (a config mistake, weights that do not fit the model, an argument a
    component refuses) and ``FileNotFoundError`` end the command with ``parser.error`` naming them.
    """
    try:
        yield
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))


def console_script(
    main: Callable[[Optional[Sequence[str]]], int], setup_logging: bool = True
) -> Callable[[], NoReturn]:
    """
    The function a console script (or ``python -m``) runs: yolos_d2's log output set up as
    detectron2 sets it up (if ``setup_logging``), then ``main()`` on ``sys.argv``, whose return
    value is the exit status. Under ``python -m`` it runs the ``main`` of the tool's module
    imported by its name, as the console script does (see :func:`_imported_by_name`).
    """

    def run() -> NoReturn:
        if setup_logging:
            from detectron2.utils.logger import setup_logger

            setup_logger(name="yolos_d2")
        sys.exit(_imported_by_name(main)())

    return run


def _imported_by_name(function: Callable) -> Callable:
    """
    ``function``, or if it was defined in a module run by ``python -m`` (named ``__main__``), the
    function of the same name in that module imported by its own name. The module's loggers then
    are ``yolos_d2.tools.<tool>``, under the ``yolos_d2`` logger that is set up, not ``__main__``,
    whose records nothing would print.
    """
    spec = function.__globals__.get("__spec__")  # under python -m, the spec of the module's own name
    if function.__module__ != "__main__" or spec is None:
        return function
    return getattr(importlib.import_module(spec.name), function.__name__)
