"""
Export of the detector to ONNX and TorchScript: one graph for every batch and image size, as eager.
Export of the whole pipeline to ONNX: one graph for every image size, as the predictor.
"""
import errno
import os
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

from conftest import SMALL_PREDICTOR, build_model, config_path, favour_class_0, max_abs_diff
from benchmarks.onnx_pipeline import smooth_image
from yolos_d2.checkpoint import save_checkpoint_atomic
from yolos_d2.export import YOLOSPipeline
from yolos_d2.inference import YOLOSPredictor
from yolos_d2.export.pipeline import resize_like_pil
from yolos_d2.tools.export import EXPORTERS, INPUT_NAME, OUTPUT_NAMES, main
from yolos_d2.export.onnx import PIPELINE_INPUT_NAME

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


@pytest.mark.parametrize("exported", ["torchscript"], indirect=True)
def test_torchscript_export_runs_with_and_without_grad(exported):
    images = torch.randn(2, 3, 80, 112)
    with torch.no_grad():
        expected = exported.model.detector(images)
    traced = torch.jit.load(exported.path)
    # Twice each: TorchScript's executor optimises the graph on its second run.
    for grad_enabled in (True, True, False, False):
        with torch.set_grad_enabled(grad_enabled):
            outputs = traced(images)
        for name in OUTPUT_NAMES:
            assert max_abs_diff(outputs[name], expected[name]) < 1e-4, (name, grad_enabled)


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


def test_int8_export_holds_int8_weights_and_stays_near_eager(tmp_path):
    model = _small_model()
    checkpoint = str(tmp_path / "small.pth")
    save_checkpoint_atomic({"model": model.state_dict()}, checkpoint)
    path = str(tmp_path / "small_int8.onnx")
    argv = ["--config-file", config_path("yolos_ti"), "--output", path, "--int8", "--height", "64", "--width", "96"]
    assert main([*argv, *SMALL, f"train.init_checkpoint={checkpoint}"]) == 0
    graph = onnx.load(path).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 2 * 4  # qkv, proj, fc1 and fc2 of each of the 2 blocks, and the heads
    # Within [-64, 64]: a sum of two uint8 x int8 products fits int16 (2 x 255 x 64 <= 32767),
    # where x86 CPUs without VNNI saturate it (quantize_onnx_int8).
    assert max(np.abs(onnx.numpy_helper.to_array(t).astype(int)).max() for t in int8_weights) == 64
    images = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        expected = model.detector(images)
    for name, got in zip(OUTPUT_NAMES, _run("onnx", path, images)):
        assert 0 < max_abs_diff(got, expected[name]) < 0.05, name


def test_int8_is_for_onnx_only(capsys):
    with pytest.raises(SystemExit):
        main(["--config-file", config_path("yolos_ti"), "--output", "output/m.pt", "--format", "torchscript", "--int8"])
    assert "--int8 quantises ONNX exports only" in capsys.readouterr().err


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


# The whole pipeline of SMALL_PREDICTOR. (height, width) -> resized: enlarged, wide (longer side
# capped), tall, shrunk 7.5 times, kept, and sizes that are not whole patches.
PIPELINE_SIZES = [(48, 64), (90, 300), (200, 120), (480, 640), (64, 64), (37, 53)]
# The predictor's detections that must match: its TOP_N highest scoring, each with the pipeline's
# detection of the same [DET] token: the same class, the score within SCORE_ATOL, the box within
# BOX_ATOL pixels of the input image. What differs is the resize (PIL's 8-bit one in the predictor,
# resize_like_pil in the graph): a level on a few pixels, which moves scores by up to 2.1e-4 and
# boxes by up to 0.006 pixel here.
TOP_N, SCORE_ATOL, BOX_ATOL = 5, 1e-3, 0.5


@pytest.fixture(scope="module", params=["resized", "kept size, threshold and top-k"])
def pipeline_export(request, tmp_path_factory):
    """
    The command line's --pipeline export of random weights whose class head favours class 0 (scores
    spread from about 0.1 to 0.95), and the predictor on the same config and weights: the small
    YOLOS-Ti, with its config's resize; or a 2-block quick-start model, whose config resizes
    nothing (the graph pads images to whole patches), with --score-threshold 0.3 and --top-k 5.
    """
    resized = request.param == "resized"
    # The quick start's config has no test-time resize.
    quickstart = ("quickstart", ["model.detector.backbone.depth=2"])
    variant, overrides = ("yolos_ti", SMALL_PREDICTOR) if resized else quickstart
    selection = {} if resized else {"score_threshold": 0.3, "top_k": 5}
    model = build_model(variant, overrides)
    favour_class_0(model)
    folder = tmp_path_factory.mktemp("pipeline")
    weights, path = str(folder / "small.pth"), str(folder / "pipeline.onnx")
    save_checkpoint_atomic({"model": model.state_dict()}, weights)
    argv = ["--config-file", config_path(variant), "--output", path, "--pipeline", "--height", "48", "--width", "80"]
    argv += [f"--{name.replace('_', '-')}={value}" for name, value in selection.items()]
    assert main([*argv, *overrides, f"train.init_checkpoint={weights}"]) == 0
    predictor = YOLOSPredictor(config_path(variant), overrides=overrides, weights=weights, device="cpu", **selection)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return SimpleNamespace(resized=resized, selection=selection, predictor=predictor, session=session)


def test_pipeline_takes_a_uint8_image_of_any_size(pipeline_export):
    ((name, shape, kind),) = [(i.name, i.shape, i.type) for i in pipeline_export.session.get_inputs()]
    assert (name, shape, kind) == (PIPELINE_INPUT_NAME, ["height", "width", 3], "tensor(uint8)")
    assert [o.name for o in pipeline_export.session.get_outputs()] == ["boxes", "scores", "classes", "det_tokens"]


@pytest.mark.parametrize("size", PIPELINE_SIZES)
def test_pipeline_gives_the_predictors_detections(pipeline_export, size):
    image = smooth_image(*size, seed=sum(size))
    expected = pipeline_export.predictor(image)
    boxes, scores, classes, tokens = pipeline_export.session.run(None, {PIPELINE_INPUT_NAME: image})
    if pipeline_export.selection:
        assert 2 <= len(tokens) <= 5 and (scores >= 0.3).all() and (np.diff(scores) <= 0).all()
    else:
        np.testing.assert_array_equal(tokens, np.arange(len(expected)))  # every token, in token order
    # Without a resize the two compute the same numbers in other orders.
    box_atol, score_atol = (BOX_ATOL, SCORE_ATOL) if pipeline_export.resized else (1e-3, 1e-5)
    row = {token: i for i, token in enumerate(tokens.tolist())}
    for i in expected.scores.argsort(descending=True)[:TOP_N].tolist():
        j = row[int(expected.det_tokens[i])]
        assert classes[j] == expected.pred_classes[i]
        assert abs(scores[j] - expected.scores[i].item()) <= score_atol
        assert np.abs(boxes[j] - expected.pred_boxes.tensor[i].numpy()).max() <= box_atol


def test_resize_like_pil_is_pils_but_for_a_level_on_few_pixels():
    from detectron2.data import transforms as T

    for (height, width), (new_height, new_width) in [((480, 640), (512, 672)), ((1000, 700), (752, 512))]:
        image = smooth_image(height, width, seed=0)
        pil = T.ResizeTransform(height, width, new_height, new_width, Image.BILINEAR).apply_image(image)
        ours = resize_like_pil(torch.from_numpy(image).permute(2, 0, 1).float(), (new_height, new_width))
        difference = np.abs(ours.permute(1, 2, 0).numpy() - pil.astype(np.float32))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.03
    # The graph resizes an image the cap leaves alone to its own size: each output pixel is its own.
    image = torch.from_numpy(smooth_image(37, 53, seed=0)).permute(2, 0, 1).float()
    assert torch.equal(resize_like_pil(image, (37, 53)), image)


def test_pipeline_export_refuses_what_it_cannot_do(tmp_path, capsys):
    output = str(tmp_path / "pipeline.onnx")
    base = ["--config-file", config_path("yolos_ti"), "--output", output, "train.init_checkpoint="]
    for argv, message in [
        (["--top-k", "5"], "--score-threshold, --top-k and --max-size belong to --pipeline"),
        (["--max-size", "1333"], "--score-threshold, --top-k and --max-size belong to --pipeline"),
        (["--pipeline", "--format", "torchscript"], "--pipeline exports ONNX only"),
        (["--pipeline", "--top-k", "0"], "argument --top-k: must be at least 1, got 0"),
        (["--pipeline", "--score-threshold", "nan"], "argument --score-threshold: must be a finite number, got nan"),
        (["--pipeline", "--max-size", "8"], "max_size must be None, 0 (no limit) or a whole number of pixels of at "
                                            "least the model's patch size, 16; got 8"),
        (["--height", "100000"], "--height 100000 --width 512: each must be from one 16-pixel patch to 1333 pixels"),
        (["--width", "8"], "--height 512 --width 8: each must be from one 16-pixel patch to 1333 pixels"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*base, *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    from detectron2.data import transforms as T

    with pytest.raises(ValueError, match="dataloader.test.mapper.augmentations must be one DETRResizeShortestEdge"):
        YOLOSPipeline(build_model("yolos_ti", SMALL), [T.RandomFlip()])


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_export_refuses_to_replace_the_weights_or_the_config(fmt, tmp_path, capsys):
    checkpoint = tmp_path / "small.pth"
    save_checkpoint_atomic({"model": _small_model().state_dict()}, str(checkpoint))
    config = tmp_path / "config.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        f"_base = LazyConfig.load({config_path('yolos_ti')!r})\n"
        "model, dataloader, train = _base.model, _base.dataloader, _base.train\n"
    )
    files = {path: path.read_bytes() for path in (checkpoint, config)}
    for output in files:
        argv = ["--config-file", str(config), "--output", str(output), "--format", fmt, "--weights", str(checkpoint)]
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, *SMALL])
        assert exit_info.value.code == 2
        assert f"--output: writing {output} would replace the input {output}" in capsys.readouterr().err
    assert all(path.read_bytes() == data for path, data in files.items())


def test_export_on_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch, caplog):
    def export_onto_a_full_disk(detector, images, path):
        with open(path, "wb") as f:
            f.write(b"the first bytes of a TorchScript archive")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setitem(EXPORTERS, "torchscript", export_onto_a_full_disk)
    output = tmp_path / "out" / "small.pt"
    argv = ["--config-file", config_path("yolos_ti"), "--output", str(output), "--format", "torchscript", *SMALL]
    assert main([*argv, "train.init_checkpoint="]) == 1
    assert f"Could not write {output}: ENOSPC (No space left on device)" in caplog.text
    assert os.listdir(tmp_path / "out") == []
