"""
The code paths that run only on a GPU, checked on the CPU: a tensor subclass stands for a tensor
on a CUDA device (one counts the copies of its values to the host, each a synchronisation on a
GPU), and monkeypatched ``torch.cuda`` functions stand for a GPU host.
"""
import importlib
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from detectron2.engine import hooks
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset

from conftest import build_model, config_path
from yolos_d2.config import ConfigError, check_launch, load_config
from yolos_d2.engine import YOLOSTrainer
from yolos_d2.inference.precision import bf16_is_fast
from yolos_d2.modeling import HungarianMatcher, SetCriterion
from yolos_d2.modeling.postprocessing import token_detections
from yolos_d2.tools import cli, train
from yolos_d2.tools.attention_maps import token_pixel_maps


# The module, which yolos_d2.engine's launch function shadows as an attribute.
launch_module = importlib.import_module("yolos_d2.engine.launch")


class DeviceTensor(torch.Tensor):
    """A tensor that, like one on a CUDA device, refuses ``.numpy()`` until moved by ``.cpu()``."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.numpy:
            raise TypeError("can't convert a device tensor to numpy: use Tensor.cpu() first")
        result = super().__torch_function__(func, types, args, kwargs or {})
        if func is torch.Tensor.cpu:
            return result.as_subclass(torch.Tensor)
        return result


def test_device_tensor_refuses_numpy_until_moved_to_the_cpu():
    weights = torch.rand(2, 3).as_subclass(DeviceTensor)
    try:
        (weights * 2).numpy()
    except TypeError:
        pass
    else:
        raise AssertionError("DeviceTensor.numpy() did not refuse")
    np.testing.assert_array_equal((weights * 2).cpu().numpy(), weights.as_subclass(torch.Tensor).numpy() * 2)


def test_attention_maps_of_device_tensors_come_back_on_the_cpu():
    heads, num_det_tokens, rows, cols, patch = 2, 4, 3, 5, 8
    weights = torch.rand(1, heads, num_det_tokens, 1 + rows * cols + num_det_tokens)
    image_size = (rows * patch - 3, cols * patch - 5)  # padded by the model to (rows, cols) patches
    tokens = [3, 1]

    maps = token_pixel_maps(weights.as_subclass(DeviceTensor), tokens, image_size, patch, patch)

    patches = weights[0, :, :, 1 : 1 + rows * cols].reshape(heads, num_det_tokens, rows, cols)
    pixels = patches.repeat_interleave(patch, -2).repeat_interleave(patch, -1)[..., : image_size[0], : image_size[1]]
    np.testing.assert_array_equal(maps, pixels[:, tokens].transpose(0, 1).numpy())


def test_detections_of_bfloat16_outputs_are_computed_in_float32():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 6, generator=generator).bfloat16()
    boxes = (torch.rand(20, 4, generator=generator) * 0.5 + 0.25).bfloat16()
    image_size = (800, 1333)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, classes, xyxy = token_detections(logits, boxes, image_size, clip=False)

    expected_scores, expected_classes = logits.float().softmax(-1)[:, :-1].max(-1)
    cx, cy, w, h = boxes.float().unbind(-1)
    height, width = image_size
    expected_boxes = torch.stack(
        [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1
    )
    assert scores.dtype == xyxy.dtype == torch.float32
    torch.testing.assert_close(classes, expected_classes, rtol=0, atol=0)
    resolution = torch.finfo(torch.float32).eps
    torch.testing.assert_close(scores, expected_scores, rtol=4 * resolution, atol=0)
    torch.testing.assert_close(xyxy, expected_boxes, rtol=4 * resolution, atol=0)


def fake_cuda_bf16(native: bool):
    """``torch.cuda.is_bf16_supported`` of a GPU that computes bfloat16 natively or emulates it."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native or including_emulation

    return is_bf16_supported


@pytest.mark.parametrize("native", [True, False])
def test_bf16_is_fast_only_on_a_gpu_that_computes_it_natively(monkeypatch, native):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", fake_cuda_bf16(native))
    bf16_is_fast.cache_clear()
    try:
        assert bf16_is_fast("cuda") is native
    finally:
        bf16_is_fast.cache_clear()


def record_launches(monkeypatch):
    """Replace the two ways :func:`launch` starts processes by recorders; return what each was called for."""
    started = {"detectron2": 0, "cpu": 0}
    monkeypatch.setattr(launch_module, "detectron2_launch", lambda *a, **k: started.update(detectron2=1))
    monkeypatch.setattr(launch_module.mp, "start_processes", lambda *a, **k: started.update(cpu=1))
    return started


@pytest.mark.parametrize(
    "device, expected", [("cpu", {"detectron2": 0, "cpu": 1}), ("cuda", {"detectron2": 1, "cpu": 0})]
)
def test_launch_follows_the_training_device_not_the_host(monkeypatch, device, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    started = record_launches(monkeypatch)
    launch_module.launch(print, 2, dist_url="auto", device=device)
    assert started == expected


@pytest.mark.parametrize("device, backend", [("cpu", "gloo"), ("cuda", "nccl")])
def test_torchrun_group_backend_follows_the_training_device(monkeypatch, device, backend):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpus_set = []
    monkeypatch.setattr(torch.cuda, "set_device", gpus_set.append)
    joined = []
    monkeypatch.setattr(launch_module, "_join_group", lambda *a: joined.append(a[0]))
    environ = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    place = launch_module.torchrun_place({**environ, "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"})
    launch_module.join_torchrun_group(place, device=device)
    assert joined == [backend]
    assert gpus_set == ([1] if backend == "nccl" else [])


def test_several_processes_on_one_numbered_gpu_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    cfg = load_config(config_path("yolos_ti"))
    cfg.train.device = "cuda:1"
    check_launch(cfg, num_gpus_per_machine=1, num_machines=2, training=False)
    with pytest.raises(ConfigError, match=r"--num-gpus 2 with train.device='cuda:1'.*use train.device='cuda'"):
        check_launch(cfg, num_gpus_per_machine=2, num_machines=1, training=False)
    cfg.train.device = "cuda"
    check_launch(cfg, num_gpus_per_machine=2, num_machines=1, training=False)


# The tensor methods that copy values to the host: on a GPU, each waits for the device's queued work.
HOST_READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__"}


def host_read_counter():
    """A :class:`DeviceTensor` type, and the list to which each host read of its tensors appends its name."""
    reads = []

    class CountedDeviceTensor(DeviceTensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func.__name__ in HOST_READS:
                reads.append(func.__name__)
            return super().__torch_function__(func, types, args, kwargs)

    return CountedDeviceTensor, reads


class SquaredWeights(torch.nn.Module):
    """A model whose loss terms, one per weight, are the squares of its weights, computed as device tensors."""

    def __init__(self, weights, tensor_type):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weights))
        self.tensor_type = tensor_type

    def forward(self, batch):
        weight = self.weight.as_subclass(self.tensor_type)
        return {f"loss_{i}": weight[i] ** 2 for i in range(self.weight.numel())}


def test_a_training_step_copies_its_loss_terms_to_the_host_at_once():
    weights = [1.0, 2.0, 3.0]
    tensor_type, reads = host_read_counter()
    model = SquaredWeights(weights, tensor_type)
    batches = lambda start_iter, seed: itertools.repeat([{"image_id": 1}])  # noqa: E731
    trainer = YOLOSTrainer(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), seed=0)
    trainer.train(0, 1)
    assert reads == ["tolist"]
    logged = {f"loss_{i}": trainer.storage.history(f"loss_{i}").latest() for i in range(len(weights))}
    assert logged == {f"loss_{i}": w**2 for i, w in enumerate(weights)}


@pytest.mark.parametrize("batch", [1, 4])
def test_the_criterion_reads_the_predictions_twice_whatever_the_batch(batch):
    """Once to check that they are finite (both outputs together), once for the costs the matcher solves on the CPU."""
    tensor_type, reads = host_read_counter()
    generator = torch.Generator().manual_seed(0)
    outputs = {
        "pred_logits": torch.randn(batch, 5, 4, generator=generator).as_subclass(tensor_type),
        "pred_boxes": (torch.rand(batch, 5, 4, generator=generator) * 0.5 + 0.25).as_subclass(tensor_type),
    }
    targets = [{"labels": torch.tensor([i % 3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])} for i in range(batch)]
    SetCriterion(num_classes=3, matcher=HungarianMatcher())(outputs, targets)
    assert reads == ["__bool__", "cpu"]


class CachedGrids(DatasetEvaluator):
    """Records how many grids the backbone holds resized position embeddings for, after each batch."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.counts = []

    def process(self, inputs, outputs):
        self.counts.append(len(self.backbone._pe_cache))


def test_an_evaluation_during_training_leaves_no_position_embeddings_cached():
    """
    detectron2's evaluation hook, as a run's evaluations go: the evaluation caches the embeddings
    of each grid of its images (two here), and the model, back in training mode, holds none; in
    eval mode, the cache is kept between calls.
    """
    model = build_model("quickstart", ["model.detector.backbone.depth=1"]).train()
    backbone = model.detector.backbone
    batches = [[{"image": torch.zeros(3, *size, dtype=torch.uint8)}] for size in [(64, 96), (96, 64)]]
    cached = CachedGrids(backbone)
    evaluation = hooks.EvalHook(1, lambda: inference_on_dataset(model, batches, cached))
    evaluation.trainer = SimpleNamespace(iter=0, max_iter=10)  # evaluates after iteration 0
    evaluation.after_step()
    assert cached.counts == [1, 2]
    assert model.training and len(backbone._pe_cache) == 0

    model.eval()
    with torch.no_grad():
        model(batches[0])
    model.eval()
    assert len(backbone._pe_cache) == 1


@pytest.fixture
def tf32_off():
    """torch's TF32 setting of CUDA's matrix products, off during the test and put back after it."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("allowed", [False, True])
def test_each_process_of_a_run_on_a_gpu_sets_tf32_as_the_config_says(monkeypatch, tmp_path, tf32_off, allowed):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    # detectron2's setup describes the GPUs, and the logs' setup is the process's: neither is tested here.
    monkeypatch.setattr(train, "default_setup", lambda cfg, args: None)
    monkeypatch.setattr(train, "setup_logger", lambda *args, **kwargs: None)
    monkeypatch.setattr(train, "do_train", lambda args, cfg: torch.backends.cuda.matmul.allow_tf32)
    argv = ["--config-file", config_path("quickstart"), f"train.output_dir={tmp_path}"]
    args = cli.parse_args(train.argument_parser(), [*argv, "train.device=cuda", f"train.allow_tf32={allowed}"])
    args.num_threads = torch.get_num_threads(), "as the tests run"
    assert train.worker_main(args) is allowed

