"""
yolos-analyze and its computations (yolos_d2/evaluation/analysis.py): the errors in the manner of
TIDE on a hand-built case, the precision-recall curves and APs against pycocotools, the tool end
to end on a synthetic dataset (from saved detections and from a model), and its page in a browser.
"""
import contextlib
import copy
import io
import json
import os
import re
import shutil
import subprocess
import types
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.evaluation import PascalVOCDetectionEvaluator
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import synthetic_splits, write_quickstart_variant
from yolos_d2.checkpoint import YOLOSCheckpointer
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec
from yolos_d2.evaluation import analysis
from yolos_d2.tools import analyze

# pycocotools divides by (tp + fp + np.spacing(1)), faster-coco-eval by (tp + fp): their
# precisions differ by at most a rounding of float64, relatively.
PRECISION_RTOL = 2 * np.finfo(np.float64).eps


def pycocotools_evaluation(coco: dict, results: list) -> COCOeval:
    """pycocotools' evaluation of the boxes of ``results`` against ``coco``, accumulated and summarised."""
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = copy.deepcopy(coco)
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(copy.deepcopy(results)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def detection(image_id, category_id, box, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}


def one_error_of_each_kind():
    """
    One 100x100 image: cats A and F, dogs B, D and E (10x10 boxes); cat detections: one on A, its
    duplicate, one on the dog B (classification), one a third over the dog E (both); dog
    detections: one a third over D (localisation), one on nothing (background), one on E; F is missed.
    """
    corners = {"A": (0, 0), "B": (50, 50), "D": (0, 50), "E": (80, 0), "F": (50, 20)}
    boxes = {name: [x, y, 10, 10] for name, (x, y) in corners.items()}
    classes = {"A": 1, "B": 2, "D": 2, "E": 2, "F": 1}
    coco = {
        "images": [{"id": 7, "file_name": "7.png", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": i + 1, "image_id": 7, "category_id": classes[name], "bbox": box, "area": 100.0, "iscrowd": 0}
            for i, (name, box) in enumerate(boxes.items())
        ],
    }
    results = [
        detection(7, 1, [0, 0, 10, 10], 0.9),  # finds A
        detection(7, 1, [0, 0, 10, 10], 0.8),  # duplicate of A
        detection(7, 1, [50, 50, 10, 10], 0.7),  # classification: on the dog B
        detection(7, 2, [5, 50, 10, 10], 0.6),  # localisation: IoU 1/3 with the dog D
        detection(7, 1, [85, 0, 10, 10], 0.5),  # both: IoU 1/3 with the dog E
        detection(7, 2, [30, 80, 5, 5], 0.4),  # background
        detection(7, 2, [80, 0, 10, 10], 0.95),  # finds E
    ]
    return coco, results


def test_one_error_of_each_kind_is_found_and_each_fix_gains_what_it_should():
    coco, results = one_error_of_each_kind()
    ground_truth = analysis.read_ground_truth(coco)
    detections = analysis.read_detections(results, ground_truth, "results.json")
    errors = analysis.analyse_errors(ground_truth, detections)
    summary = analysis.summarise_errors(ground_truth, detections, errors)

    assert summary.counts == {error: 1 for error in analysis.ERROR_TYPES}
    assert [analysis.Outcome(o).name for o in errors.outcome] == [
        "TRUE_POSITIVE", "DUPLICATE", "CLASSIFICATION", "LOCALISATION", "BOTH", "BACKGROUND", "TRUE_POSITIVE"
    ]
    assert errors.target[2] == 1 and errors.target[3] == 2  # B and D
    assert errors.missed.tolist() == [False, False, False, False, True]  # F; B and D were aimed at
    # The cat's AP: recall 1/2 at precision 1 (recall thresholds 0 to 0.5: 51 of 101); the dog's:
    # recall 1/3 at precision 1 (34 of 101).
    ap50 = (51 / 101 + 34 / 101) / 2
    assert summary.ap50 == pytest.approx(ap50, rel=PRECISION_RTOL)
    assert summary.ap50 == pytest.approx(pycocotools_evaluation(coco, results).stats[1], rel=PRECISION_RTOL)
    # Without F, the cat's AP is 1.
    assert summary.delta_ap50["missed"] == pytest.approx((1 + 34 / 101) / 2 - ap50, rel=PRECISION_RTOL)
    # Relabelled a dog, the detection on B finds it: the dog's recall 2/3 at precision 1 (67 of 101).
    assert summary.delta_ap50["classification"] == pytest.approx((51 / 101 + 67 / 101) / 2 - ap50, rel=PRECISION_RTOL)
    assert all(delta >= 0 for delta in summary.delta_ap50.values())
    assert ap50 + summary.delta_ap50["all"] == pytest.approx(1, rel=PRECISION_RTOL)


def test_confusion_matrix_of_the_hand_built_case():
    coco, results = one_error_of_each_kind()
    ground_truth = analysis.read_ground_truth(coco)
    detections = analysis.read_detections(results, ground_truth, "results.json")
    # Classes cat, dog, background; the localisation and both errors overlap by IoU 1/3 only.
    expected = [
        [1, 0, 1],  # A found as a cat; F missed
        [1, 1, 1],  # B taken for a cat; E found; D missed
        [2, 2, 0],  # the duplicate and the both error, the localisation and background errors
    ]
    assert analysis.confusion_matrix(ground_truth, detections, score_threshold=0).tolist() == expected
    # From 0.65: the detections on A (and its duplicate), B and E.
    assert analysis.confusion_matrix(ground_truth, detections, score_threshold=0.65).tolist() == [
        [1, 0, 1], [1, 1, 1], [1, 0, 0]
    ]


def random_case(seed: int):
    """30 images, 4 categories (one without objects), some crowds; detections near the objects and elsewhere."""
    rng = np.random.default_rng(seed)
    coco = {
        "images": [{"id": 3 * i + 5, "file_name": f"{i}.png", "width": 100, "height": 100} for i in range(30)],
        "categories": [{"id": c, "name": f"class {c}"} for c in (1, 3, 7, 9)],
        "annotations": [],
    }
    results = []
    for image in coco["images"]:
        for _ in range(rng.integers(0, 5)):
            x, y, w, h = *rng.uniform(0, 60, 2), *rng.uniform(5, 40, 2)
            category = int(rng.choice([1, 3, 7]))
            coco["annotations"].append(
                {"id": len(coco["annotations"]) + 1, "image_id": image["id"], "category_id": category,
                 "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.1)}
            )
            for _ in range(rng.integers(0, 4)):
                guess = int(rng.choice([1, 3, 7, 9])) if rng.random() < 0.3 else category
                box = [x + rng.normal(0, 3), y + rng.normal(0, 3), w * rng.uniform(0.7, 1.3), h]
                results.append(detection(image["id"], guess, box, float(rng.random())))
        for _ in range(rng.integers(0, 3)):
            box = [*rng.uniform(0, 50, 2), *rng.uniform(5, 50, 2)]
            results.append(detection(image["id"], int(rng.choice([1, 3, 7])), box, float(rng.random())))
    return coco, results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_curves_and_aps_are_pycocotools(seed):
    coco, results = random_case(seed)
    expected = pycocotools_evaluation(coco, results)
    ground_truth = analysis.read_ground_truth(coco)
    detections = analysis.read_detections(results, ground_truth, "results.json")
    precision = analysis.coco_precision(ground_truth, detections)
    for t, iou in enumerate(analysis.IOU_THRESHOLDS):
        if not np.isclose(iou, [0.5, 0.75]).any():
            continue
        per_class, overall = analysis.precision_recall_curves(precision, iou)
        theirs = expected.eval["precision"][t, :, :, 0, -1].T  # (K, R), -1 for the class without objects
        assert np.isnan(per_class[3]).all() and (theirs[3] == -1).all()
        np.testing.assert_allclose(per_class[:3], theirs[:3], rtol=PRECISION_RTOL, atol=0)
        np.testing.assert_allclose(overall, theirs[:3].mean(axis=0), rtol=PRECISION_RTOL, atol=1e-15)
    summary = analysis.average_precisions(precision)
    np.testing.assert_allclose([summary["AP"], summary["AP50"], summary["AP75"]], expected.stats[:3], rtol=1e-12)
    class_ap50 = analysis.class_average_precisions(precision)["AP50"]
    np.testing.assert_allclose(class_ap50[:3], expected.eval["precision"][0, :, :3, 0, -1].mean(axis=0), rtol=1e-12)
    errors = analysis.analyse_errors(ground_truth, detections)
    # The matching at IoU 0.5 that the errors start from gives pycocotools' AP50, to the last bits.
    assert analysis.summarise_errors(ground_truth, detections, errors).ap50 == pytest.approx(
        expected.stats[1], rel=PRECISION_RTOL
    )


def test_detections_beyond_100_per_image_and_class_are_left_out_as_coco_does():
    coco, _ = one_error_of_each_kind()
    scores = np.linspace(0.01, 0.99, 120)
    results = [detection(7, 1, [0, 0, 10, 10], float(score)) for score in scores]
    detections = analysis.read_detections(results, analysis.read_ground_truth(coco), "results.json")
    assert sorted(detections.scores.tolist()) == sorted(scores[-analysis.MAX_DETECTIONS:].tolist())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.__setitem__(0, [1, 2]), "detection 0 is list, not an object"),
        (lambda r: r[1].pop("score"), "detection 1 has no score"),
        (lambda r: r[2].update(image_id=8), "detection 2 has image_id 8, which is not an image of the dataset"),
        (lambda r: r[3].update(category_id=5), "detection 3 has category_id 5, which is not a category"),
        (lambda r: r[4].update(bbox=[0, 0, -1, 3]), "detection 4 has bbox [0, 0, -1, 3]"),
        (lambda r: r[5].update(score=float("nan")), "detection 5 has score nan"),
    ],
)
def test_detections_that_are_not_coco_results_are_refused(change, message):
    coco, results = one_error_of_each_kind()
    change(results)
    with pytest.raises(ValueError, match=re.escape(f"results.json: {message}")):
        analysis.read_detections(results, analysis.read_ground_truth(coco), "results.json")


# ---------------------------------------------------------------------------------------------
# The tool


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """
    A config whose test dataset is 6 generated 48x48 images, a 1-block quick-start model with random
    weights, and detections near the dataset's objects (some misplaced or mislabelled) in COCO's
    results format.
    """
    root = tmp_path_factory.mktemp("analysis")
    splits = synthetic_splits(str(root), {"analysis_tiny": SyntheticShapesSpec(6, seed=21, image_size=48)})
    json_file, image_dir = splits["analysis_tiny"]
    config = write_quickstart_variant(
        root / "tiny.py",
        f"""
        model.detector.backbone.update(depth=1, num_det_tokens=4)
        dataloader.test.dataset.names = register_coco_dataset("analysis_tiny", {json_file!r}, {image_dir!r})
        train.device = "cpu"
        """,
    )
    torch.manual_seed(0)
    YOLOSCheckpointer(instantiate(LazyConfig.load(config).model), str(root)).save("tiny")
    with open(json_file) as f:
        coco = json.load(f)
    rng = np.random.default_rng(0)
    results = []
    for annotation in coco["annotations"]:
        x, y, w, h = annotation["bbox"]
        category = annotation["category_id"] if rng.random() < 0.7 else 1 + annotation["category_id"] % 3
        box = [x + rng.normal(0, w / 4), y + rng.normal(0, h / 4), w, h]
        results.append(detection(annotation["image_id"], category, box, float(rng.uniform(0.3, 1))))
    results_file = root / "coco_instances_results.json"
    results_file.write_text(json.dumps(results))
    return types.SimpleNamespace(
        config=config, weights=str(root / "tiny.pth"), results=str(results_file), coco=coco, image_dir=image_dir
    )


class _References(HTMLParser):
    """The files a page refers to: its images' src and its links' href."""

    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])


def page_references(folder):
    parser = _References()
    with open(os.path.join(folder, analyze.INDEX_FILE), encoding="utf-8") as f:
        parser.feed(f.read())
    return parser


def assert_complete(output, num_images, model_ran):
    """Every file of the analysis is in ``output``, and the page refers only to files there, relatively."""
    written = {os.path.relpath(os.path.join(d, f), output) for d, _, files in os.walk(output) for f in files}
    expected = analyze.output_files(num_images, model_ran)
    assert written == set(expected), written ^ set(expected)
    references = page_references(output)
    assert len(references.images) == len(analyze.FIGURES) + num_images
    for reference in references.images + references.links:
        assert not os.path.isabs(reference) and ":" not in reference
        assert os.path.isfile(os.path.join(output, reference)), reference


def test_analyze_writes_every_table_figure_and_a_page_referring_to_them(tiny, tmp_path):
    output = str(tmp_path / "analysis")
    args = ["--config-file", tiny.config, "--results", tiny.results, "--output", output, "--num-images", "3"]
    assert analyze.main(args + ["--score-threshold", "0.3"]) == 0
    assert_complete(output, num_images=3, model_ran=False)
    with open(os.path.join(output, "class_ap.csv")) as f:
        rows = f.read().splitlines()
    assert rows[0] == "class,AP,AP50,AP75,objects,detections"
    assert [row.split(",")[0] for row in rows[1:]] == [c["name"] for c in tiny.coco["categories"]]
    objects = [int(row.split(",")[4]) for row in rows[1:]]
    assert sum(objects) == len(tiny.coco["annotations"])
    with open(os.path.join(output, "errors.csv")) as f:
        errors = {row.split(",")[0]: row.split(",")[1:] for row in f.read().splitlines()[1:]}
    assert list(errors) == [*analysis.ERROR_TYPES, "all"]
    with open(os.path.join(output, "confusion_matrix.csv")) as f:
        matrix = np.array([row.split(",")[1:] for row in f.read().splitlines()[1:]], dtype=int)
    # Every object is in a row of its class, paired or in the background column.
    assert matrix[:-1].sum() == sum(objects)


def test_analyze_runs_the_model_on_the_test_dataset(tiny, tmp_path):
    output = str(tmp_path / "analysis")
    args = ["--config-file", tiny.config, "--weights", tiny.weights, "--output", output, "--num-images", "2"]
    assert analyze.main(args + ["--score-threshold", "0"]) == 0
    assert_complete(output, num_images=2, model_ran=True)
    with open(os.path.join(output, analyze.RESULTS_FILE)) as f:
        results = json.load(f)
    # One detection per [DET] token and image.
    assert len(results) == 4 * len(tiny.coco["images"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--weights", "model.pth"], "give --weights (to run the model) or --results (its detections), not both"),
        (["--num-images", "-1"], "--num-images: must be at least 0, got -1"),
        (["--score-threshold", "2"], "--score-threshold: must be from 0 to 1, got 2"),
        (["dataloader.test.dataset.names=[analysis_tiny,analysis_tiny]"], "lists 2 datasets: analyse one at a time"),
    ],
)
def test_analyze_refuses_arguments_that_cannot_work_before_writing(tiny, tmp_path, capsys, extra, message):
    output = tmp_path / "analysis"
    with pytest.raises(SystemExit) as exit_info:
        analyze.main(["--config-file", tiny.config, "--results", tiny.results, "--output", str(output), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_analyze_runs_the_model_only_with_a_coco_evaluator(tiny):
    cfg = LazyConfig.load(tiny.config)
    cfg.dataloader.evaluator = L(PascalVOCDetectionEvaluator)(dataset_name="analysis_tiny")
    with pytest.raises(ValueError, match="dataloader.evaluator is a PascalVOCDetectionEvaluator, which writes no"):
        analyze.coco_evaluator(cfg, "unused")


def test_analyze_refuses_results_of_another_dataset_naming_the_file(tiny, tmp_path, capsys):
    results = tmp_path / "other.json"
    results.write_text(json.dumps([detection(10**6, 1, [0, 0, 5, 5], 0.5)]))
    output = tmp_path / "analysis"
    with pytest.raises(SystemExit):
        analyze.main(["--config-file", tiny.config, "--results", str(results), "--output", str(output)])
    message = f"{results}: detection 0 has image_id 1000000, which is not an image of the dataset"
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_analyze_refuses_to_write_among_the_dataset_images(tiny, capsys):
    output = os.path.join(tiny.image_dir, "analysis")
    with pytest.raises(SystemExit):
        analyze.main(["--config-file", tiny.config, "--results", tiny.results, "--output", output])
    assert "lies inside the input folder" in capsys.readouterr().err
    assert not os.path.exists(output)


def test_analyze_on_a_full_disk_names_the_file_and_leaves_no_partial_file(tiny, tmp_path, caplog, no_room_on_disk):
    output = tmp_path / "analysis"
    assert analyze.main(["--config-file", tiny.config, "--results", tiny.results, "--output", str(output)]) == 1
    assert f"Could not write {output / 'class_ap.md'}: ENOSPC" in caplog.text
    assert not [name for _, _, files in os.walk(output) for name in files]


# The page, once loaded, writes how many of its images loaded, and the sources of the others.
_IMAGE_CHECK = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((image) => !(image.complete && image.naturalWidth > 0));
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken", broken.map((image) => image.getAttribute("src")).join(" "));
});
</script>
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (Debian: apt-get install chromium)")
def test_the_page_shows_every_image_in_a_browser(tiny, tmp_path):
    output = tmp_path / "analysis"
    args = ["--config-file", tiny.config, "--results", tiny.results, "--output", str(output), "--num-images", "2"]
    assert analyze.main(args + ["--score-threshold", "0.3"]) == 0
    # A copy of the page beside it (the same relative paths) with the check added.
    page = (output / analyze.INDEX_FILE).read_text(encoding="utf-8")
    checked = output / "checked.html"
    checked.write_text(page.replace("</body>", _IMAGE_CHECK + "</body>"), encoding="utf-8")
    command = [
        "chromium", "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
        "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    images = re.search(r'data-images="(\d+)"', dom)
    assert images, f"the page's check did not run:\n{dom[:2000]}"
    assert int(images.group(1)) == len(analyze.FIGURES) + 2
    assert re.search(r'data-broken="([^"]*)"', dom).group(1) == ""
