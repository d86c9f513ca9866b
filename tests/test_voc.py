"""Pascal VOC evaluation through configs/common/voc_data.py on a tiny VOC-format dataset."""
import json
import os
import shutil

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_pascal_voc
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, Instances

from yolos_d2.data import SYNTHETIC_SHAPES_CLASSES
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec, generate_synthetic_shapes, split_files

from _helpers import CONFIG_DIR

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
    if name not in DatasetCatalog.list():
        register_pascal_voc(name, voc, "test", 2007, class_names=list(SYNTHETIC_SHAPES_CLASSES))
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, "common", "voc_data.py"))
    assert cfg.dataloader.test.dataset.names == "voc_2007_test"
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
