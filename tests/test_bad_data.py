"""Bad data: each case fails with a message naming it before training, or is skipped and logged."""
import json
import logging
import os
import threading

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.structures import BoxMode
from PIL import Image

from yolos_d2.data import build_train_loader, register_coco_dataset
from yolos_d2.data.validation import FILE_CHECK_THREADS, check_image_files, clip_boxes_to_images

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
RED = (230, 30, 30)


def write_image(path, size=(32, 48), mode="RGB"):
    """An image of ``size`` (H, W) pixels filled with a grey ramp; returns its path as a string."""
    ramp = np.linspace(0, 255, size[0] * size[1] * len(mode), dtype=np.uint8).reshape(size[0], size[1], len(mode))
    Image.fromarray(ramp.squeeze(2) if mode == "L" else ramp, mode).save(path)
    return str(path)


def write_coco(root, annotations, num_images=1, size=(32, 48)):
    """A COCO json of ``num_images`` existing images of ``size`` (H, W) under ``root``; returns its path."""
    images = []
    for image_id in range(1, num_images + 1):
        write_image(root / f"{image_id}.png", size)
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": size[0], "width": size[1]})
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return str(path)


def annotation(ann_id, bbox, category_id=1, image_id=1):
    return {"id": ann_id, "image_id": image_id, "bbox": bbox, "category_id": category_id, "iscrowd": 0, "area": 1}


def load(name, json_file, image_root):
    return DatasetCatalog.get(register_coco_dataset(name, json_file, str(image_root)))


def test_invalid_json_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,, "file_name": "1.png"}]}')
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON: Expecting property .* line 2, column 12"):
        load("bad_json", str(path), tmp_path)


def test_unknown_category_names_the_annotations_images_and_ids(tmp_path):
    json_file = write_coco(tmp_path, [annotation(7, [1, 1, 5, 5]), annotation(8, [1, 1, 5, 5], category_id=9)])
    with pytest.raises(ValueError) as info:
        load("bad_category", json_file, tmp_path)
    message = str(info.value)
    assert "annotations.json: 1 annotation with a category_id that is not in its 'categories' (ids 1, 2)" in message
    assert f"annotation 8 of image 1 ({tmp_path / '1.png'}) has category_id 9" in message
    assert "annotation 7" not in message


def test_missing_images_are_counted_and_the_first_listed(tmp_path):
    json_file = write_coco(tmp_path, [], num_images=8)
    for image_id in range(2, 9):
        (tmp_path / f"{image_id}.png").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load("missing_images", json_file, tmp_path)
    message = str(info.value)
    assert message.startswith("7 of the 8 images of dataset 'missing_images' do not exist: ")
    assert str(tmp_path / "2.png") in message and str(tmp_path / "6.png") in message
    assert str(tmp_path / "7.png") not in message and message.endswith(", ...")


def test_every_missing_image_is_found_in_the_datasets_order(tmp_path):
    """Files looked up by several threads, in tasks of a few hundred: the missing are listed in order."""
    records = [{"file_name": str(tmp_path / f"{i}.png")} for i in range(1000)]
    missing = [3, 256, 257, 600, 998, 999]
    for i in sorted(set(range(1000)) - set(missing)):
        (tmp_path / f"{i}.png").touch()
    with pytest.raises(FileNotFoundError) as info:
        check_image_files(records, "many")
    shown = ", ".join(str(tmp_path / f"{i}.png") for i in missing[:5])
    assert str(info.value) == f"6 of the 1000 images of dataset 'many' do not exist: {shown}, ..."


def test_image_files_are_looked_up_by_many_threads_at_once(monkeypatch):
    """Each look-up waits on the storage, so that one at a time the files of a large dataset take minutes."""
    waiting = threading.Barrier(FILE_CHECK_THREADS, timeout=60)
    seen = threading.local()

    def is_file(path):
        if not getattr(seen, "thread", False):  # each thread's first look-up waits for all the threads' first
            seen.thread = True
            waiting.wait()
        return True

    monkeypatch.setattr(os.path, "isfile", is_file)
    check_image_files([{"file_name": f"{i}.jpg"} for i in range(1000 * FILE_CHECK_THREADS)], "concurrent")
    assert not waiting.broken


def test_ignored_annotations_are_named(tmp_path):
    annotations = [annotation(1, [1, 1, 5, 5]), {**annotation(2, [1, 1, 5, 5]), "ignore": 1}]
    with pytest.raises(ValueError) as info:
        load("ignored", write_coco(tmp_path, annotations), tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'annotations.json'}: 1 annotation whose ignore is not 0 (detectron2 loads no ignored "
        "annotations): annotations[1] (id 2, image_id 1) has ignore 1"
    )


def test_boxes_without_area_are_dropped_and_boxes_past_the_image_clipped(tmp_path, caplog):
    annotations = [
        annotation(1, [4, 4, 10, 8]),
        annotation(2, [4, 4, 0, 8]),  # zero width
        annotation(3, [4, 4, 10, -3]),  # negative height
        annotation(4, [60, 4, 10, 8]),  # wholly right of the 48-pixel-wide image
        annotation(5, [-5, 20, 60, 30], category_id=2),  # past three borders
    ]
    with caplog.at_level(logging.WARNING, logger="yolos_d2"):
        (record,) = load("degenerate_boxes", write_coco(tmp_path, annotations), tmp_path)
    assert [(a["id"], a["category_id"], a["bbox"]) for a in record["annotations"]] == [
        (1, 0, [4, 4, 10, 8]),
        (5, 1, [0.0, 20.0, 48.0, 12.0]),
    ]
    assert "'degenerate_boxes': dropped 3 of 5 annotations whose box has no area inside its image" in caplog.text
    assert "ids 2, 3, 4" in caplog.text
    assert "'degenerate_boxes': clipped 1 of 5 boxes that extend past their image to its borders: ids 5" in caplog.text


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_rgba_images_are_read_as_rgb(tmp_path, mode):
    path = write_image(tmp_path / f"{mode}.png", mode=mode)
    pixels = np.asarray(Image.open(path))
    expected = np.repeat(pixels[..., None], 3, axis=2) if mode == "L" else pixels[..., :3]
    mapper = DatasetMapper(is_train=False, augmentations=[], image_format="RGB")
    image = mapper({"file_name": path, "height": 32, "width": 48, "image_id": 1})["image"]
    assert image.shape == (3, 32, 48)
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)


def _exif_rotated_photo(path):
    """
    A JPEG stored 60 wide and 40 high with a red block at the stored top-left (x 0-20, y 0-10)
    and EXIF orientation 6: displayed turned 90 degrees clockwise, 40 wide and 60 high, with the
    block at the top right (x 30-40, y 0-20).
    """
    stored = np.full((40, 60, 3), 128, dtype=np.uint8)
    stored[0:10, 0:20] = RED
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    return str(path)


def test_exif_orientation_is_applied_to_the_image_the_boxes_describe(tmp_path):
    path = _exif_rotated_photo(tmp_path / "photo.jpg")
    displayed = {"file_name": path, "height": 60, "width": 40, "image_id": 1}
    box = {"bbox": [30, 0, 10, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    out = mapper({**displayed, "annotations": [box]})
    image = out["image"].permute(1, 2, 0).numpy().astype(int)
    assert image.shape == (60, 40, 3)
    assert out["instances"].gt_boxes.tensor.tolist() == [[30.0, 0.0, 40.0, 20.0]]
    assert (np.abs(image[2:18, 32:38] - RED) < 40).all()  # the box is on the block
    assert (np.abs(image[25:, :] - 128) < 40).all()

    # Width and height of the stored pixels instead of the displayed image: the boxes cannot match.
    with pytest.raises(SizeMismatchError, match=r"shape for image .*photo\.jpg, got \(40, 60\), expect \(60, 40\)"):
        mapper({**displayed, "height": 40, "width": 60, "annotations": [box]})


def _training_dicts(tmp_path, readable, unreadable):
    """Dataset dicts of ``readable`` images and of ``unreadable`` ones (garbage, then truncated PNGs)."""
    dicts = []
    for i in range(readable + unreadable):
        path = write_image(tmp_path / f"{i}.png")
        if i >= readable:
            data = open(path, "rb").read()
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2] if i % 2 else b"not an image")
        box = {"bbox": [2, 2, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
        dicts.append({"file_name": path, "height": 32, "width": 48, "image_id": i, "annotations": [box]})
    return dicts


def test_unreadable_images_are_skipped_and_logged_with_a_running_count(tmp_path, caplog):
    dicts = _training_dicts(tmp_path, readable=2, unreadable=2)
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    loader = build_train_loader(dicts, mapper=mapper, total_batch_size=2, seed=0)
    with caplog.at_level(logging.WARNING, logger="yolos_d2"):
        batches = [next(iter_) for iter_ in [iter(loader)] for _ in range(4)]
    readable = {d["file_name"] for d in dicts[:2]}
    assert all(len(batch) == 2 and {d["file_name"] for d in batch} <= readable for batch in batches)
    skipped = [line for line in caplog.messages if line.startswith("Skipped an unreadable image")]
    # Each file is logged once, when first met, with its image id and PIL's reason.
    named = sorted(d["image_id"] for d in dicts[2:] for line in skipped if d["file_name"] in line)
    assert named == [2, 3] and len(skipped) == 2
    reasons = {2: "cannot identify image file", 3: "image file is truncated"}
    for count, line in enumerate(skipped, start=1):
        image_id = int(line.split()[6].rstrip(":"))
        assert line.startswith(f"Skipped an unreadable image, image id {image_id}: ")
        assert reasons[image_id] in line
        assert line.endswith(f"Images skipped so far by this process: {count}")


def test_a_training_set_without_readable_images_stops(tmp_path):
    dicts = _training_dicts(tmp_path, readable=0, unreadable=2)
    loader = build_train_loader(dicts, mapper=DatasetMapper(is_train=True, augmentations=[], image_format="RGB"),
                                total_batch_size=1, seed=0)
    with pytest.raises(RuntimeError, match="None of the 2 training images could be read"):
        next(iter(loader))


def test_clipping_keeps_boxes_inside_the_image_untouched():
    xywh, xyxy = BoxMode.XYWH_ABS, BoxMode.XYXY_ABS
    boxes = [([0, 0, 10, 10], xywh), ([2.5, 3, 1, 1], xywh), ([0, 0, 10, 10], xyxy), ([2.5, 3, 4, 5], xyxy)]
    record = {"file_name": "x.png", "image_id": 1, "height": 10, "width": 10,
              "annotations": [{"id": i, "bbox": list(b), "bbox_mode": m} for i, (b, m) in enumerate(boxes)]}
    clip_boxes_to_images([record], "inside")
    assert [(a["bbox"], a["bbox_mode"]) for a in record["annotations"]] == boxes


def test_clipping_keeps_the_box_mode():
    record = {"file_name": "x.png", "image_id": 1, "height": 10, "width": 20, "annotations": [
        {"id": 1, "bbox": [-2, 1, 30, 4], "bbox_mode": BoxMode.XYWH_ABS},
        {"id": 2, "bbox": [-2, 1, 30, 4], "bbox_mode": BoxMode.XYXY_ABS},
        {"id": 3, "bbox": [12, 1, 11, 4], "bbox_mode": BoxMode.XYXY_ABS},  # x1 < x0: no area
    ]}
    clip_boxes_to_images([record], "modes")
    assert [a["bbox"] for a in record["annotations"]] == [[0.0, 1.0, 20.0, 4.0], [0.0, 1.0, 20.0, 4.0]]


def write_json(root, coco):
    path = root / "annotations.json"
    path.write_text(json.dumps(coco))
    return str(path)


def coco_with_images(root, image_ids, annotations=(), size=(32, 48)):
    """A COCO dict of images with the given ids (files named after their position) and ``annotations``."""
    images = []
    for position, image_id in enumerate(image_ids):
        write_image(root / f"{position}.png", size)
        images.append({"id": image_id, "file_name": f"{position}.png", "height": size[0], "width": size[1]})
    return {"images": images, "annotations": list(annotations), "categories": CATEGORIES}


def test_duplicate_image_ids_are_named(tmp_path):
    coco = coco_with_images(tmp_path, [1, 2, 1], [annotation(1, [1, 1, 5, 5]), annotation(2, [2, 2, 5, 5], image_id=2)])
    with pytest.raises(ValueError) as info:
        load("duplicate_images", write_json(tmp_path, coco), tmp_path)
    message = str(info.value)
    assert message.endswith("annotations.json: 1 image id used more than once (ids must be unique): 1 (0.png, 2.png)")


def test_duplicate_annotation_ids_are_named(tmp_path):
    annotations = [annotation(4, [1, 1, 5, 5]), annotation(4, [2, 2, 5, 5], image_id=2), annotation(5, [1, 1, 5, 5])]
    coco = coco_with_images(tmp_path, [1, 2], annotations)
    with pytest.raises(ValueError) as info:
        load("duplicate_annotations", write_json(tmp_path, coco), tmp_path)
    message = str(info.value)
    assert message.endswith(
        "annotations.json: 1 annotation id used more than once (ids must be unique): 4 (image 1, image 2)"
    )


@pytest.mark.parametrize(
    "bbox",
    [
        ["10", "10", "30", "30"],
        "1234",
        [True, 1, 5, 5],
        ["a", 1, 2, 3],
        [1, 1, float("nan"), 5],
        [1, 1, float("inf"), 5],
        [1, 2, 3],
        None,
    ],
)
def test_box_values_must_be_four_finite_numbers(tmp_path, bbox):
    coco = coco_with_images(tmp_path, [7], [annotation(3, [1, 1, 5, 5], image_id=7), annotation(9, bbox, image_id=7)])
    with pytest.raises(ValueError) as info:
        load(f"bad_box_{tmp_path.name}", write_json(tmp_path, coco), tmp_path)
    message = str(info.value)
    assert message == (
        f"{tmp_path / 'annotations.json'}: 1 annotation whose bbox is not four finite numbers "
        f"[x, y, width, height]: annotations[1] (id 9, image_id 7) has bbox {json.dumps(bbox)}"
    )


@pytest.mark.parametrize("key", ["width", "height"])
def test_image_without_width_or_height_is_named(tmp_path, key):
    coco = coco_with_images(tmp_path, [1, 2])
    del coco["images"][1][key]
    with pytest.raises(ValueError) as info:
        load(f"no_{key}", write_json(tmp_path, coco), tmp_path)
    assert str(info.value).endswith(
        "annotations.json: 1 image without one of the required keys 'id', 'file_name', 'width', 'height': "
        f"images[1] (id 2, file_name \"1.png\") has no '{key}'"
    )


@pytest.mark.parametrize("size", ["48", 0, True, 47.5])
def test_image_size_must_be_a_positive_whole_number(tmp_path, size):
    coco = coco_with_images(tmp_path, [1])
    coco["images"][0]["width"] = size
    with pytest.raises(ValueError) as info:
        load(f"bad_width_{size!r}", write_json(tmp_path, coco), tmp_path)
    assert str(info.value).endswith(
        "annotations.json: 1 image whose width is not a positive whole number of pixels: "
        f'images[0] (id 1, file_name "0.png") has width {json.dumps(size)}'
    )


@pytest.mark.parametrize("categories", [None, []])
def test_json_without_categories_is_named(tmp_path, categories):
    coco = coco_with_images(tmp_path, [1], [annotation(1, [1, 1, 5, 5])])
    if categories is None:
        del coco["categories"]
    else:
        coco["categories"] = categories
    with pytest.raises(ValueError) as info:
        load(f"no_categories_{categories}", write_json(tmp_path, coco), tmp_path)
    assert f"{tmp_path / 'annotations.json'} has no 'categories'" in str(info.value)


def crowd(ann_id, bbox, image_id=1):
    return {**annotation(ann_id, bbox, image_id=image_id), "iscrowd": 1}


def test_crowd_annotations_are_counted_in_the_load_summary(tmp_path, caplog):
    annotations = [annotation(1, [1, 1, 5, 5]), crowd(2, [2, 2, 9, 9]), crowd(3, [3, 3, 9, 9], image_id=2)]
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        dicts = load("with_crowd", write_json(tmp_path, coco_with_images(tmp_path, [1, 2], annotations)), tmp_path)
    assert sum(len(d["annotations"]) for d in dicts) == 3  # kept: the evaluation reads them
    summaries = [m for m in caplog.messages if m.startswith("Dataset 'with_crowd': ")]
    assert summaries == [
        "Dataset 'with_crowd': 2 images, 3 annotations: 1 box to train on and 2 crowd annotations (iscrowd=1), "
        "which training leaves out"
    ]


def test_a_split_without_trainable_boxes_fails_training_but_not_evaluation(tmp_path, caplog):
    from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts

    annotations = [crowd(1, [1, 1, 5, 5]), crowd(2, [2, 2, 9, 9], image_id=2)]
    name = register_coco_dataset("all_crowd", write_json(tmp_path, coco_with_images(tmp_path, [1, 2], annotations)),
                                 str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="yolos_d2"):
        dicts = get_detection_dataset_dicts(name, filter_empty=False)
    assert "Dataset 'all_crowd' has no box to train on: all of its 2 annotations are crowd (iscrowd=1)" in caplog.text
    # Evaluation reads it.
    mapper = DatasetMapper(is_train=False, augmentations=[], image_format="RGB")
    loader = build_detection_test_loader(dicts, mapper=mapper)
    assert [batch[0]["image_id"] for batch in loader] == [1, 2]
    # Training refuses it, saying why.
    with pytest.raises(ValueError) as info:
        build_train_loader(dicts, mapper=DatasetMapper(is_train=True, augmentations=[], image_format="RGB"),
                           total_batch_size=1)
    message = str(info.value)
    assert message.startswith(
        "The training dataset has no box to train on: 2 images, 2 annotations, all crowd (iscrowd=1)"
    )
    assert str(tmp_path) in message
    # With filter_empty=True (the quick start), detectron2 removes the images first and stops, naming the split.
    with pytest.raises(AssertionError, match="No valid data found in all_crowd"):
        get_detection_dataset_dicts(name, filter_empty=True)


def test_a_training_set_without_annotations_is_refused(tmp_path):
    dicts = [{"file_name": str(tmp_path / "1.png"), "image_id": 1, "height": 32, "width": 48, "annotations": []}]
    with pytest.raises(ValueError, match="The training dataset has no box to train on: 1 image, no annotations"):
        build_train_loader(dicts, mapper=DatasetMapper(is_train=True, augmentations=[], image_format="RGB"),
                           total_batch_size=1)


# 16-bit levels and their 8-bit values round(v * 255 / 65535), computed by hand: the 256 multiples
# of 257 are exactly 0..255; 128 -> 0.498, 129 -> 0.502, 32767 -> 127.498, 32768 -> 127.502.
GRADIENT_16 = np.arange(256, dtype=np.uint16) * 257
ROUNDING_16 = np.array([0, 128, 129, 32767, 32768, 65535], dtype=np.uint16)
ROUNDING_8 = np.array([0, 0, 1, 127, 128, 255], dtype=np.uint8)


def write_16_bit(path):
    """Rows: the full 16-bit gradient over 256 columns, then the rounding cases (padded with zeros)."""
    rows = np.zeros((2, 256), dtype=np.uint16)
    rows[0], rows[1, : len(ROUNDING_16)] = GRADIENT_16, ROUNDING_16
    Image.fromarray(rows).save(path)
    return str(path)


@pytest.mark.parametrize("suffix, pil_mode", [(".png", "I"), (".tif", "I;16")])
def test_16_bit_images_are_scaled_to_8_bits(tmp_path, suffix, pil_mode):
    from detectron2.data.detection_utils import read_image as detectron2_read_image

    from yolos_d2.data import DatasetMapper, read_image

    path = write_16_bit(tmp_path / f"gradient{suffix}")
    assert Image.open(path).mode == pil_mode
    assert (detectron2_read_image(path, format="RGB")[0] == 255).mean() > 0.99  # the gradient clipped by detectron2
    expected = np.zeros((2, 256), dtype=np.uint8)
    expected[0], expected[1, : len(ROUNDING_8)] = np.arange(256), ROUNDING_8
    expected = np.repeat(expected[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(read_image(path, format="RGB"), expected)
    np.testing.assert_array_equal(read_image(path, format="L")[:, :, 0], expected[:, :, 0])
    for is_train in (False, True):
        mapper = DatasetMapper(is_train=is_train, augmentations=[], image_format="RGB")
        image = mapper({"file_name": path, "height": 2, "width": 256, "image_id": 1, "annotations": []})["image"]
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)


def test_16_bit_colour_images_keep_their_levels(tmp_path):
    import cv2

    from yolos_d2.data import read_image

    rgb = np.stack([GRADIENT_16, GRADIENT_16[::-1], np.full(256, 32768, dtype=np.uint16)], axis=-1)[None]
    cv2.imwrite(str(tmp_path / "rgb48.png"), rgb[:, :, ::-1])
    image = read_image(str(tmp_path / "rgb48.png"), format="RGB").astype(int)
    scaled = np.round(rgb.astype(float) * 255 / 65535)
    assert np.abs(image - scaled).max() <= 1  # Pillow keeps each value's high byte


@pytest.mark.parametrize(
    "dtype, described", [(np.float32, "F' (32-bit floating point)"), (np.int32, "I' (32-bit integers)")]
)
def test_images_without_a_known_range_are_refused_by_name(tmp_path, dtype, described):
    from yolos_d2.data import read_image
    from yolos_d2.data.images import UnsupportedImageError

    path = tmp_path / "levels.tif"
    Image.fromarray(np.linspace(0, 1000, 32, dtype=dtype).reshape(4, 8)).save(path)
    with pytest.raises(UnsupportedImageError) as info:
        read_image(str(path), format="RGB")
    assert str(info.value) == (
        f"{path}: images of PIL mode '{described} are not supported: only images of 8 or 16 bits per channel "
        "have a known range. Convert the image to 8 or 16 bits per channel"
    )


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "exif"])
@pytest.mark.parametrize("image_format", ["RGB", "BGR", "L"])
def test_8_bit_images_are_read_as_detectron2_reads_them(tmp_path, mode, image_format):
    from detectron2.data.detection_utils import read_image as detectron2_read_image

    from yolos_d2.data import read_image

    if mode == "exif":
        path = _exif_rotated_photo(tmp_path / "photo.jpg")
    else:
        rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8))
        path = str(tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}")
        (rgb.convert(mode) if mode != "P" else rgb.quantize(32)).save(path)
    expected = detectron2_read_image(path, format=image_format)
    np.testing.assert_array_equal(read_image(path, format=image_format), expected)


@pytest.mark.parametrize("is_train", [False, True])
def test_mapper_maps_8_bit_images_and_boxes_as_detectron2s(tmp_path, is_train):
    import detectron2.data.transforms as T

    from yolos_d2.data import DatasetMapper as YOLOSDatasetMapper

    path = write_image(tmp_path / "1.png")
    boxes = [([2, 3, 10, 12], 0), ([20, 4, 30, 20], 1), ([1, 1, 5, 5], 1)]
    record = {"file_name": path, "height": 32, "width": 48, "image_id": 1, "annotations": [
        {"bbox": b, "bbox_mode": BoxMode.XYWH_ABS, "category_id": c, "iscrowd": int(i == 2)}
        for i, (b, c) in enumerate(boxes)
    ]}
    outputs = []
    for mapper_class in (DatasetMapper, YOLOSDatasetMapper):
        np.random.seed(0)
        augmentations = [T.RandomFlip(horizontal=True), T.ResizeShortestEdge(40, 64)]
        outputs.append(mapper_class(is_train=is_train, augmentations=augmentations, image_format="RGB")(record))
    theirs, ours = outputs
    assert sorted(ours) == sorted(theirs)
    assert ours["image"].shape == (3, 40, 60) and torch.equal(ours["image"], theirs["image"])
    if is_train:
        assert ours["instances"].gt_boxes.tensor.tolist() == theirs["instances"].gt_boxes.tensor.tolist()
        assert ours["instances"].gt_classes.tolist() == theirs["instances"].gt_classes.tolist() == [0, 1]
    assert record["annotations"][0]["bbox"] == [2, 3, 10, 12]  # the input is not changed


def test_mapper_refuses_what_it_does_not_map(tmp_path):
    from yolos_d2.data import DatasetMapper as YOLOSDatasetMapper

    path = write_image(tmp_path / "1.png")
    mapper = YOLOSDatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    with pytest.raises(ValueError, match=r"1\.png has a sem_seg_file_name: use detectron2's DatasetMapper"):
        mapper({"file_name": path, "height": 32, "width": 48, "sem_seg_file_name": path})
    with pytest.raises(ValueError, match="does not load precomputed proposals"):
        YOLOSDatasetMapper(is_train=True, augmentations=[], image_format="RGB", precomputed_proposal_topk=100)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda coco: coco.pop("images"),
         " has no 'images': a COCO-format json is an object with 'images', 'annotations' and 'categories' lists"),
        (lambda coco: coco["annotations"][0].pop("image_id"),
         ": 1 annotation without one of the required keys 'id', 'image_id', 'category_id', 'bbox': "
         "annotations[0] (id 1) has no 'image_id'"),
        (lambda coco: coco["categories"][1].pop("name"),
         ": 1 category without one of the required keys 'id', 'name': categories[1] (id 2) has no 'name'"),
        (lambda coco: coco["categories"].append({"id": 2, "name": "bird"}),
         ": 1 category id used more than once (ids must be unique): 2 (dog, bird)"),
    ],
)
def test_other_missing_keys_and_repeated_ids_are_named(tmp_path, change, expected):
    coco = coco_with_images(tmp_path, [1], [annotation(1, [1, 1, 5, 5])])
    coco["categories"] = [dict(c) for c in coco["categories"]]
    change(coco)
    with pytest.raises(ValueError) as info:
        load(f"keys_{tmp_path.name}", write_json(tmp_path, coco), tmp_path)
    assert str(info.value).startswith(str(tmp_path / "annotations.json")) and expected in str(info.value)


@pytest.mark.parametrize(
    "image_id, expected",
    [
        (99, "annotations[1] (id 2) has image_id 99"),
        ("1", "annotations[1] (id 2) has image_id \"1\" (a string, but image 1's id is an integer)"),
    ],
)
def test_annotations_of_no_image_are_named(tmp_path, image_id, expected):
    annotations = [annotation(1, [1, 1, 5, 5]), annotation(2, [2, 2, 5, 5], image_id=image_id)]
    coco = coco_with_images(tmp_path, [1], annotations)
    with pytest.raises(ValueError) as info:
        load(f"no_image_{tmp_path.name}", write_json(tmp_path, coco), tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'annotations.json'}: 1 annotation whose image_id is not the id of one of its 'images': {expected}"
    )


def test_a_category_id_of_the_other_kind_is_named(tmp_path):
    coco = coco_with_images(tmp_path, [1], [annotation(1, [1, 1, 5, 5], category_id="2")])
    with pytest.raises(ValueError) as info:
        load(f"category_kind_{tmp_path.name}", write_json(tmp_path, coco), tmp_path)
    assert str(info.value).endswith(
        f"annotation 1 of image 1 ({tmp_path / '0.png'}) has category_id \"2\" (a string, but category 2's id is an "
        "integer)"
    )


def test_string_ids_are_loaded(tmp_path):
    annotations = [{**annotation("a", [1, 1, 5, 5], image_id="photo-2"), "iscrowd": False},
                   {**annotation("b", [2, 2, 5, 5], image_id="photo-2"), "iscrowd": True}]
    dicts = load("string_ids", write_json(tmp_path, coco_with_images(tmp_path, ["photo-1", "photo-2"], annotations)),
                 tmp_path)
    loaded = [(d["image_id"], [a["id"] for a in d["annotations"]]) for d in dicts]
    assert loaded == [("photo-1", []), ("photo-2", ["a", "b"])]


@pytest.mark.parametrize("iscrowd", ["0", 2, None, 0.0, [0]])
def test_iscrowd_must_be_0_or_1(tmp_path, iscrowd):
    annotations = [annotation(1, [1, 1, 5, 5]), {**annotation(2, [1, 1, 5, 5]), "iscrowd": iscrowd}]
    coco = coco_with_images(tmp_path, [1], annotations)
    with pytest.raises(ValueError) as info:
        load(f"crowd_{tmp_path.name}", write_json(tmp_path, coco), tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'annotations.json'}: 1 annotation whose iscrowd is not 0 or 1 (or false or true): "
        f"annotations[1] (id 2, image_id 1) has iscrowd {json.dumps(iscrowd)}"
    )


_COCO_FORMAT = "a COCO-format json is an object with 'images', 'annotations' and 'categories' lists"


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda coco: [coco], f" holds a list: {_COCO_FORMAT}"),
        (lambda coco: {**coco, "annotations": {"1": coco["annotations"][0]}},
         f": 'annotations' is an object, not a list: {_COCO_FORMAT}"),
        (lambda coco: {**coco, "annotations": None}, f": 'annotations' is null, not a list: {_COCO_FORMAT}"),
        (lambda coco: {**coco, "categories": "cat"}, f": 'categories' is a string, not a list: {_COCO_FORMAT}"),
        (lambda coco: {**coco, "annotations": [5]}, ": 1 annotation that is not an object: annotations[0] is 5"),
        (lambda coco: {**coco, "images": [{**coco["images"][0], "id": [1]}]},
         ': 1 image whose id is not an integer or a string: images[0] (file_name "0.png") has id [1]'),
        (lambda coco: {**coco, "images": [{**coco["images"][0], "id": 1.0}]},
         ': 1 image whose id is not an integer or a string: images[0] (file_name "0.png") has id 1.0'),
        (lambda coco: {**coco, "images": [{**coco["images"][0], "file_name": None}]},
         ": 1 image whose file_name is not a non-empty string: images[0] (id 1) has file_name null"),
        (lambda coco: {**coco, "categories": [{"id": 1, "name": 3}, {"id": 2, "name": "dog"}]},
         ": 1 category whose name is not a non-empty string: categories[0] (id 1) has name 3"),
        (lambda coco: {**coco, "annotations": [{**coco["annotations"][0], "area": -1}]},
         ": 1 annotation whose area is not a finite number >= 0: annotations[0] (id 1, image_id 1) has area -1"),
        (lambda coco: {**coco, "annotations": [{**coco["annotations"][0], "category_id": {"id": 1}}]},
         (': 1 annotation whose category_id is not an integer or a string: annotations[0] (id 1, image_id 1) has '
          'category_id {"id": 1}')),
        (lambda coco: {**coco, "images": coco["images"] + [{**coco["images"][0], "id": "b"}]},
         (": 'images' mixes integer and string ids (images[0] (id 1, file_name \"0.png\") and images[1] (id \"b\", "
          "file_name \"0.png\")): use one kind")),
    ],
)
def test_malformed_structure_is_named_by_list_index_and_field(tmp_path, change, expected):
    coco = change(coco_with_images(tmp_path, [1], [annotation(1, [1, 1, 5, 5])]))
    with pytest.raises(ValueError) as info:
        load(f"structure_{tmp_path.name}", write_json(tmp_path, coco), tmp_path)
    assert str(info.value) == str(tmp_path / "annotations.json") + expected


# The flipped images whose (C, H, W) array numpy calls contiguous although its stride along W is
# negative: one pixel, or one column of one channel.
@pytest.mark.parametrize("size, mode", [((1, 1), "RGB"), ((3, 1), "L")])
def test_one_pixel_wide_images_are_flipped_and_mapped(tmp_path, size, mode):
    import detectron2.data.transforms as T

    from yolos_d2.data import DatasetMapper as YOLOSDatasetMapper

    path = write_image(tmp_path / "thin.png", size, mode)
    box = {"bbox": [0, 0, 1, size[0]], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
    record = {"file_name": path, "height": size[0], "width": 1, "image_id": 1, "annotations": [box]}
    flip = T.RandomFlip(prob=1.0, horizontal=True)
    out = YOLOSDatasetMapper(is_train=True, augmentations=[flip], image_format=mode)(record)
    # Flipping one column leaves it as it is.
    pixels = np.asarray(Image.open(path)).reshape(size[0], 1, len(mode))
    np.testing.assert_array_equal(out["image"].permute(1, 2, 0).numpy(), pixels)
    assert out["instances"].gt_boxes.tensor.tolist() == [[0.0, 0.0, 1.0, float(size[0])]]


def test_an_unreadable_image_at_evaluation_is_named(tmp_path):
    from detectron2.data import build_detection_test_loader

    from yolos_d2.data import DatasetMapper as YOLOSDatasetMapper
    from yolos_d2.data.images import UnreadableImageError

    dicts = _training_dicts(tmp_path, readable=1, unreadable=2)
    loader = build_detection_test_loader(dicts, mapper=YOLOSDatasetMapper(is_train=False, augmentations=[],
                                                                          image_format="RGB"))
    batches = iter(loader)
    assert next(batches)[0]["image_id"] == 0
    with pytest.raises(UnreadableImageError) as info:
        next(batches)
    assert str(info.value).startswith(f"{dicts[1]['file_name']}: image file is truncated")
    with pytest.raises(UnreadableImageError) as info:
        YOLOSDatasetMapper(is_train=False, augmentations=[], image_format="RGB")(dicts[2])
    assert str(info.value) == (
        f"{dicts[2]['file_name']}: cannot identify image file (not an image, or in a format PIL cannot read)"
    )
