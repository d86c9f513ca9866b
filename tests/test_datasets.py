"""The synthetic quick-start dataset, dataset registration, loading and the training loader's copy of it."""
import gc
import json
import logging
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode
from PIL import Image

from yolos_d2.data import (
    SYNTHETIC_SHAPES_CLASSES,
    DatasetError,
    build_train_loader,
    check_datasets,
    check_num_classes,
    register_coco_dataset,
    register_voc_dataset,
)
from yolos_d2.data import synthetic_shapes, validation
from yolos_d2.data.synthetic_shapes import (
    SYNTHETIC_SHAPES_SPLITS,
    SyntheticShapesSpec,
    generate_synthetic_shapes,
)

SPEC = SyntheticShapesSpec(num_images=20, seed=11)


def load(json_file):
    with open(json_file) as f:
        return json.load(f)


def test_generation_is_deterministic_and_cached(tmp_path):
    first = generate_synthetic_shapes(SPEC, str(tmp_path / "a"))
    second = generate_synthetic_shapes(SPEC, str(tmp_path / "b"))
    assert load(first) == load(second)
    for image in load(first)["images"]:
        a, b = (os.path.join(os.path.dirname(f), "images", image["file_name"]) for f in (first, second))
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))

    mtime = os.path.getmtime(first)
    assert generate_synthetic_shapes(SPEC, str(tmp_path / "a")) == first
    assert os.path.getmtime(first) == mtime  # not regenerated
    other = generate_synthetic_shapes(SyntheticShapesSpec(num_images=20, seed=12), str(tmp_path / "a"))
    assert os.path.dirname(other) != os.path.dirname(first)


def test_objects_match_the_spec_and_their_class_colour(tmp_path):
    coco = load(generate_synthetic_shapes(SPEC, str(tmp_path)))
    assert [c["name"] for c in coco["categories"]] == list(SYNTHETIC_SHAPES_CLASSES)
    image_dir = os.path.join(str(tmp_path), os.listdir(str(tmp_path))[0], "images")
    per_image = {}
    for a in coco["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
        x, y, w, h = a["bbox"]
        assert 0.2 * 128 - 1 <= min(w, h) and max(w, h) <= 0.5 * 128 + 1
        assert 0 <= x and x + w <= 128 and 0 <= y and y + h <= 128
        pixels = np.asarray(Image.open(os.path.join(image_dir, f"{a['image_id']:06d}.png")), dtype=float)
        centre = pixels[y + h // 2 - 2 : y + h // 2 + 2, x + w // 2 - 2 : x + w // 2 + 2].reshape(-1, 3).mean(0)
        # Rectangles are reddish, ellipses greenish, triangles bluish.
        assert centre.argmax() == a["category_id"] - 1, a
    assert {len(v) for v in per_image.values()} <= {1, 2, 3}
    assert len(per_image) == SPEC.num_images


def test_quickstart_splits_are_registered_without_being_generated(tmp_path, monkeypatch):
    """Registering writes nothing; a split is generated when its dataset dicts are first asked for."""
    generated = []

    def generator(spec, root):
        generated.append((spec, root))
        raise RuntimeError("generation asked for")

    monkeypatch.setattr(synthetic_shapes, "generate_synthetic_shapes", generator)
    for name in SYNTHETIC_SHAPES_SPLITS:  # registered again below; the catalogs are restored afterwards
        monkeypatch.delitem(DatasetCatalog.data, name)
        monkeypatch.delitem(MetadataCatalog.data, name)
    synthetic_shapes.register_synthetic_shapes(str(tmp_path))
    for name, spec in SYNTHETIC_SHAPES_SPLITS.items():
        assert name in DatasetCatalog.list()
        metadata = MetadataCatalog.get(name)
        assert metadata.thing_classes == list(SYNTHETIC_SHAPES_CLASSES)
        assert metadata.json_file == synthetic_shapes.split_files(spec, str(tmp_path))[0]
    assert generated == [] and os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="generation asked for"):
        DatasetCatalog.get("synthetic_shapes_val")
    assert generated == [(SYNTHETIC_SHAPES_SPLITS["synthetic_shapes_val"], str(tmp_path))]
    assert SYNTHETIC_SHAPES_SPLITS["synthetic_shapes_train"].num_images == 4000
    assert SYNTHETIC_SHAPES_SPLITS["synthetic_shapes_val"].num_images == 300


def test_register_coco_dataset_is_idempotent_and_checks_class_count(tmp_path):
    json_file = generate_synthetic_shapes(SPEC, str(tmp_path))
    image_root = os.path.join(os.path.dirname(json_file), "images")
    assert register_coco_dataset("user_shapes", json_file, image_root) == "user_shapes"
    assert register_coco_dataset("user_shapes", json_file, image_root) == "user_shapes"
    with pytest.raises(ValueError, match="'user_shapes' is already registered"):
        register_coco_dataset("user_shapes", json_file, str(tmp_path))

    assert len(DatasetCatalog.get("user_shapes")) == SPEC.num_images
    check_num_classes("user_shapes", 3)
    with pytest.raises(ValueError, match=r"'user_shapes' has 3 classes \(rectangle, ellipse, triangle\).*num_classes=3"):
        check_num_classes(["user_shapes"], 80)


def test_generation_logs_its_progress(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="yolos_d2.data.synthetic_shapes"):
        generate_synthetic_shapes(SPEC, str(tmp_path))
    progress = [m for m in caplog.messages if m.startswith("Generated ")]
    assert progress == [f"Generated {2 * k} of 20 synthetic images ({10 * k}%)" for k in range(1, 11)]


def test_class_count_is_checked_before_a_coco_json_is_loaded(tmp_path, monkeypatch):
    """The your_data.md flow: the classes of a registered json are read from its categories, in id order."""
    synthetic_json = generate_synthetic_shapes(SPEC, str(tmp_path))
    coco = load(synthetic_json)
    coco["categories"] = [{"id": 7, "name": "kite"}, {"id": 2, "name": "ball"}, {"id": 5, "name": "cube"}]
    for anno in coco["annotations"]:
        anno["category_id"] = [2, 5, 7][anno["category_id"] - 1]
    json_file = tmp_path / "renumbered.json"
    json_file.write_text(json.dumps(coco))
    name = register_coco_dataset("renumbered", str(json_file), os.path.join(os.path.dirname(synthetic_json), "images"))
    loaded = []
    monkeypatch.setitem(DatasetCatalog.data, name, lambda: loaded.append(name))
    with pytest.raises(DatasetError, match=r"^Dataset 'renumbered' has 3 classes \(ball, cube, kite\) but the model "
                                           r"predicts 80: set model.detector.num_classes=3$"):
        check_datasets(name, 80)
    check_datasets([name], 3)
    assert loaded == [] and MetadataCatalog.get(name).thing_classes == ["ball", "cube", "kite"]


def test_missing_dataset_files_say_where_they_were_looked_for(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    coco_name = register_coco_dataset(
        "val_under_root", str(root / "coco/annotations/instances_val2017.json"), str(root / "coco/val2017")
    )
    voc_name = register_voc_dataset("voc_elsewhere", str(tmp_path / "VOC2007"), "test", 2007)
    with pytest.raises(DatasetError) as info:
        check_datasets([coco_name, voc_name, "synthetic_shapes_train"], 20)
    assert str(info.value) == (
        f"Dataset files do not exist: {root}/coco/annotations/instances_val2017.json of 'val_under_root'; "
        f"{root}/coco/val2017 of 'val_under_root'; {tmp_path}/VOC2007 of 'voc_elsewhere'. detectron2's builtin "
        f"datasets and the configs' Pascal VOC are read from $DETECTRON2_DATASETS (set to {root}), where these are "
        "expected: coco/annotations/instances_val2017.json, coco/val2017/. Put them there or set DETECTRON2_DATASETS "
        "to the folder that holds them, or register your own dataset with yolos_d2.data.register_coco_dataset "
        "(docs/your_data.md)"
    )
    with pytest.raises(DatasetError, match=r"VOC2007 of 'voc_elsewhere'\. Check the paths given when registering, or "):
        check_datasets(voc_name, 20)


def test_missing_builtin_coco_names_the_default_folder(tmp_path, monkeypatch):
    json_file = MetadataCatalog.get("coco_2017_val").json_file
    if os.path.isabs(json_file):
        pytest.skip("DETECTRON2_DATASETS was set when detectron2 registered COCO")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    with pytest.raises(DatasetError) as info:
        check_datasets(["coco_2017_train", "coco_2017_val"], 80)
    message = str(info.value)
    assert message.startswith(
        "Dataset files do not exist: datasets/coco/annotations/instances_train2017.json of 'coco_2017_train' "
        f"(looked for at {tmp_path}/datasets/coco/annotations/instances_train2017.json); "
    )
    assert (
        "$DETECTRON2_DATASETS (not set, so ./datasets), where these are expected: "
        "coco/annotations/instances_train2017.json, coco/train2017/, coco/annotations/instances_val2017.json, "
        "coco/val2017/. "
    ) in message


def write_varied_coco(root, string_ids: bool) -> str:
    """
    A COCO json (with an empty file for each image under ``root``) of what detectron2's
    load_coco_json handles in particular: image ids out of order and an image without
    annotations, categories out of order with gaps in their ids, polygons of which some are
    too short (and an annotation left with none), RLE masks compressed and not, keypoints, an
    empty segmentation and keys it does not keep.
    """
    ids = {image_id: f"photo-{image_id}" if string_ids else image_id for image_id in (5, 2, 9)}
    images = [{"id": ids[image_id], "file_name": f"{image_id}.jpg", "width": 64, "height": 48, "license": 3}
              for image_id in ids]
    for image in images:
        (root / image["file_name"]).touch()
    square = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]
    annotations = [
        {"segmentation": [square], "bbox": [10, 10, 20, 20], "category_id": 7},
        {"segmentation": [[1.0, 2.0, 3.0, 4.0], square, [5.0, 6.0, 7.0]], "bbox": [10, 10, 20, 20], "category_id": 2},
        {"segmentation": [[1.0, 2.0, 3.0, 4.0]], "bbox": [1, 2, 2, 2], "category_id": 2},  # left out
        {"segmentation": {"counts": [100, 20, 2952], "size": [48, 64]}, "bbox": [2, 4, 1, 20], "iscrowd": 1,
         "category_id": 7},
        {"segmentation": {"counts": "Xc03", "size": [48, 64]}, "bbox": [0, 0, 5, 5], "iscrowd": 1, "category_id": 2},
        {"keypoints": [12, 14, 2, 0, 0, 0, 20, 22, 1], "num_keypoints": 2, "bbox": [10, 12, 12, 12],
         "category_id": 7},
        {"segmentation": [], "bbox": [3.5, 4.25, 10, 8], "category_id": 7, "attributes": {"occluded": True}},
    ]
    image_of = [5, 5, 2, 5, 2, 2, 5]
    for number, (anno, image_id) in enumerate(zip(annotations, image_of), start=1):
        anno.update(id=f"a{number}" if string_ids else 100 + number, image_id=ids[image_id], area=12.5)
        anno.setdefault("iscrowd", 0)
    categories = [{"id": 7, "name": "kite", "supercategory": "toy"}, {"id": 2, "name": "ball"}]
    path = root / "varied.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path)


@pytest.mark.parametrize("dataset", ["synthetic shapes", "varied", "varied, string ids"])
def test_loading_gives_detectron2s_dataset_dicts_and_metadata_reading_the_file_once(
    tmp_path, monkeypatch, caplog, dataset
):
    if dataset == "synthetic shapes":
        json_file = generate_synthetic_shapes(SPEC, str(tmp_path))
        image_root = os.path.join(os.path.dirname(json_file), "images")
    else:
        json_file, image_root = write_varied_coco(tmp_path, string_ids="string" in dataset), str(tmp_path)
    expected = load_coco_json(json_file, image_root, f"{dataset} by detectron2", extra_annotation_keys=["id"])
    caplog.clear()
    parsed = []
    json_load = json.load
    monkeypatch.setattr(json, "load", lambda *args, **kwargs: parsed.append(args) or json_load(*args, **kwargs))
    with caplog.at_level(logging.WARNING, logger="yolos_d2"):
        loaded = validation.load_checked_coco_json(json_file, image_root, dataset)
    assert len(parsed) == 1
    assert repr(loaded) == repr(expected)  # equal, with the keys in the same order
    for key in ("thing_classes", "thing_dataset_id_to_contiguous_id"):
        assert MetadataCatalog.get(dataset).get(key) == MetadataCatalog.get(f"{dataset} by detectron2").get(key)
    if dataset != "synthetic shapes":
        assert MetadataCatalog.get(dataset).thing_classes == ["ball", "kite"]
        dropped = "a3" if "string" in dataset else 103
        assert caplog.messages == [
            (f"Dataset {dataset!r}: dropped 1 annotation whose segmentation has no polygon of 3 or more points: "
             f"ids {dropped}")
        ]


class Marker:
    """A value of the test's dataset dicts, found among the live objects by its type."""


@pytest.mark.parametrize("sequence", [list, tuple])
def test_the_training_loader_holds_its_dataset_dicts_serialised(tmp_path, sequence):
    """No dict of the dataset stays a Python object: data-loader workers would copy it on reading it."""
    box = {"bbox": [1, 1, 5, 5], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
    records = sequence(
        {"file_name": str(tmp_path / f"{i}.png"), "height": 8, "width": 8, "image_id": i, "annotations": [box],
         "marker": Marker()}
        for i in range(4)
    )
    loader = build_train_loader(records, mapper=dict, total_batch_size=2)
    del records
    gc.collect()
    assert not [item for item in gc.get_objects() if type(item) is Marker]
    batch = next(iter(loader))
    assert len(batch) == 2 and {record["image_id"] for record in batch} <= {0, 1, 2, 3}
    assert all(isinstance(record["marker"], Marker) for record in batch)
