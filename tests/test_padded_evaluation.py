"""
The padded-evaluation benchmark: the original's evaluation pairs, as its DistributedSampler and
DataLoader form them, and the images padded in them.
"""
import pytest
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from torch.utils.data import BatchSampler, DistributedSampler

from benchmarks import padded_evaluation
from benchmarks.padded_evaluation import original_eval_pairs
from conftest import random_quickstart_model


@pytest.mark.parametrize("num_images, processes", [(20, 8), (300, 8), (5000, 8), (7, 3), (16, 8)])
def test_pairs_are_the_original_samplers(num_images, processes):
    dataset = list(range(num_images))
    expected = []
    for rank in range(processes):
        sampler = DistributedSampler(dataset, num_replicas=processes, rank=rank, shuffle=False)
        expected += [tuple(batch) for batch in BatchSampler(sampler, 2, drop_last=False)]
    assert original_eval_pairs(num_images, processes) == expected
    assert {i for batch in expected for i in batch} == set(dataset)


def test_images_of_one_size_never_pad_and_cropped_ones_pad_in_pairs(tmp_path):
    cfg, model = random_quickstart_model(str(tmp_path), "padded_evaluation_val", num_images=6, depth=1)
    name = cfg.dataloader.test.dataset.names

    same_size = padded_evaluation.run(cfg, model, processes=2)
    assert (same_size.dataset, same_size.images) == (name, 6)
    assert [row.padded for row in same_size.rows] == [0, 0]

    cropped = padded_evaluation.run(cfg, model, processes=2, crop_seed=0, work_dir=str(tmp_path / "cropped"))
    assert (cropped.dataset, cropped.images) == (f"{name}_cropped_0", 6)
    mapper = instantiate(cfg.dataloader.test.mapper)
    sizes = [tuple(mapper(dict(record))["image"].shape[-2:]) for record in DatasetCatalog.get(cropped.dataset)]
    # On 2 processes, pairs (0, 2) and (1, 3), images 4 and 5 alone: an image pads to its partner's larger sides.
    padded = sum(sizes[i] != tuple(map(max, sizes[a], sizes[b])) for a, b in [(0, 2), (1, 3)] for i in (a, b))
    assert padded > 0 and [row.padded for row in cropped.rows] == [0, padded]
