"""Export of the detector to ONNX and TorchScript: one graph for every batch and image size, as eager."""
from types import SimpleNamespace

import onnxruntime
import pytest
import torch

from _helpers import build_model, config_path, max_abs_diff
from yolos_d2.checkpoint import save_checkpoint_atomic
from yolos_d2.tools.export import EXPORTERS, INPUT_NAME, OUTPUT_NAMES, main

# Position embeddings on a 4x6 patch grid.
SMALL = [
    "model.detector.backbone.depth=2",
    "model.detector.backbone.init_pe_size=[64,96]",
    "model.detector.backbone.num_det_tokens=10",
    "model.detector.num_classes=5",
]
EXPORT_SIZE = (64, 96)  # the init grid, where eager skips the resize
# (batch, height, width): the export size, another grid, the transposed init grid (same patch
# count, other layout), a size that is not whole patches and a single row of patches.
SIZES = [(1, 64, 96), (2, 80, 112), (3, 96, 64), (2, 50, 70), (1, 16, 40)]


def _small_model():
    model = build_model("yolos_ti", SMALL)
    with torch.no_grad():  # large enough that a wrongly resized embedding shows in the outputs
        model.detector.backbone.pos_embed.normal_()
    return model


def _run(fmt: str, path: str, images: torch.Tensor):
    """(pred_logits, pred_boxes) of the exported model in ``path`` on ``images``."""
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return [torch.from_numpy(o) for o in session.run(OUTPUT_NAMES, {INPUT_NAME: images.numpy()})]
    with torch.no_grad():
        outputs = torch.jit.load(path)(images)
    return [outputs[name] for name in OUTPUT_NAMES]


def _assert_matches_eager(model, fmt: str, path: str, sizes):
    torch.manual_seed(1)
    for batch, height, width in sizes:
        images = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected = model.detector(images)
        for name, got in zip(OUTPUT_NAMES, _run(fmt, path, images)):
            assert got.shape == expected[name].shape, (name, batch, height, width)
            assert max_abs_diff(got, expected[name]) < 1e-4, (name, batch, height, width)


@pytest.fixture(scope="module", params=sorted(EXPORTERS))
def exported(request, tmp_path_factory):
    """The small model exported at EXPORT_SIZE after eager runs that filled its position-embedding cache."""
    model = _small_model()
    example = torch.randn(1, 3, *EXPORT_SIZE)
    with torch.no_grad():
        model.detector(torch.randn(1, 3, 48, 80))
        eager = model.detector(example)
    cache = {key: list(value) for key, value in model.detector.backbone._pe_cache.items()}
    path = str(tmp_path_factory.mktemp("export") / f"small.{request.param}")
    EXPORTERS[request.param](model.detector, example, path)
    return SimpleNamespace(fmt=request.param, path=path, model=model, example=example, eager=eager, cache=cache)


def test_exported_model_matches_eager_at_other_sizes(exported):
    _assert_matches_eager(exported.model, exported.fmt, exported.path, SIZES)


@pytest.mark.parametrize("exported", ["onnx"], indirect=True)
def test_onnx_input_has_dynamic_batch_height_and_width(exported):
    session = onnxruntime.InferenceSession(exported.path, providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [(INPUT_NAME, ["batch", 3, "height", "width"])]
    assert [o.shape for o in session.get_outputs()] == [["batch", 10, 6], ["batch", 10, 4]]


def test_export_neither_uses_nor_fills_the_position_embedding_cache(exported):
    # The matching outputs at other sizes show that no cached embedding went into the graph.
    backbone = exported.model.detector.backbone
    for key, tensors in exported.cache.items():
        assert all(a is b for a, b in zip(backbone._pe_cache[key], tensors))
    with torch.no_grad():
        for key, tensors in backbone._pe_cache.items():  # torchscript's trace check runs eager too
            fresh = backbone._compute_position_embeddings(key[0])
            assert all(torch.equal(a, b) for a, b in zip(tensors, fresh) if a is not None)
        after = exported.model.detector(exported.example)
    assert all(torch.equal(after[name], exported.eager[name]) for name in OUTPUT_NAMES)


@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=pytest.mark.slow), "torchscript"])
def test_command_line_exports_the_checkpoint(fmt, tmp_path):
    model = _small_model()
    checkpoint = str(tmp_path / "small.pth")
    save_checkpoint_atomic({"model": model.state_dict()}, checkpoint)
    path = str(tmp_path / "out" / f"small.{fmt}")
    argv = ["--config-file", config_path("yolos_ti"), "--output", path, "--format", fmt]
    argv += ["--height", "64", "--width", "96", *SMALL, f"train.init_checkpoint={checkpoint}"]
    assert main(argv) == 0
    _assert_matches_eager(model, fmt, path, [(2, 96, 64)])


def test_missing_config_file_is_named(tmp_path, capsys):
    output = tmp_path / "model.onnx"
    with pytest.raises(SystemExit) as exit_info:
        main(["--config-file", "configs/yolos_tiny.py", "--output", str(output)])
    assert exit_info.value.code == 2
    assert "Config file 'configs/yolos_tiny.py' does not exist" in capsys.readouterr().err
    assert not output.exists()


def test_missing_checkpoint_is_named(tmp_path, capsys):
    output = tmp_path / "model.onnx"
    missing = tmp_path / "model_final.pth"
    with pytest.raises(SystemExit):
        main(["--config-file", config_path("yolos_ti"), "--output", str(output), f"train.init_checkpoint={missing}"])
    assert f"train.init_checkpoint='{missing}': file not found" in capsys.readouterr().err
    assert not output.exists()
