"""Reading checkpoint files without running code from them, and writing them atomically."""
import argparse
import os
import pickle
import zipfile
from typing import Any, Dict

import numpy as np
import torch

from ..utils.file_io import write_atomic

# What a detectron2 model-zoo ``.pkl`` file ({"model": numpy arrays, "__author__": ...}) needs to
# be unpickled; nothing here can run code of the file's choosing.
_SAFE_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # bytes pickled with protocol 2
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
    ("numpy._core.multiarray", "_reconstruct"),  # the same in numpy >= 2
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _WeightsUnpickler(pickle.Unpickler):
    """Builds builtin containers and numpy arrays only: any other class or function is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"GLOBAL {module}.{name} is not allowed")
        return super().find_class(module, name)


def load_weights_file(path: str) -> Dict[str, Any]:
    """
    Load a ``.pth``/``.pt``/``.bin`` file with ``torch.load(weights_only=True)``, a ``.safetensors``
    file, a ``.pkl`` file (detectron2's model-zoo format) with an unpickler that builds only
    numpy arrays and builtin containers, or a ``.npz`` file (numpy arrays, e.g. the JAX ViT
    releases) without pickled objects; tensors go to the CPU.

    The original YOLOS training code stores its ``argparse.Namespace`` under "args"; that one class
    is allowed, nothing else that would need code to run.

    Raises:
        FileNotFoundError if ``path`` does not exist; ValueError naming ``path`` if it cannot be
        read, holds objects whose loading could run code, or holds something other than a dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path!r} is not a readable checkpoint: empty file (0 bytes)")
    loaded = _load(path)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path!r} is not a readable checkpoint: it holds a {type(loaded).__name__}, not a dict")
    return loaded


def _load(path: str) -> Any:
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except SafetensorError as e:
            raise ValueError(f"{path!r} is not a readable checkpoint: safetensors says {e}") from None
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return dict(arrays)
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path!r} is not a readable checkpoint: numpy says {e}") from None
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:  # latin1 reads Python 2 pickles, as detectron2 does
                return _WeightsUnpickler(f, encoding="latin1").load()
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused_global(e)
        if refused is None:
            raise ValueError(f"{path!r} is not a readable checkpoint: its pickle data is malformed") from None
        raise ValueError(
            f"Refusing to load {path!r}: it holds pickled objects other than tensors and arrays, and "
            f"loading them could run code ({refused}). Re-save its state dict alone, e.g. "
            f"torch.save({{'model': state_dict}}, path), in a trusted environment."
        ) from None
    except OSError as e:  # torch's reader on some truncated files: EINVAL
        raise ValueError(f"{path!r} is not a readable checkpoint: reading it fails ({e.strerror or e})") from None
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{path!r} is not a readable checkpoint: {e}") from None


def state_dict_of(checkpoint: Dict[str, Any], path: str) -> Dict[str, Any]:
    """
    The state dict in ``checkpoint`` (as :func:`load_weights_file` returns it from ``path``): its
    "model" entry if that is a dict, else the checkpoint itself.

    Raises:
        ValueError naming ``path`` and an entry if the state dict holds anything but tensors and
        numpy arrays under string names.
    """
    state = checkpoint["model"] if isinstance(checkpoint.get("model"), dict) else checkpoint
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, (torch.Tensor, np.ndarray)):
            raise ValueError(
                f"{path!r} is not a readable checkpoint: its entry {key!r} holds a {type(value).__name__}, "
                "where a state dict (names to tensors), alone or under 'model', is expected"
            )
    return state


def save_checkpoint_atomic(obj: Dict[str, Any], path: str) -> None:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda f: torch.save(obj, f))


def _refused_global(error: Exception):
    """The line of an unpickling error naming a refused class or function, if any."""
    for line in str(error).splitlines():
        if "GLOBAL" in line:
            return line.strip()
    return None
