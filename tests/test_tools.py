"""The demo, [DET]-token statistics and attention-map tools, run in-process on a tiny random model."""
import json
import logging
import os
import shutil
import textwrap
import types

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from PIL import Image

from conftest import synthetic_splits, write_quickstart_variant
from yolos_d2.checkpoint import YOLOSCheckpointer
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec
from yolos_d2.inference.token_stats import class_distribution, gt_class_counts, size_categories
from yolos_d2.tools import attention_maps, demo, det_token_stats
from yolos_d2.visualization import MAX_DRAWING_PIXELS

NUM_IMAGES, NUM_DET_TOKENS, IMAGE_SIZE, EVAL_SIZE = 3, 4, 48, 40


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """
    A 1-block quick-start model with random weights saved by the checkpointer, and a config whose
    test dataset is 3 generated 48x48 images, resized to 40x40 at test time (so that the model
    pads them to 48x48); a second dataset of 4 images is registered beside it.
    """
    root = tmp_path_factory.mktemp("tools")
    splits = synthetic_splits(
        str(root),
        {
            "tools_tiny": SyntheticShapesSpec(NUM_IMAGES, seed=11, image_size=IMAGE_SIZE),
            "tools_tiny_other": SyntheticShapesSpec(4, seed=12, image_size=IMAGE_SIZE),
        },
    )
    config = write_quickstart_variant(
        root / "tiny.py",
        f"""
        model.detector.backbone.update(depth=1, num_det_tokens={NUM_DET_TOKENS})
        dataloader.test.dataset.names = register_coco_dataset("tools_tiny", *{splits["tools_tiny"]!r})
        dataloader.test.mapper.augmentations = L(detr_test_augmentations)(eval_size={EVAL_SIZE})
        register_coco_dataset("tools_tiny_other", *{splits["tools_tiny_other"]!r})
        train.device = "cpu"
        """,
    )
    # Without a test-time resize, as configs/quickstart.py.
    unresized = root / "tiny_unresized.py"
    unresized.write_text(
        textwrap.dedent(
            f"""
            from detectron2.config import LazyConfig

            _base = LazyConfig.load({config!r})
            model, dataloader, train = _base.model, _base.dataloader, _base.train
            dataloader.test.mapper.augmentations = []
            """
        )
    )
    torch.manual_seed(0)
    YOLOSCheckpointer(instantiate(LazyConfig.load(config).model), str(root)).save("tiny")
    image_dir = splits["tools_tiny"][1]
    with open(splits["tools_tiny"][0]) as f:
        images = [os.path.join(image_dir, image["file_name"]) for image in json.load(f)["images"]]
    with open(splits["tools_tiny_other"][0]) as f:
        other_coco = json.load(f)
    return types.SimpleNamespace(
        config=config,
        unresized_config=str(unresized),
        weights=f"train.init_checkpoint={root / 'tiny.pth'}",
        image_dir=image_dir,
        images=images,
        other_coco=other_coco,
    )


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def assert_not_blank(pixels):
    assert pixels.std() > 0 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10


def run_demo(tiny, inputs, output, *args):
    # The override right after the inputs: overrides are found anywhere on the command line.
    return demo.main(["--config-file", tiny.config, "--input", *inputs, tiny.weights, "--output", str(output), *args])


def test_demo_draws_the_images_of_a_folder(tiny, tmp_path):
    assert run_demo(tiny, [tiny.image_dir], tmp_path / "drawn", "--confidence-threshold", "0") == 0
    for path in tiny.images:
        drawn, original = read_png(tmp_path / "drawn" / os.path.basename(path)), read_png(path)
        assert drawn.shape == original.shape
        assert_not_blank(drawn)
        assert not np.array_equal(drawn, original), "no prediction was drawn"


def test_demo_writes_a_single_input_to_the_output_file_at_scale(tiny, tmp_path):
    output = tmp_path / "drawn.png"
    assert run_demo(tiny, tiny.images[:1], output, "--scale", "2") == 0
    assert read_png(output).shape == (2 * IMAGE_SIZE, 2 * IMAGE_SIZE, 3)


def test_demo_skips_missing_and_corrupt_inputs_and_fails(tiny, tmp_path, caplog):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"these bytes are not an image")
    missing = tmp_path / "missing.png"
    output = tmp_path / "drawn"
    assert run_demo(tiny, [str(missing), tiny.images[0], str(corrupt)], output) == 1
    assert f"Skipped {missing}" in caplog.text and f"Skipped {corrupt}" in caplog.text
    assert "Wrote 1 of 3 inputs" in caplog.text and "skipped 2" in caplog.text
    assert sorted(os.listdir(output)) == [os.path.basename(tiny.images[0])]


def test_demo_batches_consecutive_images_and_keeps_each_video_alone():
    inputs = [(name, f"out/{name}") for name in ("a.png", "b.jpg", "c.png", "clip.mp4", "d.png", "e.png")]
    batches = [[path for path, _ in batch] for batch in demo.input_batches(inputs, batch_size=2)]
    assert batches == [["a.png", "b.jpg"], ["c.png"], ["clip.mp4"], ["d.png", "e.png"]]
    assert demo.input_batches(inputs, batch_size=2).__next__() == inputs[:2]  # outputs travel with their inputs


def test_demo_draws_the_same_in_lists_as_one_at_a_time(tiny, tmp_path, caplog):
    inputs = copy_images(tiny, tmp_path / "inputs")
    corrupt = tmp_path / "inputs" / "000001b.png"  # second in the folder: the first list loses it
    corrupt.write_bytes(b"these bytes are not an image")
    for batch_size in ("1", "3"):
        np.random.seed(0)  # detectron2's Visualizer draws the box colours from it
        with caplog.at_level(logging.INFO, logger="yolos_d2"):
            status = run_demo(tiny, [str(tmp_path / "inputs")], tmp_path / batch_size, "--batch-size", batch_size,
                              "--confidence-threshold", "0")
        assert status == 1 and f"Skipped {corrupt}" in caplog.text
    assert "Predicted a list of 2 in" in caplog.text and "Predicted a list of 1 in" in caplog.text
    for path in inputs:
        name = os.path.basename(path)
        np.testing.assert_array_equal(read_png(tmp_path / "3" / name), read_png(tmp_path / "1" / name))


def test_demo_refuses_a_batch_size_below_1(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_demo(tiny, tiny.images, tmp_path, "--batch-size", "0")
    assert exit_info.value.code == 2
    assert "argument --batch-size: must be at least 1, got 0" in capsys.readouterr().err


def test_demo_refuses_inputs_that_match_nothing(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_demo(tiny, [str(tmp_path / "*.jpg"), str(tmp_path)], tmp_path / "drawn")
    assert exit_info.value.code == 2
    assert f"--input {tmp_path}/*.jpg {tmp_path} matched no files" in capsys.readouterr().err


def test_demo_draws_every_frame_of_a_video(tiny, tmp_path):
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (IMAGE_SIZE, IMAGE_SIZE))
    for path in tiny.images:
        writer.write(cv2.imread(path))
    writer.release()
    output = str(tmp_path / "drawn.mp4")
    assert run_demo(tiny, [video], output, "--confidence-threshold", "0") == 0
    drawn = cv2.VideoCapture(output)
    frames = []
    while (frame := drawn.read()[1]) is not None:
        frames.append(frame)
    assert len(frames) == NUM_IMAGES and frames[0].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)


def test_det_token_stats_writes_every_token_prediction_and_the_figures(tiny, tmp_path):
    args = ["--config-file", tiny.config, "--output", str(tmp_path), "--dataset", "tools_tiny_other"]
    assert det_token_stats.main(args + ["--max-images", "3", tiny.weights]) == 0
    with open(tmp_path / "token_predictions.json") as f:
        predictions = json.load(f)
    image_ids = [image["id"] for image in tiny.other_coco["images"][:3]]
    assert sorted((p["image_id"], p["token"]) for p in predictions) == [
        (i, t) for i in image_ids for t in range(NUM_DET_TOKENS)
    ]
    for p in predictions:
        cx, cy, w, h = p["box_cxcywh"]
        x0, y0, x1, y1 = p["box_xyxy"]
        assert 0 <= cx - w / 2 and cx + w / 2 <= 1 + 1e-6 and 0 <= p["score"] <= 1 and 0 <= p["class_id"] < 3
        np.testing.assert_allclose([cx, w], np.array([x0 + x1, 2 * (x1 - x0)]) / (2 * IMAGE_SIZE), atol=1e-3)

    with open(tmp_path / "gt_class_distribution.json") as f:
        gt = json.load(f)
    categories = [a["category_id"] for a in tiny.other_coco["annotations"] if a["image_id"] in image_ids]
    assert gt["dataset"] == "tools_tiny_other" and gt["num_images"] == 3
    assert gt["classes"] == ["rectangle", "ellipse", "triangle"]
    assert gt["counts"] == [categories.count(c) for c in (1, 2, 3)]
    for name in ("token_box_centres.png", "token_class_distribution.png"):
        assert_not_blank(read_png(tmp_path / name))


def test_det_token_stats_refuses_a_dataset_that_is_not_registered(tiny, tmp_path, capsys):
    args = ["--config-file", tiny.config, "--output", str(tmp_path), "--dataset", "tools_tiny_typo", tiny.weights]
    with pytest.raises(SystemExit):
        det_token_stats.main(args)
    assert "dataset 'tools_tiny_typo' is not registered" in capsys.readouterr().err


def test_det_token_statistics_by_hand():
    distribution = class_distribution(np.array([0, 0, 0, 2]), np.array([1, 1, 0, 2]), 3, 3)
    np.testing.assert_allclose(distribution, [[1 / 3, 2 / 3, 0], [0, 0, 0], [0, 0, 1]])
    dicts = [{"annotations": [{"category_id": 2}, {"category_id": 2}]}, {"annotations": []}, {}]
    assert gt_class_counts(dicts, 4).tolist() == [0, 0, 2, 0]
    boxes = np.array([[0, 0, 31, 33], [10, 10, 42, 42], [0, 0, 95, 97], [5, 5, 101, 101]], dtype=np.float32)
    assert size_categories(boxes).tolist() == [0, 1, 1, 2]


def test_attention_maps_draws_one_figure_per_token(tiny, tmp_path):
    args = ["--config-file", tiny.config, "--input", tiny.images[0], "--output", str(tmp_path)]
    assert attention_maps.main(args + ["--tokens", "0", "3", tiny.weights]) == 0
    assert sorted(os.listdir(tmp_path)) == ["det_token_0.png", "det_token_3.png"]
    pixels = read_png(tmp_path / "det_token_3.png")
    assert_not_blank(pixels)
    assert pixels.shape[1] > 3 * pixels.shape[0], "the mean and the 3 heads are not side by side"

    assert attention_maps.main(args + ["--top-k", "2", tiny.weights]) == 0
    assert len(os.listdir(tmp_path)) in (3, 4)  # two more figures, or one if a top token was 0 or 3


def test_attention_maps_refuses_tokens_the_model_does_not_have(tiny, tmp_path, capsys):
    args = ["--config-file", tiny.config, "--input", tiny.images[0], "--output", str(tmp_path), "--tokens", "4"]
    with pytest.raises(SystemExit):
        attention_maps.main(args + [tiny.weights])
    assert "which has 4 (0..3)" in capsys.readouterr().err


def copy_images(tiny, folder, names=None):
    """Copy the tiny dataset's images into ``folder`` (under ``names``); {path: bytes} of the copies."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = {}
    for source, name in zip(tiny.images, names or [os.path.basename(p) for p in tiny.images]):
        shutil.copy(source, folder / name)
        copies[str(folder / name)] = (folder / name).read_bytes()
    return copies


def assert_unchanged(files, folder):
    """The files of ``files`` ({path: bytes}) are byte-identical and ``folder`` holds nothing else."""
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(p) for p in files)
    for path, data in files.items():
        assert open(path, "rb").read() == data, f"{path} was changed"


@pytest.mark.parametrize("output", ["{inputs}", "{inputs}/drawn", "{inputs}/drawn.png"])
def test_demo_refuses_to_write_into_an_input_folder(tiny, tmp_path, capsys, output):
    inputs = tmp_path / "inputs"
    files = copy_images(tiny, inputs, names=["only.png"] if output.endswith(".png") else None)
    output = output.format(inputs=inputs)
    with pytest.raises(SystemExit) as exit_info:
        run_demo(tiny, [str(inputs)], output)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--output {output} is or lies inside the input folder {inputs}" in err
    assert_unchanged(files, inputs)


@pytest.mark.parametrize("link", [False, True])
def test_demo_refuses_to_replace_an_input_file(tiny, tmp_path, capsys, link):
    inputs = tmp_path / "inputs"
    files = copy_images(tiny, inputs)
    output = tmp_path / "linked" if link else inputs
    if link:
        output.symlink_to(inputs)
    with pytest.raises(SystemExit) as exit_info:
        run_demo(tiny, [str(inputs / "*.png")], output)
    assert exit_info.value.code == 2
    first = sorted(files)[0]
    replaced = f"--output: writing {output / os.path.basename(first)} would replace the input {first}"
    assert replaced in capsys.readouterr().err
    assert_unchanged(files, inputs)

    (single,) = copy_images(tiny, tmp_path / "single", names=["photo.png"])
    with pytest.raises(SystemExit):
        run_demo(tiny, [single], single)
    assert f"--output: writing {single} would replace the input {single}" in capsys.readouterr().err


def test_demo_keeps_the_outputs_of_inputs_with_the_same_name_apart(tiny, tmp_path, caplog):
    copy_images(tiny, tmp_path / "a", names=["x.png"])
    b = copy_images(tiny, tmp_path / "b", names=["y.png", "x.png"])
    inputs = [str(tmp_path / "a"), *b, str(tmp_path / "a" / "x.png")]  # a/x.png twice: drawn once
    output = tmp_path / "drawn"
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        assert run_demo(tiny, inputs, output, "--confidence-threshold", "1") == 0
    drawn = sorted(os.path.relpath(os.path.join(d, f), output) for d, _, fs in os.walk(output) for f in fs)
    assert drawn == ["a/x.png", "b/x.png", "b/y.png"]
    for name in drawn:  # nothing scores 1: each drawing is its own input's pixels
        np.testing.assert_array_equal(read_png(output / name), read_png(tmp_path / name))
    assert f"Wrote 3 of 3 inputs to {output}" in caplog.text
    assert f"{tmp_path / 'a' / 'x.png'} is given more than once; it is drawn once" in caplog.text


def test_demo_draws_16_bit_images_at_their_8_bit_levels(tiny, tmp_path):
    levels = (np.arange(48 * 48, dtype=np.uint32) * 65535 // (48 * 48 - 1)).astype(np.uint16).reshape(48, 48)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert run_demo(tiny, [str(tmp_path / "deep.png")], tmp_path / "drawn.png", "--confidence-threshold", "1") == 0
    expected = (levels.astype(np.uint32) * 255 + 32767) // 65535
    np.testing.assert_array_equal(read_png(tmp_path / "drawn.png"), np.repeat(expected[:, :, None], 3, axis=2))


def test_predictor_bounds_the_longer_side(tiny, caplog):
    from yolos_d2.config import load_config
    from yolos_d2.inference import DEFAULT_MAX_SIZE, YOLOSPredictor

    cfg = load_config(tiny.unresized_config, [tiny.weights])
    assert DEFAULT_MAX_SIZE == 1333 and YOLOSPredictor(cfg).max_size == 1333
    image = np.random.default_rng(0).integers(0, 256, (100, 250, 3), dtype=np.uint8)
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        predictor = YOLOSPredictor(cfg, max_size=64)
        resized = predictor.resize(image)
        instances = predictor(image)
    assert resized.shape == (26, 64, 3)  # 100 * 64 / 250 = 25.6
    assert instances.image_size == (100, 250)  # boxes in the image's pixels
    assert "Scaled a 250x100 image down to 64x26 for prediction: its longer side exceeds max_size=64" in caplog.text
    assert YOLOSPredictor(cfg, max_size=None).resize(image).shape == image.shape
    assert YOLOSPredictor(cfg, max_size=250).resize(image).shape == image.shape


def test_demo_takes_a_maximum_size(tiny, tmp_path, caplog):
    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 150, 3), dtype=np.uint8)).save(image)
    args = ["--config-file", tiny.unresized_config, "--input", str(image), "--output", str(tmp_path / "drawn.png")]
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        assert demo.main(args + ["--max-size", "50", tiny.weights]) == 0
    assert "Scaled a 150x60 image down to 50x20 for prediction" in caplog.text
    assert read_png(tmp_path / "drawn.png").shape == (60, 150, 3)


def test_det_token_stats_refuses_to_write_among_the_dataset_images(tiny, tmp_path, capsys):
    before = sorted(os.listdir(tiny.image_dir))
    for output in (tiny.image_dir, os.path.join(tiny.image_dir, "stats")):
        args = ["--config-file", tiny.config, "--output", output, tiny.weights]
        with pytest.raises(SystemExit) as exit_info:
            det_token_stats.main(args)
        assert exit_info.value.code == 2
        assert f"--output {output} is or lies inside the input folder {tiny.image_dir}" in capsys.readouterr().err
    assert sorted(os.listdir(tiny.image_dir)) == before


def test_attention_maps_refuses_to_replace_its_input(tiny, tmp_path, capsys):
    (image,) = copy_images(tiny, tmp_path, names=["det_token_2.png"])
    data = open(image, "rb").read()
    for tokens in (["--tokens", "2"], ["--top-k", "1"]):  # the top token may be token 2
        with pytest.raises(SystemExit) as exit_info:
            attention_maps.main(["--config-file", tiny.config, "--input", image, "--output", str(tmp_path), *tokens,
                                 tiny.weights])
        assert exit_info.value.code == 2
        assert f"--output: writing {image} would replace the input {image}" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["det_token_2.png"] and open(image, "rb").read() == data


def test_output_check_sees_through_links(tmp_path):
    from yolos_d2.tools.outputs import OutputError, check_outputs

    image = tmp_path / "image.png"
    image.write_bytes(b"pixels")
    os.link(image, tmp_path / "hard.png")
    (tmp_path / "soft.png").symlink_to(image)
    for link in ("hard.png", "soft.png"):
        with pytest.raises(OutputError, match=f"writing {tmp_path / link} would replace the input {image}"):
            check_outputs([str(tmp_path / link)], [str(image)])
    check_outputs([str(tmp_path / "other.png"), str(tmp_path)], [str(image)])  # beside the input: allowed
    with pytest.raises(OutputError, match="is or lies inside the input folder"):
        check_outputs([str(tmp_path / "sub" / "deeper")], [], [str(tmp_path)])
    check_outputs([str(tmp_path) + "_drawn"], [], [str(tmp_path)])  # a name that only starts like the folder


@pytest.mark.parametrize(
    "args, output, message",
    [
        (["--scale", "0"], "drawn.png", "argument --scale: must be above 0, got 0"),
        (["--scale", "-2"], "drawn.png", "argument --scale: must be above 0, got -2"),
        (["--scale", "nan"], "drawn.png", "argument --scale: must be a finite number, got nan"),
        (["--confidence-threshold", "1.5"], "drawn.png", "argument --confidence-threshold: must be from 0 to 1"),
        (["--max-size", "-5"], "drawn.png", "argument --max-size: must be at least 0, got -5"),
        (["--max-size", "1"], "drawn.png", "max_size must be None, 0 (no limit) or a whole number of pixels of at "
                                           "least the model's patch size, 16; got 1"),
        ([], "drawn.xyz", "Cannot write the image {output}: its extension '.xyz' names no image format PIL writes"),
    ],
)
def test_demo_refuses_settings_out_of_range_before_writing(tiny, tmp_path, capsys, args, output, message):
    output = str(tmp_path / output)
    with pytest.raises(SystemExit) as exit_info:
        run_demo(tiny, tiny.images[:1], output, *args)
    assert exit_info.value.code == 2
    assert message.format(output=output) in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_demo_refuses_a_drawing_larger_than_the_cap_before_predicting(tiny, tmp_path, caplog):
    scale = 200  # 48x48 pixels drawn at 9600x9600, above 2**25
    assert 9600 * 9600 > MAX_DRAWING_PIXELS
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        assert run_demo(tiny, tiny.images[:1], tmp_path / "drawn.png", "--scale", str(scale)) == 1
    assert f"Skipped {tiny.images[0]}: scale 200 would draw the 48x48 image at 9600x9600 pixels" in caplog.text
    assert "Predicted" not in caplog.text
    assert os.listdir(tmp_path) == []


def test_demo_draws_a_video_only_as_a_video(tiny, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.touch()
    with pytest.raises(SystemExit) as exit_info:
        run_demo(tiny, [str(video)], tmp_path / "clip.png")
    assert exit_info.value.code == 2
    assert f"Cannot write the drawing of the video {video} to {tmp_path / 'clip.png'}: videos are drawn as MPEG-4" in (
        capsys.readouterr().err
    )


def test_demo_refuses_to_replace_the_weights(tiny, tmp_path, capsys):
    weights = tmp_path / "drawn.png"  # a checkpoint loads whatever its name
    shutil.copy(tiny.weights.split("=", 1)[1], weights)
    data = weights.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--config-file", tiny.config, "--input", tiny.images[0], "--output", str(weights),
                   "--weights", str(weights)])
    assert exit_info.value.code == 2
    assert f"--output: writing {weights} would replace the input {weights}" in capsys.readouterr().err
    assert weights.read_bytes() == data


def test_demo_on_a_full_disk_names_the_drawing_and_leaves_no_partial_file(tiny, tmp_path, caplog, full_disk):
    output = tmp_path / "drawn"
    assert run_demo(tiny, tiny.images[:2], output) == 1
    for path in tiny.images[:2]:
        drawing = output / os.path.basename(path)
        assert f"Skipped {path}: Could not write {drawing}: ENOSPC (No space left on device)" in caplog.text
    assert os.listdir(output) == []


def test_det_token_stats_on_a_full_disk_names_the_file_and_leaves_no_partial_file(tiny, tmp_path, caplog, full_disk):
    args = ["--config-file", tiny.config, "--output", str(tmp_path / "stats"), "--max-images", "1", tiny.weights]
    assert det_token_stats.main(args) == 1
    assert f"Could not write {tmp_path / 'stats' / 'token_predictions.json'}: ENOSPC" in caplog.text
    assert os.listdir(tmp_path / "stats") == []


def test_attention_maps_on_a_full_disk_names_the_figure_and_leaves_no_partial_file(tiny, tmp_path, caplog, full_disk):
    args = ["--config-file", tiny.config, "--input", tiny.images[0], "--output", str(tmp_path), "--tokens", "1"]
    assert attention_maps.main(args + [tiny.weights]) == 1
    assert f"Could not write {tmp_path / 'det_token_1.png'}: ENOSPC (No space left on device)" in caplog.text
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("tool", ["attention_maps", "det_token_stats"])
def test_folder_outputs_that_are_files_are_refused(tiny, tmp_path, capsys, tool):
    output = tmp_path / "stats"
    output.write_text("a file")
    args = ["--config-file", tiny.config, "--output", str(output), tiny.weights]
    if tool == "attention_maps":
        args += ["--input", tiny.images[0]]
    with pytest.raises(SystemExit) as exit_info:
        {"attention_maps": attention_maps, "det_token_stats": det_token_stats}[tool].main(args)
    assert exit_info.value.code == 2
    assert f"--output {output} is a file: give the name of a folder to write" in capsys.readouterr().err
    assert output.read_text() == "a file"
