"""Reading checkpoint files without running code from them, and writing them atomically."""
import argparse
import os
import pickle
import tempfile
from typing import Any, Dict

import torch


def load_weights_file(path: str) -> Dict[str, Any]:
    """
    Load a ``.pth``/``.pt``/``.bin`` file with ``torch.load(weights_only=True)``, or a
    ``.safetensors`` file, onto the CPU.

    The original YOLOS training code stores its ``argparse.Namespace`` under "args"; that one class
    is allowed, nothing else that would need code to run.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused_global(e)
        if refused is None:
            raise ValueError(f"{path!r} is not a readable PyTorch checkpoint: its pickle data is malformed") from None
        raise ValueError(
            f"Refusing to load {path!r}: it holds pickled objects other than tensors, and loading "
            f"them could run code ({refused}). Re-save its state dict alone, e.g. "
            f"torch.save({{'model': state_dict}}, path), in a trusted environment."
        ) from None
    except RuntimeError as e:
        raise ValueError(f"{path!r} is not a readable PyTorch checkpoint: {e}") from None


def save_checkpoint_atomic(obj: Dict[str, Any], path: str) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _refused_global(error: Exception):
    """The line of torch's weights-only error naming a refused class or function, if any."""
    for line in str(error).splitlines():
        if "GLOBAL" in line:
            return line.strip()
    return None
