"""The dataset browser draws ground-truth boxes where they are, as registered and as the training mapper gives them."""
import os
import types

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from conftest import config_path
from yolos_d2.tools import browse_data

HEIGHT, WIDTH, SCALE = 60, 80, 2
BOX_XYWH = (10, 15, 30, 20)  # x0, y0, width, height in the image's pixels
RED = (255, 0, 0)
# Visualizer draws boxes half transparent: on black, a red box's edges are half red, to uint8 rounding.
HALF_RED, LEVELS = np.array([127.5, 0, 0]), 2
# Drawn lines are a few pixels wide at this scale: what lies this far from a box's edge is elsewhere.
EDGE_BAND = 4


@pytest.fixture(scope="module")
def black_dataset(tmp_path_factory):
    """
    Registered datasets of one black 80x60 image with one box of class "box" (drawn red):
    "browse_black", and "browse_missing", whose second image file does not exist.
    """
    root = tmp_path_factory.mktemp("browse")
    image = root / "images" / "black.png"
    image.parent.mkdir()
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(image)
    annotation = {"bbox": list(BOX_XYWH), "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
    record = {"file_name": str(image), "height": HEIGHT, "width": WIDTH, "image_id": 0, "annotations": [annotation]}
    missing = {**record, "file_name": str(root / "images" / "missing.png"), "image_id": 1}
    datasets = {"browse_black": [record], "browse_missing": [record, missing]}
    for name, records in datasets.items():
        DatasetCatalog.register(name, lambda records=records: records)
        MetadataCatalog.get(name).set(thing_classes=["box"], thing_colors=[RED])
    yield types.SimpleNamespace(image_folder=str(image.parent))
    for name in datasets:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def browse(*args):
    """browse_data's exit status on the quick-start config with one class and ``args``."""
    return browse_data.main(["--config-file", config_path("quickstart"), "model.detector.num_classes=1", *args])


def edge_band(x0, y0, x1, y1):
    """(H * SCALE, W * SCALE) mask of the drawing's pixels within EDGE_BAND of the edges of the box (image pixels)."""
    rows, cols = np.mgrid[: HEIGHT * SCALE, : WIDTH * SCALE]
    x0, y0, x1, y1 = (SCALE * v for v in (x0, y0, x1, y1))
    def inside(margin):
        return (rows >= y0 - margin) & (rows <= y1 + margin) & (cols >= x0 - margin) & (cols <= x1 + margin)

    return inside(EDGE_BAND) & ~inside(-EDGE_BAND - 1)


@pytest.mark.parametrize("augmented", [False, True], ids=["registered", "augmented"])
def test_the_box_is_drawn_where_it_is(black_dataset, tmp_path, augmented):
    output = tmp_path / "drawn"
    # The quick start's training mapper flips horizontally; made to flip always.
    mode = ["--augmented", "dataloader.train.mapper.augmentations.0.prob=1.0"] if augmented else []
    assert browse("--dataset", "browse_black", "--scale", str(SCALE), "--output", str(output), *mode) == 0
    assert os.listdir(output) == ["000000_black.png"]
    drawn = np.asarray(Image.open(output / "000000_black.png").convert("RGB")).astype(float)
    assert drawn.shape == (HEIGHT * SCALE, WIDTH * SCALE, 3)

    x, y, w, h = BOX_XYWH
    x0, x1 = (WIDTH - x - w, WIDTH - x) if augmented else (x, x + w)  # a horizontal flip mirrors the box
    half_red = np.all(np.abs(drawn - HALF_RED) <= LEVELS, axis=2)
    assert not (half_red & ~edge_band(x0, y, x1, y + h)).any()
    for edge in [(x0, y, x1, y), (x0, y + h, x1, y + h), (x0, y, x0, y + h), (x1, y, x1, y + h)]:
        assert (half_red & edge_band(*edge)).any(), f"no box colour on the edge {edge}"


def test_an_image_that_cannot_be_read_is_skipped_and_reported(black_dataset, tmp_path, caplog):
    output = tmp_path / "drawn"
    assert browse("--dataset", "browse_missing", "--output", str(output)) == 1
    assert os.listdir(output) == ["000000_black.png"]
    assert "Skipped " in caplog.text and "missing.png" in caplog.text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "browse_blak"], "dataset 'browse_blak' is not registered"),
        (["--dataset", "browse_black", "--output", "{images}/drawn"], "lies inside the input folder"),
        (["--dataset", "browse_black", "--num-images", "0"], "must be at least 1, got 0"),
    ],
)
def test_mistakes_are_refused_before_drawing(black_dataset, tmp_path, capsys, args, message):
    output = str(tmp_path / "drawn")
    args = [a.format(images=black_dataset.image_folder) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        browse(*(args if "--output" in args else [*args, "--output", output]))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(output) and not os.path.exists(os.path.join(black_dataset.image_folder, "drawn"))


def test_a_full_disk_names_the_drawing_and_leaves_no_partial_file(black_dataset, tmp_path, caplog, full_disk):
    output = tmp_path / "drawn"
    assert browse("--dataset", "browse_black", "--output", str(output)) == 1
    assert "Could not write" in caplog.text and "000000_black.png" in caplog.text
    assert os.listdir(output) == []
