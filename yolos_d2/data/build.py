"""A training loader that resumes at any iteration with the same images and the same augmentations."""
import itertools
import logging
import random
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import build_detection_train_loader
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from .validation import check_trainable_boxes

__all__ = ["ResumableTrainingSampler", "build_train_loader"]

logger = logging.getLogger(__name__)


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
        self._rank, self._world_size = comm.get_rank(), comm.get_world_size()

    @property
    def start_index(self) -> int:
        """Position in this worker's share of the stream of the first index produced."""
        return self._start_index

    def _epochs(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=generator).tolist()
            else:
                yield from range(self._size)

    def __iter__(self) -> Iterator[int]:
        first = self._start_index * self._world_size + self._rank
        yield from itertools.islice(self._epochs(), first, None, self._world_size)


class _MappedTrainingStream(IterableDataset):
    """
    The dataset dicts a :class:`ResumableTrainingSampler` picks, mapped, for a DataLoader that
    batches ``batch_size`` of them. Each batch depends only on the seed and its position in the
    stream, not on the number of data-loader workers nor on the iteration the run started at:

    - worker w of N maps batches w, w + N, ... (counted from the start), which the DataLoader
      takes from the workers in turn;
    - before a sample is mapped, the python, numpy and torch random generators are seeded from
      (seed, rank, position of the sample in the stream), so that its augmentation draws are the
      same whichever process maps it.

    An image that cannot be decoded (a corrupt or truncated file) is skipped: the next dataset
    entry takes its place, and the file is logged with the count of images skipped so far.
    """

    def __init__(
        self,
        dataset: Sequence[Dict],
        sampler: ResumableTrainingSampler,
        mapper: Callable[[Dict], Optional[Dict]],
        *,
        batch_size: int,
        seed: int,
    ):
        """
        Args:
            dataset: dataset dicts, indexed by the sampler's indices. A sequence of dicts (not a
                torch ``Dataset``) is serialised into one byte array (detectron2's
                ``DatasetFromList``), which data-loader workers share: Python objects would be
                copied into each worker as it touches them (reference counts), so that its
                memory grew with the dataset over a run.
            sampler: this rank's stream of dataset indices.
            mapper: turns a dataset dict into the model's input dict.
            batch_size: samples per batch of this rank.
            seed: seed of the augmentations (the sampler's own seed orders the images).
        """
        self._dataset = dataset if isinstance(dataset, Dataset) else DatasetFromList(dataset, copy=False)
        self._sampler = sampler
        self._mapper = mapper
        self._batch_size = batch_size
        self._seed = seed
        self._rank = comm.get_rank()
        self._unreadable = set()  # dataset indices this process failed to read

    def __iter__(self) -> Iterator[Dict]:
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        start = self._sampler.start_index
        for position, index in zip(itertools.count(start), self._sampler):
            if (position - start) // self._batch_size % num_workers == worker_id:
                yield self._map(index, position)

    def _map(self, index: int, position: int) -> Dict:
        """``dataset[index]`` mapped with the generators seeded for ``position``, or the next readable entry."""
        sequence = np.random.SeedSequence(self._seed, spawn_key=(self._rank, position))
        seed = int(sequence.generate_state(1)[0])
        for candidate in itertools.chain(range(index, len(self._dataset)), range(index)):
            if candidate in self._unreadable:
                continue
            dataset_dict = self._dataset[candidate]
            _seed_cpu_generators(seed)
            try:
                mapped = self._mapper(dataset_dict)
            except (OSError, SyntaxError) as e:  # what PIL raises for a file it cannot decode
                self._unreadable.add(candidate)
                logger.warning(
                    f"Skipped an unreadable image, image id {dataset_dict.get('image_id')}: "
                    f"{_naming_the_file(e, dataset_dict['file_name'])}. "
                    f"Images skipped so far by this process: {len(self._unreadable)}"
                )
                continue
            if mapped is not None:  # detectron2's mappers may return None to skip a sample
                return mapped
        raise RuntimeError(f"None of the {len(self._dataset)} training images could be read and mapped")


def _naming_the_file(error: BaseException, file_name: str) -> str:
    """
    The message of ``error``, led by ``file_name`` unless it names it already (as the errors of
    :func:`yolos_d2.data.read_image` do; PIL's, from other mappers, do not).
    """
    message = str(error)
    return message if file_name in message else f"{file_name}: {message}"


def _seed_cpu_generators(seed: int) -> None:
    """
    Seed python's, numpy's and torch's CPU random generators, which augmentations draw from.
    (detectron2's ``seed_all_rng`` also seeds CUDA through ``torch.manual_seed``, which takes
    about half a millisecond per call when CUDA is not initialised.)
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)


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
    detectron2's ``build_detection_train_loader`` over the dataset dicts of a
    :class:`ResumableTrainingSampler`, starting at batch ``start_iter`` of the order defined by
    ``seed``. The batches, their images and their augmentations depend only on ``seed`` and the
    iteration, whatever ``num_workers`` and ``start_iter`` are (see :class:`_MappedTrainingStream`;
    unreadable images are skipped there). Batches are not grouped by aspect ratio (as in the
    original), so the order does not depend on what was buffered. A dataset without a box to
    train on (only crowd annotations, or none) is refused with ``ValueError``.

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
    batch_size = total_batch_size // world_size
    check_trainable_boxes(dataset)
    sampler = ResumableTrainingSampler(len(dataset), seed=seed, start_index=start_iter * batch_size)
    stream = _MappedTrainingStream(dataset, sampler, mapper, batch_size=batch_size, seed=seed)
    return build_detection_train_loader(
        stream, mapper=None, total_batch_size=total_batch_size, aspect_ratio_grouping=False, num_workers=num_workers
    )
