"""A training loader whose order of images can be resumed at any iteration."""
import itertools
from typing import Callable, Dict, Iterator, List, Sequence

import torch
from detectron2.data import build_detection_train_loader
from detectron2.utils import comm
from torch.utils.data import Sampler

__all__ = ["ResumableTrainingSampler", "build_train_loader"]


class ResumableTrainingSampler(Sampler):
    """
    Like detectron2's ``TrainingSampler`` (an endless stream of shuffled epochs, interleaved
    over the workers), but able to start ``start_index`` samples into each worker's share of
    the stream without producing the skipped samples' data.
    """

    def __init__(self, size: int, *, seed: int, start_index: int = 0, shuffle: bool = True):
        """
        Args:
            size: number of samples in the dataset.
            seed: seed of the shuffling; the same on every worker.
            start_index: number of samples of this worker's share to skip.
            shuffle: shuffle each epoch, else go through the dataset in order.
        """
        if size <= 0:
            raise ValueError(f"ResumableTrainingSampler needs a non-empty dataset, got size={size}")
        self._size = size
        self._seed = seed
        self._start_index = start_index
        self._shuffle = shuffle

    def _epochs(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=generator).tolist()
            else:
                yield from range(self._size)

    def __iter__(self) -> Iterator[int]:
        rank, world_size = comm.get_rank(), comm.get_world_size()
        first = self._start_index * world_size + rank
        yield from itertools.islice(self._epochs(), first, None, world_size)


def build_train_loader(
    dataset: Sequence[Dict],
    *,
    mapper: Callable[[Dict], Dict],
    total_batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
    start_iter: int = 0,
) -> Iterator[List[Dict]]:
    """
    detectron2's ``build_detection_train_loader`` over a :class:`ResumableTrainingSampler`,
    starting at batch ``start_iter`` of the order defined by ``seed``. Batches are not grouped by
    aspect ratio (as in the original), so the order does not depend on what was buffered.

    Args:
        dataset: dataset dicts, e.g. from ``get_detection_dataset_dicts``.
        mapper: turns a dataset dict into the model's input dict.
        total_batch_size: images per iteration over all workers.
    """
    world_size = comm.get_world_size()
    if total_batch_size % world_size != 0:
        raise ValueError(
            f"dataloader.train.total_batch_size={total_batch_size} is not divisible by the {world_size} workers"
        )
    sampler = ResumableTrainingSampler(
        len(dataset), seed=seed, start_index=start_iter * (total_batch_size // world_size)
    )
    return build_detection_train_loader(
        dataset,
        mapper=mapper,
        sampler=sampler,
        total_batch_size=total_batch_size,
        aspect_ratio_grouping=False,
        num_workers=num_workers,
    )
