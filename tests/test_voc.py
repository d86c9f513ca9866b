"""Pascal VOC evaluation through configs/common/voc_data.py on a tiny VOC-format dataset."""
import json
import logging
import os
import shutil

import pytest
import torch
from PIL import Image
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import BoxMode, Boxes, Instances

from yolos_d2.data import SYNTHETIC_SHAPES_CLASSES, register_voc_dataset
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec, generate_synthetic_shapes, split_files

from conftest import CONFIG_DIR

_OBJECT_XML = (
    "<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
    "<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
)


def write_voc_split(root: str) -> str:
    """Lay out 12 synthetic images as a VOC2007 'test' split (1-based inclusive pixel boxes)."""
    spec = SyntheticShapesSpec(12, seed=5)
    generate_synthetic_shapes(spec, root)
    json_file, image_dir = split_files(spec, root)
    with open(json_file) as f:
        coco = json.load(f)
    voc = os.path.join(root, "VOC2007")
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    ids = []
    for image in coco["images"]:
        file_id = os.path.splitext(image["file_name"])[0]
        ids.append(file_id)
        shutil.copy(os.path.join(image_dir, image["file_name"]), os.path.join(voc, "JPEGImages", f"{file_id}.jpg"))
        objects = "".join(
            _OBJECT_XML.format(
                name=SYNTHETIC_SHAPES_CLASSES[a["category_id"] - 1],
                x0=a["bbox"][0] + 1,
                y0=a["bbox"][1] + 1,
                x1=a["bbox"][0] + a["bbox"][2],
                y1=a["bbox"][1] + a["bbox"][3],
            )
            for a in coco["annotations"]
            if a["image_id"] == image["id"]
        )
        size = f"<size><width>{image['width']}</width><height>{image['height']}</height><depth>3</depth></size>"
        with open(os.path.join(voc, "Annotations", f"{file_id}.xml"), "w") as f:
            f.write(f"<annotation>{size}{objects}</annotation>")
    with open(os.path.join(voc, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("\n".join(ids))
    return voc


class BoxesFromDataset(torch.nn.Module):
    """Predicts each image's ground-truth boxes, shifted by ``shift`` pixels, with score 1."""

    def __init__(self, dataset_name: str, shift: float):
        super().__init__()
        self.annotations = {d["image_id"]: d["annotations"] for d in DatasetCatalog.get(dataset_name)}
        self.shift = shift

    def forward(self, batched_inputs):
        outputs = []
        for x in batched_inputs:
            annotations = self.annotations[x["image_id"]]
            instances = Instances((x["height"], x["width"]))
            instances.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in annotations]) + self.shift)
            instances.scores = torch.ones(len(annotations))
            instances.pred_classes = torch.tensor([a["category_id"] for a in annotations])
            outputs.append({"instances": instances})
        return outputs


@pytest.fixture(scope="module")
def voc_config(tmp_path_factory):
    voc = write_voc_split(str(tmp_path_factory.mktemp("voc")))
    name = "tiny_voc_2007_test"
    register_voc_dataset(name, voc, "test", 2007, class_names=list(SYNTHETIC_SHAPES_CLASSES))
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, "common", "voc_data.py"))
    # The test-time resize follows the model's patch size.
    cfg.model = LazyConfig.load(os.path.join(CONFIG_DIR, "common", "yolos_model.py")).model
    assert cfg.dataloader.test.dataset.names == "voc_2007_test_checked"
    cfg.dataloader.test.dataset.names = name
    cfg.dataloader.test.num_workers = 0
    return cfg


@pytest.mark.parametrize("shift, expected_ap50", [(0.0, 100.0), (30.0, 0.0)])
def test_voc_evaluator_scores_predictions(voc_config, shift, expected_ap50):
    model = BoxesFromDataset(voc_config.dataloader.test.dataset.names, shift)
    results = inference_on_dataset(
        model, instantiate(voc_config.dataloader.test), instantiate(voc_config.dataloader.evaluator)
    )
    assert results["bbox"]["AP50"] == pytest.approx(expected_ap50, abs=1e-6)


_GOOD_XML = """<annotation>
  <size><width>48</width><height>32</height><depth>3</depth></size>
  <object>
    <name>ellipse</name><difficult>0</difficult>
    <bndbox><xmin>3</xmin><ymin>5</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>
  </object>
  <object>
    <name>triangle</name><difficult>1</difficult>
    <bndbox><xmin>11</xmin><ymin>1</ymin><xmax>60</xmax><ymax>32</ymax></bndbox>
  </object>
</annotation>
"""


def write_voc(root, xml_by_id, split_ids=None):
    """A VOC folder with a 48x32 JPEG and the given XML text per file id, and split 'train' listing ``split_ids``."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for file_id, xml in xml_by_id.items():
        Image.new("RGB", (48, 32), (90, 120, 150)).save(root / "JPEGImages" / f"{file_id}.jpg")
        (root / "Annotations" / f"{file_id}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(split_ids or xml_by_id) + "\n")
    return str(root)


def load_voc(tmp_path, xml_by_id, split_ids=None):
    name = register_voc_dataset(f"voc_{tmp_path.name}", write_voc(tmp_path, xml_by_id, split_ids), "train", 2007,
                                class_names=list(SYNTHETIC_SHAPES_CLASSES))
    return DatasetCatalog.get(name)


def test_voc_boxes_are_loaded_as_detectron2_does_and_clipped(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        (record,) = load_voc(tmp_path, {"000007": _GOOD_XML})
    assert (record["image_id"], record["height"], record["width"]) == ("000007", 32, 48)
    assert record["file_name"] == str(tmp_path / "JPEGImages" / "000007.jpg")
    # 1-based inclusive pixel indices to 0-based coordinates; the second box is clipped at x = 48.
    assert [(a["category_id"], a["bbox"], a["bbox_mode"]) for a in record["annotations"]] == [
        (1, [2.0, 4.0, 20.0, 30.0], BoxMode.XYXY_ABS),
        (2, [10.0, 0.0, 48.0, 32.0], BoxMode.XYXY_ABS),
    ]
    assert "clipped 1 of 2 boxes that extend past their image" in caplog.text
    assert f"Dataset 'voc_{tmp_path.name}': 1 image, 2 annotations: 2 boxes to train on" in caplog.text


def test_malformed_voc_xml_names_the_file_and_line(tmp_path):
    broken = _GOOD_XML.replace("<name>triangle</name>", "<name>triangle & co</name>")  # on line 8
    with pytest.raises(ValueError) as info:
        load_voc(tmp_path, {"000001": _GOOD_XML, "000002": broken})
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'Annotations' / '000002.xml'} is not valid XML: ")
    assert message.endswith("not well-formed (invalid token) at line 8, column 20")  # as expat counts


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("<width>48</width>", "", "000003.xml: no <size>/<width>"),
        ("<height>32</height>", "<height>3.5</height>",
         "000003.xml: <size>/<height> is '3.5'; expected a positive whole number of pixels"),
        ("<height>32</height>", "<height>²</height>",
         "000003.xml: <size>/<height> is '²'; expected a positive whole number of pixels"),
        ("<name>triangle</name>", "", "000003.xml: object 2 has no <name>"),
        ("<xmin>3</xmin>", "", "000003.xml: object 1 has no <bndbox>/<xmin>"),
        ("<ymax>30</ymax>", "<ymax>thirty</ymax>",
         "000003.xml: object 1 has <bndbox>/<ymax> 'thirty'; expected a finite number"),
        ("<ymax>30</ymax>", "<ymax>nan</ymax>",
         "000003.xml: object 1 has <bndbox>/<ymax> 'nan'; expected a finite number"),
        ("<name>ellipse</name>", "<name>elipse</name>",
         "000003.xml: object 1 has class 'elipse', which is not one of the dataset's 3 classes: rectangle, ellipse, "
         "triangle"),
    ],
)
def test_missing_or_bad_voc_elements_are_named(tmp_path, old, new, expected):
    with pytest.raises(ValueError) as info:
        load_voc(tmp_path, {"000003": _GOOD_XML.replace(old, new)})
    assert str(info.value) == str(tmp_path / "Annotations" / expected)


def test_voc_split_listing_an_image_twice_is_named(tmp_path):
    with pytest.raises(ValueError) as info:
        load_voc(tmp_path, {"000001": _GOOD_XML, "000002": _GOOD_XML}, split_ids=["000001", "000002", "000001"])
    assert str(info.value) == (
        f"{tmp_path / 'ImageSets' / 'Main' / 'train.txt'} lists 1 image more than once: 000001"
    )
