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
where the device computes bfloat16 natively (``yolos_d2.inference.precision.bf16_is_fast``).
"""
import argparse
import copy
import os
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.config import instantiate
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from yolos_d2.checkpoint.converters import coco_class_head_rows, convert_huggingface
from yolos_d2.config import load_config
from yolos_d2.export.onnx import OnnxRuntimeDetector
from yolos_d2.inference.precision import bf16_is_fast, quantize_linear_int8
from yolos_d2.modeling import YOLOSDetector
from yolos_d2.modeling.position_embedding import patch_grid
from yolos_d2.modeling.flops import detector_flops
from .huggingface import random_huggingface_model
from .original import original_detector
from yolos_d2.utils.table import format_table
from .timing import time_interleaved

DEFAULT_CASES = ["configs/yolos_ti.py:512x688:1", "configs/yolos_ti.py:512x688:8", "configs/yolos_s.py:800x1216:1"]
GEMM_SIZE = 2048


def parse_case(case: str) -> Tuple[str, Tuple[int, int], int]:
    """'configs/yolos_ti.py:512x688:1' -> (config file, (height, width), batch size)."""
    try:
        config_file, size, batch = case.rsplit(":", 2)
        height, width = (int(v) for v in size.split("x"))
        return config_file, (height, width), int(batch)
    except ValueError:
        raise ValueError(f"case {case!r} is not CONFIG:HxW:BATCH, e.g. configs/yolos_ti.py:512x688:1") from None


def build_models(config_file: str, device: str, original_repo: Optional[str] = None) -> Dict[str, torch.nn.Module]:
    """
    yolos_d2's detector and transformers' eager and SDPA models holding the same random weights:
    transformers' (:func:`random_huggingface_model`), converted with ``convert_huggingface`` and
    loaded into ours. With ``original_repo`` (a checkout of hustvl/YOLOS), also the original
    implementation's backbone with our heads.
    """
    cfg = load_config(config_file)
    peer = random_huggingface_model(cfg.model.detector.backbone)
    ours: YOLOSDetector = instantiate(cfg.model.detector)
    state, _ = convert_huggingface(peer.state_dict(), cfg.model.detector.backbone.num_det_tokens)
    consume_prefix_in_state_dict_if_present(state, "detector.")
    ours.load_state_dict(state)

    models = {"yolos_d2": ours}
    for attention in ("eager", "sdpa"):
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


def max_output_difference(ours: Dict[str, torch.Tensor], theirs: Dict[str, torch.Tensor]) -> float:
    """Largest absolute difference of two detectors' logits and boxes; a 92-class COCO head is mapped to 81."""
    logits = theirs["pred_logits"]
    if logits.shape[-1] != ours["pred_logits"].shape[-1]:
        logits = logits[..., coco_class_head_rows()]
    return max(
        (ours["pred_logits"] - logits).abs().max().item(),
        (ours["pred_boxes"] - theirs["pred_boxes"]).abs().max().item(),
    )


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def run_case(
    case: str,
    device: str,
    dtype: str,
    repeats: int,
    warmup: int,
    original_repo: Optional[str] = None,
    onnxruntime: bool = True,
) -> List[List[str]]:
    config_file, (height, width), batch = parse_case(case)
    models = build_models(config_file, device, original_repo)
    images = torch.randn(batch, 3, height, width, device=device)
    ours = models["yolos_d2"]
    with torch.inference_mode():
        reference = ours(images)
    if dtype == "fp32" and device == "cpu":
        models.update(lower_precision_models(ours, images, onnxruntime))
    fns = {name: forward_fn(name, model, images) for name, model in models.items()}
    autocast = torch.autocast(device.split(":")[0], dtype=AUTOCAST_DTYPES[dtype]) if dtype != "fp32" else nullcontext()
    with torch.inference_mode(), autocast:
        differences = {name: max_output_difference(reference, fn()) for name, fn in fns.items()}
    backbone = ours.backbone
    flops = detector_flops(backbone, ours.num_classes, (height, width)) * batch
    executed = detector_flops(backbone, ours.num_classes, (height, width), det_only_last_block=True)

    gemm_a = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device)
    fns["gemm"] = lambda: gemm_a @ gemm_a
    fns["attention"] = attention_fn(backbone, images)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode(), autocast:
        times = time_interleaved(fns, repeats=repeats, warmup=warmup, sync=sync)
    gemm_rate = 2 * GEMM_SIZE**3 / times.pop("gemm")
    attention = times.pop("attention")

    rows = []
    for name, seconds in times.items():
        rows.append(
            [
                f"{os.path.basename(config_file)} {height}x{width} x{batch} {dtype}",
                name,
                f"{seconds * 1e3:.1f}",
                f"{batch / seconds:.2f}",
                f"{flops / seconds / 1e9:.1f}",
                f"{flops / seconds / gemm_rate:.2f}",
                f"{seconds / times['yolos_d2']:.2f}",
                f"{differences[name]:.1e}",
            ]
        )
    print(
        f"{case} {dtype}: GEMM {GEMM_SIZE}^2 {gemm_rate / 1e9:.1f} GFLOP/s; model {flops / batch / 1e9:.1f} GFLOP "
        f"per image, yolos_d2 executes {executed / 1e9:.1f} ({executed * batch / times['yolos_d2'] / 1e9:.1f} "
        f"GFLOP/s, {executed * batch / times['yolos_d2'] / gemm_rate:.2f} of GEMM); attention alone "
        f"(scaled_dot_product_attention of every block, in {dtype}) {attention * 1e3:.1f} ms, "
        f"{attention / times['yolos_d2']:.2f} of yolos_d2's time"
    )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks inference", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="CONFIG:HxW:BATCH ...")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--original-repo", help="a checkout of github.com/hustvl/YOLOS to time its backbone too")
    parser.add_argument(
        "--no-onnxruntime", dest="onnxruntime", action="store_false", help="skip the onnxruntime rows (CPU)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cuda = args.device.startswith("cuda")
    dtypes = ["fp32"] + (["bf16"] if bf16_is_fast(args.device) else []) + (["fp16"] if cuda else [])
    device_name = torch.cuda.get_device_name(args.device) if cuda else "CPU"
    print(f"device: {device_name}, {torch.get_num_threads()} threads, torch {torch.__version__}; dtypes: {dtypes}")
    if "bf16" not in dtypes:
        print("bf16 skipped: this device does not compute bfloat16 natively (no AVX512-BF16 or AMX on a CPU)")
    header = ["case", "implementation", "ms/batch", "images/s", "GFLOP/s", "x GEMM", "time / yolos_d2", "max abs difference"]
    for case in args.cases:
        for dtype in dtypes:
            rows = run_case(case, args.device, dtype, args.repeats, args.warmup, args.original_repo, args.onnxruntime)
            print(format_table(header, rows), flush=True)
