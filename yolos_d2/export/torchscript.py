"""The YOLOS detector as TorchScript (``torch.jit.trace``), for LibTorch."""
import copy

import torch

from ..modeling import YOLOSDetector

__all__ = ["export_torchscript"]


def export_torchscript(detector: YOLOSDetector, images: torch.Tensor, path: str) -> None:
    """
    Write ``detector`` to ``path`` traced with ``torch.jit.trace``; the traced module returns
    the same dict as :meth:`YOLOSDetector.forward`, with gradients enabled or not. Its parameters
    do not require grad.

    Args:
        detector: in eval mode.
        images: (B, 3, H, W) example input that is traced.
    """
    batch, _, height, width = images.shape
    patch = detector.backbone.patch_size
    # Traced without grad, the blocks record their inference path, which adds into fresh tensors
    # in place (transformer.Block.forward): with parameters that require grad, autograd refuses
    # that graph once gradients are enabled. A copy is traced: the trace shares its parameters.
    frozen = copy.deepcopy(detector).requires_grad_(False)
    # jit.trace also traces `other` (another batch size and patch grid) and raises if its graph or
    # outputs differ from the example's: a trace specialised to the example's size cannot pass.
    other = torch.randn(batch + 1, 3, width + patch, height + 2 * patch, device=images.device)
    with torch.no_grad():
        traced = torch.jit.trace(frozen, (images,), strict=False, check_inputs=[(images,), (other,)])
    traced.save(path)
