"""
The code paths that run only on a GPU, checked on the CPU: a tensor subclass stands for a tensor
on a CUDA device, and monkeypatched ``torch.cuda`` functions stand for a GPU host.
"""
import importlib

import numpy as np
import pytest
import torch

from conftest import config_path
from yolos_d2.config import ConfigError, check_launch, load_config
from yolos_d2.inference.precision import bf16_is_fast
from yolos_d2.modeling.postprocessing import token_detections
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
