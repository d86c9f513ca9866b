"""Peak memory of the tensors a piece of code allocates, on CPU as on CUDA."""
import weakref
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["peak_allocated_bytes"]


class _LiveStorageBytes(TorchDispatchMode):
    """Counts the bytes of storages created by ATen ops while active, and their peak while alive."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._alive = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._track(tensor.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage):
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self._alive:
            return
        self._alive.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, key, size)

    def _release(self, key: int, size: int):
        self._alive.discard(key)
        self.live -= size


def peak_allocated_bytes(fn: Callable[[], object], device: str) -> int:
    """
    Peak bytes of tensors allocated by ``fn()`` and alive at the same time (tensors that existed
    before are not counted). On CUDA from the caching allocator's statistics; on CPU, which keeps
    none, by following every tensor storage ATen creates while ``fn`` runs (slower).
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with _LiveStorageBytes() as counter:
        fn()
    return counter.peak
