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
import re
import sys
from typing import Callable, Iterator, NoReturn, Optional, Sequence

from ..inference.precision import PRECISIONS
from ..inference.predictor import DEFAULT_MAX_SIZE

__all__ = [
    "OVERRIDE",
    "DEFAULT_BATCH_SIZE",
    "add_batch_size_argument",
    "add_config_arguments",
    "add_max_size_argument",
    "add_precision_argument",
    "console_script",
    "parse_args",
    "usage_errors",
]

# A config override: an optional "+" or "++", a dotted key, "=", a value.
OVERRIDE = re.compile(r"^\+{0,2}[A-Za-z_][\w.]*=")

# Images per list given to YOLOSPredictor by the tools: YOLOS-Ti at 512x672 on 2 CPU cores
# predicts 1.7 to 1.8 times as many images per second in lists of 4 as one at a time, and 1.9 in
# lists of 8 (python -m benchmarks batch-prediction, two runs).
DEFAULT_BATCH_SIZE = 4


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
        type=int,
        default=DEFAULT_MAX_SIZE,
        metavar="PIXELS",
        help="scale images whose longer side is still longer than this after the config's test-time resize "
        f"down to it (default {DEFAULT_MAX_SIZE}; 0: no limit)",
    )


def add_batch_size_argument(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``: how many images the tool gives :class:`~yolos_d2.inference.YOLOSPredictor` at once."""
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
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


def _positive_int(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
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
    value is the exit status.
    """

    def run() -> NoReturn:
        if setup_logging:
            from detectron2.utils.logger import setup_logger

            setup_logger(name="yolos_d2")
        sys.exit(main())

    return run
