"""
Inference speed of yolos_d2's detector against transformers' ``YolosForObjectDetection`` with eager
and SDPA attention and against onnxruntime, on the same (random) weights and input, timed
interleaved in one process::

    python -m benchmarks inference                      # the CPU defaults below
    python -m benchmarks inference --device cuda --cases configs/yolos_s.py:800x1333:8
    python -m benchmarks inference --original-repo ../YOLOS   # also the original code

Each case is ``CONFIG:HxW:BATCH``. The table gives milliseconds per batch (median over
``--repeats`` rounds after warm-up), images per second, the model's FLOP rate and its fraction of
the rate of a large ``torch.mm`` timed in the same rounds, the time against yolos_d2's in float32,
and the largest difference of each one's logits and boxes from yolos_d2's in float32. FLOPs are the
model's matrix-multiply FLOPs over the full sequence (what transformers computes); yolos_d2
computes fewer, since its last block only needs the ``[DET]`` tokens' outputs, and this is
reported under the table.

On the CPU the rows include yolos_d2 with PyTorch's dynamic int8 quantisation of the Linear
layers (what ``--precision int8`` of the predictor and the demo runs), and the detector exported
to ONNX and run by onnxruntime in float32 and in int8 (its dynamic quantisation, as
``yolos-export --int8`` writes; ``--no-onnxruntime`` skips the export, about a minute per case). Both
int8 paths quantise the matrix products with weights only: attention (queries times keys, and
its weights times values) stays float32, and the line under the table gives its share of
yolos_d2's float32 time, which bounds what int8 can gain. bfloat16 rows (autocast) are added
where the device computes bfloat16 natively (``yolos_d2.inference.precision.bf16_is_fast``), with
a row of yolos_d2 whose attention stays float32: the lower-precision matrix products alone,
against the fused attention kernel's bfloat16 path.
"""
import argparse
import copy
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar
from unittest import mock

import torch
from detectron2.config import instantiate
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from yolos_d2.checkpoint.class_head import coco_class_head_rows
from yolos_d2.checkpoint.huggingface import convert_huggingface
from yolos_d2.config import load_config
from yolos_d2.export.onnx import OnnxRuntimeDetector
from yolos_d2.inference.precision import bf16_is_fast, quantize_linear_int8
from yolos_d2.modeling import YOLOSDetector
from yolos_d2.modeling.position_embedding import patch_grid
from yolos_d2.modeling.flops import detector_flops
from yolos_d2.tools import cli
from .huggingface import random_huggingface_model
from .original import original_detector
from yolos_d2.utils.table import format_table
from .timing import Timing, add_repeats_argument, describe_device, device_sync, time_interleaved, timings

T = TypeVar("T")

DEFAULT_CASES = ["configs/yolos_ti.py:512x688:1", "configs/yolos_ti.py:512x688:8", "configs/yolos_s.py:800x1216:1"]
GEMM_SIZE = 2048


def parse_case(case: str) -> Tuple[str, Tuple[int, int], int]:
    """
    'configs/yolos_ti.py:512x688:1' -> (config file, (height, width), batch size); else
    ``argparse.ArgumentTypeError`` saying what a case is.
    """
    try:
        config_file, size, batch = case.rsplit(":", 2)
        return config_file, cli.image_size(size), cli.positive_int(batch)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"must be CONFIG:HxW:BATCH, sides from 1 to {cli.MAX_IMAGE_SIDE} pixels and a batch of at least 1, "
            f"e.g. {DEFAULT_CASES[0]}, got {case!r}"
        ) from None


def case_argument(text: str) -> str:
    """An argument ``CONFIG:HxW:BATCH``, checked by :func:`parse_case`."""
    parse_case(text)
    return text


def build_models(
    cfg, device: str, attentions: Sequence[str] = ("eager", "sdpa"), original_repo: Optional[str] = None
) -> Dict[str, torch.nn.Module]:
    """
    yolos_d2's detector of the LazyConfig ``cfg`` and transformers' models with each of
    ``attentions`` ("eager", "sdpa"), holding the same random weights: transformers'
    (:func:`random_huggingface_model`), converted with ``convert_huggingface`` and loaded into
    ours. With ``original_repo`` (a checkout of hustvl/YOLOS), also the original implementation's
    backbone with our heads.
    """
    peer = random_huggingface_model(cfg.model.detector.backbone)
    ours: YOLOSDetector = instantiate(cfg.model.detector)
    state, _ = convert_huggingface(peer.state_dict(), cfg.model.detector.backbone.num_det_tokens)
    consume_prefix_in_state_dict_if_present(state, "detector.")
    ours.load_state_dict(state)

    models = {"yolos_d2": ours}
    for attention in attentions:
        models[f"transformers {attention}"] = copy.deepcopy(peer)
        models[f"transformers {attention}"].set_attn_implementation(attention)
    if original_repo is not None:
        models["original YOLOS"] = original_detector(original_repo, ours)
    return {name: model.to(device).eval() for name, model in models.items()}


def forward_fn(name: str, model: torch.nn.Module, images: torch.Tensor) -> Callable[[], Dict[str, torch.Tensor]]:
    """A call of ``model`` on ``images`` returning "pred_logits" and "pred_boxes" as ``YOLOSDetector`` does."""
    if name.startswith("transformers"):
        return lambda: {"pred_logits": (out := model(pixel_values=images)).logits, "pred_boxes": out.pred_boxes}
    return lambda: model(images)


def output_differences(ours: Dict[str, torch.Tensor], theirs: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """
    Largest absolute difference of two detectors' "pred_logits" and of their "pred_boxes"; a
    92-class COCO head of ``theirs`` is mapped to 81 classes.
    """
    logits = theirs["pred_logits"]
    if logits.shape[-1] != ours["pred_logits"].shape[-1]:
        logits = logits[..., coco_class_head_rows()]
    return {
        "pred_logits": (ours["pred_logits"] - logits).abs().max().item(),
        "pred_boxes": (ours["pred_boxes"] - theirs["pred_boxes"]).abs().max().item(),
    }


def max_output_difference(ours: Dict[str, torch.Tensor], theirs: Dict[str, torch.Tensor]) -> float:
    """The larger of :func:`output_differences`: of the logits and of the boxes."""
    return max(output_differences(ours, theirs).values())


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def in_precision(fn: Callable[[], T], device: str, dtype: str) -> Callable[[], T]:
    """``fn`` run under autocast to ``dtype`` ("bf16", "fp16") on ``device``'s type, or as it is for "fp32"."""
    if dtype == "fp32":
        return fn
    device_type = torch.device(device).type

    def autocast_fn() -> T:
        with torch.autocast(device_type, dtype=AUTOCAST_DTYPES[dtype]):
            return fn()

    return autocast_fn


# The row of yolos_d2 under autocast with its attention kept in float32: matrix products alone in
# the lower precision, against the fused attention kernel's own bfloat16/float16 path.
FP32_ATTENTION = "yolos_d2, attention in fp32"


def with_fp32_attention(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` with ``scaled_dot_product_attention`` computed in float32 whatever its inputs' dtype."""
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def fp32_sdpa(q, k, v, *args, **kwargs):
        # Outside autocast, which would cast the inputs back to its lower precision.
        with torch.autocast(q.device.type, enabled=False):
            return sdpa(q.float(), k.float(), v.float(), *args, **kwargs).to(q.dtype)

    def patched_fn() -> T:
        with mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", fp32_sdpa):
            return fn()

    return patched_fn


def compare_and_time(
    fns: Dict[str, Callable[[], Dict[str, torch.Tensor]]],
    reference: Dict[str, torch.Tensor],
    device: str,
    repeats: int,
    warmup: int,
    others: Optional[Dict[str, Callable[[], object]]] = None,
) -> Tuple[Dict[str, float], Dict[str, float]]:
    """
    Without autograd: the largest difference (:func:`max_output_difference`) of each of ``fns``'
    outputs from ``reference``, then the seconds per call of each of ``fns`` and of ``others``,
    timed interleaved (:func:`time_interleaved`). Returns (seconds, differences) by name.
    """
    with torch.inference_mode():
        differences = {name: max_output_difference(reference, fn()) for name, fn in fns.items()}
        times = time_interleaved({**fns, **(others or {})}, repeats=repeats, warmup=warmup, sync=device_sync(device))
    return times, differences


def lower_precision_models(ours: YOLOSDetector, images: torch.Tensor, onnxruntime: bool) -> Dict[str, torch.nn.Module]:
    """yolos_d2 with PyTorch's int8 Linear layers and, with ``onnxruntime``, its ONNX export run in float32 and int8 (CPU)."""
    models = {"yolos_d2 int8 (PyTorch)": quantize_linear_int8(copy.deepcopy(ours))}
    if onnxruntime:
        models["onnxruntime fp32"] = OnnxRuntimeDetector.export(ours, images)
        models["onnxruntime int8"] = models["onnxruntime fp32"].int8()
    return models


def attention_fn(backbone, images: torch.Tensor) -> Callable[[], None]:
    """
    The attention of every block of ``backbone`` on ``images``' token count alone (queries times
    keys, softmax, times values, as yolos_d2 runs it: the last block for the ``[DET]`` queries only).
    """
    batch, _, height, width = images.shape
    rows, cols = patch_grid((height, width), backbone.patch_size)
    num_tokens = 1 + rows * cols + backbone.num_det_tokens
    heads = backbone.blocks[0].attn.num_heads
    shape = (batch, heads, num_tokens, backbone.embed_dim // heads)
    q, k, v = (torch.randn(shape, device=images.device) for _ in range(3))
    det_q = q[:, :, -backbone.num_det_tokens :]
    queries = [q] * (backbone.depth - 1) + [det_q]
    return lambda: [torch.nn.functional.scaled_dot_product_attention(query, k, v) for query in queries]


@dataclass(frozen=True)
class InferenceTiming(Timing):
    """
    An implementation timed on a case; ``ratio`` is its time over yolos_d2's in the same precision,
    ``difference`` the largest absolute difference of its logits and boxes from yolos_d2's in float32.
    """

    difference: float


@dataclass(frozen=True)
class CaseResult:
    """
    One case (``CONFIG:HxW:BATCH``) in one precision: its ``rows``, and the FLOPs per image of the
    full sequence (``flops``) and of what yolos_d2 computes (``executed_flops``), the FLOP rate of
    a ``GEMM_SIZE`` square ``torch.mm`` timed in the same rounds, and the seconds of the attention
    of every block alone (:func:`attention_fn`).
    """

    case: str
    dtype: str
    rows: List[InferenceTiming]
    flops: float
    executed_flops: float
    gemm_flops_per_second: float
    attention_seconds: float

    def row(self, name: str) -> InferenceTiming:
        """The row of the implementation ``name``."""
        return next(row for row in self.rows if row.name == name)

    @property
    def attention_share(self) -> float:
        """The attention's seconds over yolos_d2's: what int8 matrix products cannot make faster."""
        return self.attention_seconds / self.row("yolos_d2").seconds


def benchmark_dtypes(device: str) -> List[str]:
    """The precisions timed on ``device``: fp32, bf16 where it computes bfloat16 natively, fp16 on CUDA."""
    cuda = device.startswith("cuda")
    return ["fp32"] + (["bf16"] if bf16_is_fast(device) else []) + (["fp16"] if cuda else [])


def run_case(
    case: str,
    device: str,
    dtype: str,
    repeats: int,
    warmup: int,
    original_repo: Optional[str] = None,
    onnxruntime: bool = True,
) -> CaseResult:
    """Time every implementation on ``case`` in ``dtype`` (the module description says which)."""
    config_file, (height, width), batch = parse_case(case)
    models = build_models(load_config(config_file), device, original_repo=original_repo)
    images = torch.randn(batch, 3, height, width, device=device)
    ours = models["yolos_d2"]
    with torch.inference_mode():
        reference = ours(images)
    if dtype == "fp32" and device == "cpu":
        models.update(lower_precision_models(ours, images, onnxruntime))
    fns = {name: forward_fn(name, model, images) for name, model in models.items()}
    if dtype != "fp32":
        fns[FP32_ATTENTION] = with_fp32_attention(fns["yolos_d2"])
    fns = {name: in_precision(fn, device, dtype) for name, fn in fns.items()}
    gemm_a = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device)
    others = {"gemm": lambda: gemm_a @ gemm_a, "attention": attention_fn(ours.backbone, images)}
    others = {name: in_precision(fn, device, dtype) for name, fn in others.items()}
    times, differences = compare_and_time(fns, reference, device, repeats, warmup, others)
    gemm_seconds = times.pop("gemm")
    attention_seconds = times.pop("attention")
    return CaseResult(
        case=case,
        dtype=dtype,
        rows=timings(times, "yolos_d2", InferenceTiming, difference=differences),
        flops=detector_flops(ours.backbone, ours.num_classes, (height, width)),
        executed_flops=detector_flops(ours.backbone, ours.num_classes, (height, width), det_only_last_block=True),
        gemm_flops_per_second=2 * GEMM_SIZE**3 / gemm_seconds,
        attention_seconds=attention_seconds,
    )


def run(
    cases: Sequence[str],
    device: str,
    repeats: int,
    warmup: int,
    original_repo: Optional[str] = None,
    onnxruntime: bool = True,
) -> Iterator[CaseResult]:
    """:func:`run_case` for each case in each of :func:`benchmark_dtypes`, yielded as it ends (a case takes minutes)."""
    for case in cases:
        for dtype in benchmark_dtypes(device):
            yield run_case(case, device, dtype, repeats, warmup, original_repo, onnxruntime)


def format_case(result: CaseResult) -> str:
    """The line of ``result``'s GEMM rate, FLOPs and attention time, and its table."""
    config_file, (height, width), batch = parse_case(result.case)
    gemm = result.gemm_flops_per_second
    executed_rate = result.executed_flops * batch / result.row("yolos_d2").seconds
    line = (
        f"{result.case} {result.dtype}: GEMM {GEMM_SIZE}^2 {gemm / 1e9:.1f} GFLOP/s; model {result.flops / 1e9:.1f} "
        f"GFLOP per image, yolos_d2 executes {result.executed_flops / 1e9:.1f} ({executed_rate / 1e9:.1f} "
        f"GFLOP/s, {executed_rate / gemm:.2f} of GEMM); attention alone (scaled_dot_product_attention of every "
        f"block, in {result.dtype}) {result.attention_seconds * 1e3:.1f} ms, {result.attention_share:.2f} of "
        "yolos_d2's time"
    )
    label = f"{os.path.basename(config_file)} {height}x{width} x{batch} {result.dtype}"
    rows = [
        [
            label,
            row.name,
            f"{row.seconds * 1e3:.1f}",
            f"{batch / row.seconds:.2f}",
            f"{result.flops * batch / row.seconds / 1e9:.1f}",
            f"{result.flops * batch / row.seconds / gemm:.2f}",
            f"{row.ratio:.2f}",
            f"{row.difference:.1e}",
        ]
        for row in result.rows
    ]
    header = ["case", "implementation", "ms/batch", "images/s", "GFLOP/s", "x GEMM", "time / yolos_d2", "max abs difference"]
    return line + "\n" + format_table(header, rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks inference", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        type=case_argument,
        default=DEFAULT_CASES,
        metavar="CONFIG:HxW:BATCH",
        help="a LazyConfig, the input's height and width in pixels and its images per forward, one table each "
        f"(default {' '.join(DEFAULT_CASES)})",
    )
    parser.add_argument("--device", default="cpu", help="where the models run, e.g. cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument(
        "--threads", type=cli.positive_int, metavar="N", help="torch's intra-op threads (default: torch's own count)"
    )
    add_repeats_argument(parser, default=7)
    parser.add_argument(
        "--warmup",
        type=cli.non_negative_int,
        default=2,
        metavar="N",
        help="untimed rounds before the timed ones (default 2)",
    )
    parser.add_argument(
        "--original-repo", metavar="DIR", help="a checkout of github.com/hustvl/YOLOS to time its backbone too"
    )
    parser.add_argument(
        "--no-onnxruntime", dest="onnxruntime", action="store_false", help="skip the onnxruntime rows (CPU)"
    )
    args = parser.parse_args(argv)
    with cli.usage_errors(parser):  # a config that does not load: before the first case's minutes
        for case in args.cases:
            load_config(parse_case(case)[0])
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    dtypes = benchmark_dtypes(args.device)
    print(f"device: {describe_device(args.device)}, torch {torch.__version__}; dtypes: {dtypes}")
    if "bf16" not in dtypes:
        print("bf16 skipped: this device does not compute bfloat16 natively (no AVX512-BF16 or AMX on a CPU)")
    for result in run(args.cases, args.device, args.repeats, args.warmup, args.original_repo, args.onnxruntime):
        print(format_case(result), flush=True)
