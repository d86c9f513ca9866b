"""
End-to-end inference parity with the original YOLOS: image files in, detections out.

For the generated images of ``fixtures/images/`` and random weights, ``YOLOSPredictor`` with the
shipped paper configs (YOLOS-Ti; YOLOS-S with mid-layer position embeddings; both cut to 2
blocks) must give what ``record_original.py`` recorded from the original code: the same resized
input sizes, and per ``[DET]`` token the same label, the score within 1e-4 and the box within
0.05 pixel (unclipped, as the original's ``PostProcess`` returns it).
"""
import os
import types

import numpy as np
import pytest
import torch
from PIL import Image

from record_original import FIXTURES, REPO, load_recorded, recorded_weights
from yolos_d2.config import load_config
from yolos_d2.inference import YOLOSPredictor

SCORE_ATOL = 1e-4
BOX_ATOL = 0.05  # pixels


def read_image(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a fixture image, as the tools read image files."""
    with Image.open(os.path.join(FIXTURES, "images", name)) as image:
        return np.asarray(image.convert("RGB"))


def as_input(resized: np.ndarray, size) -> dict:
    """A model input: ``resized`` (H', W', 3) uint8 RGB, boxes returned in ``size`` (height, width)."""
    image = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    return {"image": image, "height": size[0], "width": size[1]}


@pytest.fixture(scope="module", params=["yolos_ti", "yolos_s"])
def run(request, tmp_path_factory):
    """The recorded numbers of one setup, and yolos_d2's for the same images and weights."""
    recorded = load_recorded(f"inference_{request.param}")
    weights = recorded_weights(recorded)
    checkpoint = tmp_path_factory.mktemp(request.param) / "random.pth"
    torch.save({"model": weights}, checkpoint)
    overrides = [*recorded["overrides"], "train.device=cpu", f"train.init_checkpoint={checkpoint}"]
    predictor = YOLOSPredictor(load_config(os.path.join(REPO, recorded["config"]), overrides))
    assert set(predictor.model.state_dict()) == set(weights), "the model's parameters are not the recorded ones"

    images = {name: read_image(name) for name in recorded["images"]}
    resized = {name: predictor.resize(image) for name, image in images.items()}
    predictions = {name: predictor(image) for name, image in images.items()}

    # The padded batch, and the size of the tensor the detector gets for it.
    batch = [as_input(resized[name], images[name].shape[:2]) for name in recorded["batch"]["images"]]
    seen = types.SimpleNamespace()
    predictor.model.detector.register_forward_pre_hook(lambda module, args: setattr(seen, "size", args[0].shape[-2:]))
    batch_results = predictor.model(batch)
    return types.SimpleNamespace(
        recorded=recorded,
        resized={name: image.shape[:2] for name, image in resized.items()},
        predictions=predictions,
        batch=[result["instances"] for result in batch_results],
        batch_input_size=seen.size,
    )


def test_resized_input_sizes_are_the_originals(run):
    for name, expected in run.recorded["images"].items():
        assert list(run.resized[name]) == expected["input_size"], name


def test_labels_and_scores_are_the_originals(run):
    for name, expected in run.recorded["images"].items():
        ours = run.predictions[name]
        assert torch.equal(ours.pred_classes, expected["labels"]), name
        torch.testing.assert_close(ours.scores, expected["scores"], atol=SCORE_ATOL, rtol=0, msg=name)


def test_boxes_are_the_originals_unclipped(run):
    for name, expected in run.recorded["images"].items():
        ours = run.predictions[name].pred_boxes.tensor
        torch.testing.assert_close(ours, expected["boxes"], atol=BOX_ATOL, rtol=0, msg=name)


def test_zero_padded_batch_gives_the_originals(run):
    expected = run.recorded["batch"]
    assert list(run.batch_input_size) == expected["input_size"]
    for i, ours in enumerate(run.batch):
        assert torch.equal(ours.pred_classes, expected["labels"][i])
        torch.testing.assert_close(ours.scores, expected["scores"][i], atol=SCORE_ATOL, rtol=0)
        torch.testing.assert_close(ours.pred_boxes.tensor, expected["boxes"][i], atol=BOX_ATOL, rtol=0)
