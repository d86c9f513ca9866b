"""
Inference speed of yolos_d2's detector against transformers' ``YolosForObjectDetection`` with eager
and SDPA attention, on the same (random) weights and input, timed interleaved in one process::

    yolos-benchmark inference                      # the CPU defaults below
    yolos-benchmark inference --device cuda --cases configs/yolos_s.py:800x1333:8
    yolos-benchmark inference --original-repo ../YOLOS   # also the original code

Each case is ``CONFIG:HxW:BATCH``. The table gives milliseconds per batch (median over
``--repeats`` rounds after warm-up), images per second, the model's FLOP rate and its fraction of
the rate of a large ``torch.mm`` timed in the same rounds. FLOPs are the model's matrix-multiply
FLOPs over the full sequence (what transformers computes); yolos_d2 computes fewer, since its last
block only needs the ``[DET]`` tokens' outputs, and this is reported under the table.
"""
import argparse
import copy
import os
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.config import instantiate
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ..checkpoint.converters import coco_class_head_rows, convert_huggingface
from ..config import load_config
from ..modeling import YOLOSDetector
from .flops import detector_flops
from .huggingface import random_huggingface_model
from .original import original_detector
from .timing import format_table, time_interleaved

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


def bf16_is_fast(device: str) -> bool:
    """Whether bfloat16 matrix multiplies run at least as fast as float32 on ``device``."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    a = torch.randn(512, 512)
    times = time_interleaved({"fp32": lambda: a @ a, "bf16": lambda: a.bfloat16() @ a.bfloat16()}, repeats=3)
    return times["bf16"] <= times["fp32"]


def run_case(
    case: str, device: str, dtype: str, repeats: int, warmup: int, original_repo: Optional[str] = None
) -> List[List[str]]:
    config_file, (height, width), batch = parse_case(case)
    models = build_models(config_file, device, original_repo)
    images = torch.randn(batch, 3, height, width, device=device)
    fns = {name: forward_fn(name, model, images) for name, model in models.items()}
    with torch.inference_mode():
        ours = fns["yolos_d2"]()
        difference = max(max_output_difference(ours, fn()) for name, fn in fns.items() if name != "yolos_d2")
    backbone = models["yolos_d2"].backbone
    flops = detector_flops(backbone, models["yolos_d2"].num_classes, (height, width)) * batch
    executed = detector_flops(backbone, models["yolos_d2"].num_classes, (height, width), det_only_last_block=True)

    gemm_a = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device)
    fns["gemm"] = lambda: gemm_a @ gemm_a
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode(), autocast:
        times = time_interleaved(fns, repeats=repeats, warmup=warmup, sync=sync)
    gemm_rate = 2 * GEMM_SIZE**3 / times.pop("gemm")

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
            ]
        )
    print(
        f"{case} {dtype}: GEMM {GEMM_SIZE}^2 {gemm_rate / 1e9:.1f} GFLOP/s; model {flops / batch / 1e9:.1f} GFLOP "
        f"per image, yolos_d2 executes {executed / 1e9:.1f} ({executed * batch / times['yolos_d2'] / 1e9:.1f} "
        f"GFLOP/s, {executed * batch / times['yolos_d2'] / gemm_rate:.2f} of GEMM); max |yolos_d2 - others| "
        f"{difference:.1e}"
    )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="yolos-benchmark inference", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="CONFIG:HxW:BATCH ...")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--original-repo", help="a checkout of github.com/hustvl/YOLOS to time its backbone too")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    dtypes = ["fp32"] + (["bf16"] if bf16_is_fast(args.device) else [])
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"device: {device_name}, {torch.get_num_threads()} threads, torch {torch.__version__}; dtypes: {dtypes}")
    if "bf16" not in dtypes:
        print("bf16 skipped: bfloat16 matrix multiplies are slower than float32 on this device")
    header = ["case", "implementation", "ms/batch", "images/s", "GFLOP/s", "x GEMM", "time / yolos_d2"]
    for case in args.cases:
        for dtype in dtypes:
            rows = run_case(case, args.device, dtype, args.repeats, args.warmup, args.original_repo)
            print(format_table(header, rows), flush=True)
