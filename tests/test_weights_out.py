"""yolos-convert --to: yolos_d2 checkpoints as transformers folders and original YOLOS checkpoints, and back."""
import errno
import logging
import os
from types import SimpleNamespace

import pytest
import torch
from detectron2.data.datasets import register_coco_instances

from conftest import (
    PREDICTOR_SIZES,
    SMALL_PREDICTOR,
    build_model,
    config_path,
    make_predictor,
    max_abs_diff,
    original_state_dict,
    random_images,
)
from yolos_d2.checkpoint.class_head import coco_class_head_rows
from benchmarks.huggingface import random_huggingface_model
from yolos_d2.checkpoint import YOLOSCheckpointer, load_weights_file
from yolos_d2.checkpoint.original import to_original_yolos
from yolos_d2.config import load_config
from yolos_d2.tools import convert as convert_module
from yolos_d2.tools.convert import main as convert_main

# YOLOS-S: mid-layer position embeddings, at init_pe_size as transformers needs them.
SMALL = ["model.detector.backbone.depth=2"]


def _save_ours(model, folder):
    YOLOSCheckpointer(model, save_dir=str(folder)).save("ours")
    return str(folder / "ours.pth")


def _convert(*args):
    assert convert_main([str(a) for a in args]) == 0


def _assert_equal_states(a, b):
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_to_hf_loads_in_transformers_with_the_same_outputs(tmp_path):
    from transformers import YolosForObjectDetection

    model = build_model("yolos_s", SMALL)
    config = ["--config-file", config_path("yolos_s"), *SMALL]
    _convert(_save_ours(model, tmp_path), tmp_path / "hf", "--to", "hf", *config)
    hf_model, info = YolosForObjectDetection.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]) == (set(), set(), set())
    config = hf_model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 2, 6)
    assert (config.intermediate_size, config.patch_size, list(config.image_size)) == (1536, 16, [512, 864])
    assert config.use_mid_position_embeddings and config.num_detection_tokens == 100
    assert config.layer_norm_eps == 1e-6 and config.qkv_bias
    # coco_2017_val's classes, in detectron2's contiguous order.
    assert config.num_labels == 80 and config.id2label[0] == "person" and config.id2label[79] == "toothbrush"
    assert config.label2id["toothbrush"] == 79
    # An input whose patch grid is neither init_pe_size's nor square.
    images = torch.randn(2, 3, 320, 480)
    with torch.no_grad():
        ours, theirs = model.detector(images), hf_model.eval()(pixel_values=images)
    assert max_abs_diff(ours["pred_logits"], theirs.logits) <= 1e-4
    assert max_abs_diff(ours["pred_boxes"], theirs.pred_boxes) <= 1e-4


def test_ours_to_hf_to_ours_is_bit_identical(tmp_path):
    model = build_model("yolos_s", SMALL)
    config = ["--config-file", config_path("yolos_s"), *SMALL]
    _convert(_save_ours(model, tmp_path), tmp_path / "hf", "--to", "hf", *config)
    _convert(tmp_path / "hf", tmp_path / "back.pth", "--format", "hf", *config)
    _assert_equal_states(load_weights_file(str(tmp_path / "back.pth"))["model"], model.state_dict())


def test_to_yolos_holds_the_original_names_and_coco_ids(tmp_path):
    """
    transformers' weights converted in, then out: the original's key layout as the independent
    table of test_original_checkpoints gives it, the class head over COCO's 92 category ids.
    """
    config = ["--config-file", config_path("yolos_s"), *SMALL]
    hf_model = random_huggingface_model(load_config(config_path("yolos_s"), SMALL).model.detector.backbone)
    hf_model.save_pretrained(tmp_path / "hf")
    _convert(tmp_path / "hf", tmp_path / "ours.pth", "--format", "hf", *config)
    _convert(tmp_path / "ours.pth", tmp_path / "original.pth", "--to", "yolos", *config)

    written = load_weights_file(str(tmp_path / "original.pth"))
    expected = original_state_dict(hf_model)
    assert set(written["model"]) == set(expected)
    head = "class_embed.layers.2."
    for key, value in expected.items():
        if not key.startswith(head):
            assert torch.equal(written["model"][key], value), key
    rows = torch.tensor(coco_class_head_rows())
    for kind in ("weight", "bias"):
        assert torch.equal(written["model"][head + kind][rows], expected[head + kind][rows])
    unused = sorted(set(range(92)) - set(coco_class_head_rows()))
    assert len(unused) == 11
    assert torch.equal(written["model"][head + "weight"][unused], torch.zeros(11, 384))
    assert torch.equal(written["model"][head + "bias"][unused], torch.full((11,), -1e4))
    args = written["args"]
    assert (args.init_pe_size, args.mid_pe_size, args.det_token_num) == ([512, 864], [512, 864], 100)


def test_ours_to_yolos_to_ours_is_bit_identical(tmp_path):
    """YOLOS-Ti: no mid-layer position embeddings; its 800x1328 init_pe_size comes back from the args."""
    overrides = ["model.detector.backbone.depth=1"]
    config = ["--config-file", config_path("yolos_ti"), *overrides]
    model = build_model("yolos_ti", overrides)
    _convert(_save_ours(model, tmp_path), tmp_path / "original.pth", "--to", "yolos", *config)
    args = load_weights_file(str(tmp_path / "original.pth"))["args"]
    assert (args.init_pe_size, args.mid_pe_size) == ([800, 1328], None)
    # Without the config: the grid the args give is recorded and the class head mapped back.
    _convert(tmp_path / "original.pth", tmp_path / "back.pth", "--format", "yolos")
    back = load_weights_file(str(tmp_path / "back.pth"))
    _assert_equal_states(back["model"], model.state_dict())
    assert back["position_embedding_grids"] == {"detector.backbone.pos_embed": [50, 83]}


def test_keep_class_ids_writes_the_head_as_it_is(tmp_path):
    overrides = ["model.detector.backbone.depth=1"]
    model = build_model("yolos_ti", overrides)
    _convert(_save_ours(model, tmp_path), tmp_path / "original.pth", "--to", "yolos", "--keep-class-ids",
             "--config-file", config_path("yolos_ti"), *overrides)
    written = load_weights_file(str(tmp_path / "original.pth"))["model"]
    assert torch.equal(written["class_embed.layers.2.weight"], model.detector.class_embed.layers[2].weight)


def test_class_names_fall_back_to_numbered_ones(tmp_path, caplog):
    register_coco_instances("weights_out_missing_json", {}, str(tmp_path / "missing.json"), str(tmp_path))
    overrides = [*SMALL, "model.detector.num_classes=3", "dataloader.test.dataset.names=weights_out_missing_json"]
    model = build_model("yolos_s", overrides)
    with caplog.at_level(logging.INFO, logger="yolos_d2.tools.convert"):
        _convert(_save_ours(model, tmp_path), tmp_path / "hf", "--to", "hf", "--config-file", config_path("yolos_s"),
                 *overrides)
    assert "naming the classes class_0 ... class_2" in caplog.text
    from transformers import YolosConfig

    assert YolosConfig.from_pretrained(tmp_path / "hf").id2label == {0: "class_0", 1: "class_1", 2: "class_2"}


def test_to_hf_refuses_mid_pe_size_other_than_init_pe_size(tmp_path, caplog):
    overrides = [*SMALL, "model.detector.backbone.mid_pe_size=[256,256]"]
    src = _save_ours(build_model("yolos_s", overrides), tmp_path)
    config = ["--config-file", config_path("yolos_s"), *overrides]
    assert convert_main([src, str(tmp_path / "hf"), "--to", "hf", *config]) == 1
    assert "transformers' YOLOS needs mid_pe_size == init_pe_size" in caplog.text
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("to", ["hf", "yolos"])
def test_to_needs_a_config_and_a_checkpoint_that_fits(tmp_path, to, capsys):
    src = _save_ours(build_model("yolos_ti", ["model.detector.backbone.depth=1"]), tmp_path)
    with pytest.raises(SystemExit):
        convert_main([src, str(tmp_path / "out"), "--to", to])
    assert "needs --config-file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_main([src, str(tmp_path / "out"), "--to", to, "--config-file", config_path("yolos_ti"),
                      "model.detector.backbone.depth=2"])
    assert "missing from the checkpoint (12 tensors): detector.backbone.blocks.1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# The small predictor's model with its class head's weights scaled up: its tokens' scores spread
# from about 0.2 to 0.75 over several classes.
@pytest.fixture(scope="module")
def hf_small(tmp_path_factory):
    """The small predictor's model as a yolos_d2 checkpoint, its transformers folder and its predictor."""
    folder = tmp_path_factory.mktemp("hf_small")
    model = build_model("yolos_ti", SMALL_PREDICTOR)
    with torch.no_grad():
        model.detector.class_embed.layers[-1].weight *= 40
    weights = _save_ours(model, folder)
    _convert(weights, folder / "hf", "--to", "hf", "--config-file", config_path("yolos_ti"), *SMALL_PREDICTOR)
    return SimpleNamespace(model=model, folder=str(folder / "hf"), predictor=make_predictor(weights))


# An image the test-time resize keeps as it is (shorter side the eval size, whole patches), in
# transformers' YolosImageProcessor as in yolos_d2.
EVAL_SIZE_IMAGE = (64, 80)


def test_to_hf_writes_the_image_processor_of_the_test_time_preprocessing(hf_small):
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(hf_small.folder)
    for image in random_images(PREDICTOR_SIZES):
        size = image.shape[:2]
        assert tuple(processor(image)["pixel_values"].shape[-2:]) == hf_small.predictor.eval_resize.output_shape(*size)
    image = random_images([EVAL_SIZE_IMAGE])[0]
    ours = hf_small.model.normalize(torch.from_numpy(image).permute(2, 0, 1).float())
    assert max_abs_diff(processor(image, return_tensors="pt")["pixel_values"][0], ours) <= 1e-5


def test_transformers_pipeline_gives_the_predictors_detections(hf_small):
    from PIL import Image
    from transformers import pipeline

    threshold = 0.3
    image = random_images([EVAL_SIZE_IMAGE])[0]
    ours = hf_small.predictor(image)
    ours = ours[ours.scores > threshold]
    theirs = pipeline("object-detection", model=hf_small.folder, threshold=threshold)(Image.fromarray(image))
    assert len(theirs) == len(ours) >= 3
    theirs = sorted(theirs, key=lambda detection: -detection["score"])
    class_names = hf_small.predictor.metadata.thing_classes
    height, width = EVAL_SIZE_IMAGE
    for i, detection in zip(ours.scores.argsort(descending=True).tolist(), theirs):
        assert detection["label"] == class_names[ours.pred_classes[i]]
        assert abs(detection["score"] - ours.scores[i].item()) <= 1e-4
        # The pipeline truncates the coordinates to whole pixels and does not clip them to the image.
        box = torch.tensor([detection["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")], dtype=torch.float32)
        box = box.clamp(min=0).minimum(torch.tensor([width, height, width, height]))
        assert max_abs_diff(box, ours.pred_boxes.tensor[i]) < 1, (detection, ours.pred_boxes.tensor[i])


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.input_format=BGR", "model.input_format is 'BGR'"),
        ("dataloader.test.mapper.augmentations.size_multiple=32", "has max_size=853 and size_multiple=32"),
    ],
)
def test_to_hf_refuses_preprocessing_transformers_cannot_reproduce(tmp_path, caplog, override, message):
    overrides = ["model.detector.backbone.depth=1", override]
    src = _save_ours(build_model("yolos_ti", overrides), tmp_path)
    config = ["--config-file", config_path("yolos_ti"), *overrides]
    assert convert_main([src, str(tmp_path / "hf"), "--to", "hf", *config]) == 1
    assert message in caplog.text
    assert not (tmp_path / "hf").exists()


TI = ["model.detector.backbone.depth=1"]
TI_CONFIG = ["--config-file", config_path("yolos_ti"), *TI]


def _save_with_ema(folder, ema_scale=2.0):
    """A YOLOS-Ti checkpoint of 1 block whose EMA of the weights is ``ema_scale`` times its trained weights."""
    model = build_model("yolos_ti", TI)
    weights = model.state_dict()
    ema = {k: v * ema_scale if v.is_floating_point() else v for k, v in weights.items()}
    path = folder / "trained.pth"
    torch.save({"model": weights, "ema": {"weights": ema, "num_updates": 3}, "iteration": 9}, path)
    return str(path), weights, ema


@pytest.mark.parametrize("direction", [["--to", "yolos", *TI_CONFIG], ["--format", "yolos"]])
def test_convert_refuses_to_replace_its_source(tmp_path, capsys, direction):
    src, _, _ = _save_with_ema(tmp_path)
    data = open(src, "rb").read()
    with pytest.raises(SystemExit) as exit_info:
        convert_main([src, src, *direction])
    assert exit_info.value.code == 2
    assert f"DST: writing {src} would replace the input {src}" in capsys.readouterr().err
    assert open(src, "rb").read() == data


def test_convert_refuses_to_replace_its_config_or_write_into_the_hf_folder(tmp_path, capsys):
    src = _save_ours(build_model("yolos_ti", TI), tmp_path)
    config = tmp_path / "config.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        f"_base = LazyConfig.load({config_path('yolos_ti')!r})\n"
        "model, dataloader, train = _base.model, _base.dataloader, _base.train\n"
    )
    with pytest.raises(SystemExit):
        convert_main([src, str(config), "--to", "yolos", "--config-file", str(config), *TI])
    assert f"DST: writing {config} would replace the input {config}" in capsys.readouterr().err
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(SystemExit):
        convert_main([str(tmp_path / "hf"), str(tmp_path / "hf" / "ours.pth"), "--format", "hf"])
    assert f"DST {tmp_path / 'hf' / 'ours.pth'} is or lies inside the input folder {tmp_path / 'hf'}" in (
        capsys.readouterr().err
    )


def test_to_hf_refuses_a_folder_that_is_not_empty_and_fills_an_empty_one(tmp_path, capsys):
    src = _save_ours(build_model("yolos_s", SMALL), tmp_path)
    dst = tmp_path / "hf"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    config = ["--config-file", config_path("yolos_s"), *SMALL]
    with pytest.raises(SystemExit) as exit_info:
        convert_main([src, str(dst), "--to", "hf", *config])
    assert exit_info.value.code == 2
    assert f"DST {dst} is a folder that is not empty: give a new or empty folder" in capsys.readouterr().err
    assert os.listdir(dst) == ["notes.txt"]
    (dst / "notes.txt").unlink()
    _convert(src, dst, "--to", "hf", *config)
    assert {"config.json", "model.safetensors"} <= set(os.listdir(dst))


def test_to_yolos_converts_the_ema_of_the_weights_unless_told_not_to(tmp_path, caplog):
    src, weights, ema = _save_with_ema(tmp_path)
    key, original_key = "detector.backbone.cls_token", "backbone.cls_token"
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        _convert(src, tmp_path / "ema.pth", "--to", "yolos", *TI_CONFIG)
    assert f"Loaded the EMA of the weights of {src}" in caplog.text
    assert torch.equal(load_weights_file(str(tmp_path / "ema.pth"))["model"][original_key], ema[key])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        _convert(src, tmp_path / "original.pth", "--to", "yolos", *TI_CONFIG, "train.eval_with_ema=False")
    assert f"Loaded the trained weights of {src}" in caplog.text
    assert torch.equal(load_weights_file(str(tmp_path / "original.pth"))["model"][original_key], weights[key])


def test_to_yolos_refuses_an_ema_holding_nan_naming_the_file_and_the_part(tmp_path, capsys):
    src, _, _ = _save_with_ema(tmp_path, ema_scale=float("nan"))
    with pytest.raises(SystemExit) as exit_info:
        convert_main([src, str(tmp_path / "out.pth"), "--to", "yolos", *TI_CONFIG])
    assert exit_info.value.code == 2
    assert f"Checkpoint '{src}' holds infinite or NaN values in its EMA of the weights (under 'ema')" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out.pth").exists()


def test_to_yolos_honours_init_checkpoint_strict(tmp_path, capsys, caplog):
    src = _save_ours(build_model("yolos_ti", TI), tmp_path)
    deeper = [*TI_CONFIG, "model.detector.backbone.depth=2"]
    with pytest.raises(SystemExit):
        convert_main([src, str(tmp_path / "out.pth"), "--to", "yolos", *deeper])
    assert "missing from the checkpoint (12 tensors): detector.backbone.blocks.1" in capsys.readouterr().err
    _convert(src, tmp_path / "out.pth", "--to", "yolos", *deeper, "train.init_checkpoint_strict=False")
    assert "partially (strict=False)" in caplog.text
    assert "backbone.blocks.1.attn.qkv.weight" in load_weights_file(str(tmp_path / "out.pth"))["model"]


@pytest.mark.parametrize(
    "direction, override",
    [(["--to", "yolos"], "train.ema.enabled=True"), (["--to", "yolos"], "train.init_checkpoint=x.pth"),
     (["--format", "yolos"], "train.init_checkpoint_strict=False")],
)
def test_convert_refuses_overrides_of_keys_it_does_not_read(tmp_path, capsys, direction, override):
    src = _save_ours(build_model("yolos_ti", TI), tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        convert_main([src, str(tmp_path / "out.pth"), *direction, *TI_CONFIG, override])
    assert exit_info.value.code == 2
    assert f"{override}: yolos-convert {direction[0]} reads no other config keys than model.*" in (
        capsys.readouterr().err
    )


def test_format_refuses_weights_holding_nan_naming_the_file_and_the_tensor(tmp_path, caplog):
    state = to_original_yolos(build_model("yolos_ti", TI).state_dict())
    state["backbone.norm.weight"][0] = float("nan")
    src = tmp_path / "original.pth"
    torch.save({"model": state}, src)
    assert convert_main([str(src), str(tmp_path / "out.pth"), "--format", "yolos"]) == 1
    assert f"Checkpoint '{src}' holds infinite or NaN values in 1 tensor: detector.backbone.norm.weight (1 NaN)" in (
        caplog.text
    )
    assert not (tmp_path / "out.pth").exists()


def test_convert_on_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, caplog, request):
    src = _save_ours(build_model("yolos_ti", TI), tmp_path)
    request.getfixturevalue("full_disk")
    out = tmp_path / "out"
    assert convert_main([src, str(out / "original.pth"), "--to", "yolos", *TI_CONFIG]) == 1
    assert f"Could not write {out / 'original.pth'}: ENOSPC (No space left on device)" in caplog.text
    assert os.listdir(out) == []


def test_to_hf_on_a_full_disk_leaves_no_folder(tmp_path, monkeypatch, caplog):
    def save_onto_a_full_disk(state, cfg, class_names, folder):
        os.makedirs(folder)
        with open(os.path.join(folder, "config.json"), "w") as f:
            f.write("{}")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(convert_module, "save_huggingface", save_onto_a_full_disk)
    src = _save_ours(build_model("yolos_ti", TI), tmp_path)
    assert convert_main([src, str(tmp_path / "hf"), "--to", "hf", *TI_CONFIG]) == 1
    assert f"Could not write {tmp_path / 'hf'}: ENOSPC (No space left on device)" in caplog.text
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "ours.pth"]
