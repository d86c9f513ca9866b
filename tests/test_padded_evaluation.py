"""The original's evaluation pairs, as its DistributedSampler and DataLoader form them."""
import pytest
from torch.utils.data import BatchSampler, DistributedSampler

from benchmarks.padded_evaluation import original_eval_pairs


@pytest.mark.parametrize("num_images, processes", [(20, 8), (300, 8), (5000, 8), (7, 3), (16, 8)])
def test_pairs_are_the_original_samplers(num_images, processes):
    dataset = list(range(num_images))
    expected = []
    for rank in range(processes):
        sampler = DistributedSampler(dataset, num_replicas=processes, rank=rank, shuffle=False)
        expected += [tuple(batch) for batch in BatchSampler(sampler, 2, drop_last=False)]
    assert original_eval_pairs(num_images, processes) == expected
    assert {i for batch in expected for i in batch} == set(dataset)
