"""The YOLOS detector as TorchScript (``torch.jit.trace``), for LibTorch."""
import torch

from ..modeling import YOLOSDetector

__all__ = ["export_torchscript"]


def export_torchscript(detector: YOLOSDetector, images: torch.Tensor, path: str) -> None:
    """
    Write ``detector`` to ``path`` traced with ``torch.jit.trace``; the traced module returns
    the same dict as :meth:`YOLOSDetector.forward`.

    Args:
        detector: in eval mode.
        images: (B, 3, H, W) example input that is traced.
    """
    batch, _, height, width = images.shape
    patch = detector.backbone.patch_size
    # jit.trace also traces `other` (another batch size and patch grid) and raises if its graph or
    # outputs differ from the example's: a trace specialised to the example's size cannot pass.
    other = torch.randn(batch + 1, 3, width + patch, height + 2 * patch, device=images.device)
    with torch.no_grad():
        traced = torch.jit.trace(detector, (images,), strict=False, check_inputs=[(images,), (other,)])
    traced.save(path)
