"""The DETR augmentation of yolos_d2.data in detectron2's DatasetMapper: sizes, boxes (also random ones), arguments."""
import itertools
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from yolos_d2.data import (
    DETRResizeShortestEdge,
    EvalResize,
    RandomSelect,
    detr_test_augmentations,
    detr_train_augmentations,
)
from yolos_d2.data.validation import clip_boxes_to_images

SCALES = list(range(480, 801, 16))
MAX_SIZE = 800 * 1333 // 800
BACKGROUND = (120, 120, 120)
# class: (colour, XYXY pixels drawn in a 300x420 image)
OBJECTS = {
    0: ((230, 40, 40), (30, 40, 150, 200)),
    1: ((40, 200, 60), (200, 60, 280, 120)),
    2: ((40, 60, 230), (360, 150, 420, 260)),  # touches the right border
    3: ((230, 210, 40), (10, 265, 40, 292)),  # small, often cropped out
}
CROWD_CLASS, EMPTY_CLASS = 5, 6


def detr_size(h, w, size, max_size, mod=16):
    """
    The original YOLOS's get_size_with_aspect_ratio((w, h), size, max_size), returning (h, w):
    DETR's, with each side then floored to a multiple of 16 (``mod=1``: DETR's own).
    """
    if max_size is not None:
        min_original_size = float(min((w, h)))
        max_original_size = float(max((w, h)))
        if max_original_size / min_original_size * size > max_size:
            size = int(round(max_size * min_original_size / max_original_size))
    if (w <= h and w == size) or (h <= w and h == size):
        return (h - h % mod, w - w % mod)
    if w < h:
        ow = size
        oh = int(size * h / w)
    else:
        oh = size
        ow = int(size * w / h)
    return (oh - oh % mod, ow - ow % mod)


def test_resize_examples():
    # Worked by hand: 640/480 * 512 = 682.7 -> 682 (DETR), floored to 42 patches of 16 -> 672.
    assert DETRResizeShortestEdge.get_output_shape(480, 640, 512, 853, 16) == (512, 672)
    assert DETRResizeShortestEdge.get_output_shape(480, 640, 512, 853) == (512, 682)  # DETR's own rounding
    assert T.ResizeShortestEdge.get_output_shape(480, 640, 512, 853) == (512, 683)  # what DETR's differs from
    # Capped: round(853 * 200 / 1000) = 171 short side, 855 long; floored: 160 x 848.
    assert DETRResizeShortestEdge.get_output_shape(200, 1000, 512, 853, 16) == (160, 848)
    assert DETRResizeShortestEdge.get_output_shape(1000, 200, 512, 853, 16) == (848, 160)
    assert DETRResizeShortestEdge.get_output_shape(480, 1280, 800, 1333) == (500, 1333)
    # Already at the size: not resized by DETR, still floored to whole patches by YOLOS.
    assert DETRResizeShortestEdge.get_output_shape(512, 700, 512, None) == (512, 700)
    assert DETRResizeShortestEdge.get_output_shape(512, 700, 512, None, 16) == (512, 688)
    # A side never floors to nothing: short side round(853 * 10 / 2000) = 4 -> 16; long 4 * 200 = 800.
    assert DETRResizeShortestEdge.get_output_shape(10, 2000, 512, 853, 16) == (16, 800)


@pytest.mark.parametrize("max_size", [None, 853, 1013, 1333])
@pytest.mark.parametrize("mod", [1, 16])
def test_resize_arithmetic_is_the_originals(max_size, mod):
    sides = [200, 240, 300, 333, 375, 427, 480, 500, 512, 612, 640, 720, 1000, 1280]
    for (h, w), size in itertools.product(itertools.product(sides, sides), [256, 400, 512, 608, 800]):
        expected = detr_size(h, w, size, max_size, mod)
        assert DETRResizeShortestEdge.get_output_shape(h, w, size, max_size, mod) == expected


def test_resize_arithmetic_on_tensor_sizes_gives_tensors_of_the_same_sides():
    # As while exporting the whole pipeline. 1x2 capped: 853 * 1 / 2 = 426.5 rounds half to even.
    for h, w, size, max_size in [(480, 640, 512, 853), (1000, 200, 512, 853), (512, 700, 512, None), (1, 2, 512, 853)]:
        expected = detr_size(h, w, size, max_size, 16)
        sides = DETRResizeShortestEdge.get_output_shape(torch.tensor(h), torch.tensor(w), size, max_size, 16)
        assert all(side.dtype == torch.int64 and side.dim() == 0 for side in sides)
        assert tuple(int(side) for side in sides) == expected
    assert DETRResizeShortestEdge.get_output_shape(1, 2, 512, 853) == (426, 852)


def test_resize_transform_has_the_chosen_size():
    image = np.zeros((300, 420, 3), dtype=np.uint8)
    np.random.seed(0)
    sizes = {DETRResizeShortestEdge([480, 800], 1333).get_transform(image).apply_image(image).shape for _ in range(20)}
    # 420/300 * 480 = 672 (already whole patches); 420/300 * 800 = 1120.
    assert sizes == {(480, 672, 3), (800, 1120, 3)}
    sizes = {DETRResizeShortestEdge([500], 1333).get_transform(image).apply_image(image).shape for _ in range(3)}
    assert sizes == {(496, 688, 3)}  # 500 x 700, floored to patches


def _dataset_dict(tmp_path, h=300, w=420):
    image = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
    annotations = []
    for cls, (colour, (x1, y1, x2, y2)) in OBJECTS.items():
        image[y1:y2, x1:x2] = colour
        # Integer boxes, as a synthetic dataset gives. The blue one runs past the image: it is clipped.
        bbox = [x1, y1, x2 - x1 + (30 if cls == 2 else 0), y2 - y1]
        annotations.append({"bbox": bbox, "bbox_mode": BoxMode.XYWH_ABS, "category_id": cls, "iscrowd": 0})
    annotations += [
        {"bbox": [200, 180, 100, 80], "bbox_mode": BoxMode.XYWH_ABS, "category_id": CROWD_CLASS, "iscrowd": 1},
        {"bbox": [100, 250, 0, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": EMPTY_CLASS, "iscrowd": 0},
    ]
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    return {"file_name": str(path), "height": h, "width": w, "image_id": 1, "annotations": annotations}


def _colour_mask(image, colour, tolerance=30):
    """(H, W) bool: pixels of ``image`` (H, W, 3) within ``tolerance`` of ``colour`` in every channel."""
    return (np.abs(image.astype(np.int32) - np.array(colour)) <= tolerance).all(axis=2)


def _check_boxes_on_objects(image, instances):
    """Each box covers its object's colour and nothing of it lies outside; absent objects are invisible."""
    classes = instances.gt_classes.tolist()
    assert len(set(classes)) == len(classes) and set(classes) <= set(OBJECTS)
    for cls, (colour, _) in OBJECTS.items():
        mask = _colour_mask(image, colour)
        if cls not in classes:
            assert not mask.any(), f"class {cls} is visible but was dropped"
            continue
        x1, y1, x2, y2 = instances.gt_boxes.tensor[classes.index(cls)].tolist()
        # Bilinear interpolation blends a pixel or two on each border.
        top, bottom, left, right = math.ceil(y1) + 2, math.floor(y2) - 2, math.ceil(x1) + 2, math.floor(x2) - 2
        if bottom > top and right > left:
            assert mask[top:bottom, left:right].mean() > 0.99, f"class {cls}: its box is not on its object"
        ys, xs = np.nonzero(mask)
        if xs.size:
            assert xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1, f"class {cls}: object outside its box"
            assert ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1, f"class {cls}: object outside its box"


def test_train_mapper_keeps_boxes_on_objects(tmp_path):
    dataset_dict = _dataset_dict(tmp_path)
    original = np.asarray(Image.open(dataset_dict["file_name"]))
    mapper = DatasetMapper(is_train=True, augmentations=detr_train_augmentations(SCALES), image_format="RGB")
    seen, dropped = set(), 0
    for seed in range(40):
        np.random.seed(seed)
        tfms = mapper.augmentations(T.AugInput(original)).transforms  # the mapper's draws for this seed
        cropped = any(isinstance(t, T.CropTransform) for t in tfms)
        flipped = any(isinstance(t, T.HFlipTransform) for t in tfms)
        seen.add((cropped, flipped))
        np.random.seed(seed)
        out = mapper(dataset_dict)
        image = out["image"].permute(1, 2, 0).numpy()
        instances = out["instances"]
        assert instances.image_size == image.shape[:2]
        _check_boxes_on_objects(image, instances)
        classes = instances.gt_classes.tolist()
        assert CROWD_CLASS not in classes and EMPTY_CLASS not in classes
        dropped += len(classes) < len(OBJECTS)
        if not cropped:
            # The boxes are the clipped annotations scaled, and mirrored when flipped.
            h, w = image.shape[:2]
            assert (h, w) in {detr_size(300, 420, s, MAX_SIZE) for s in SCALES} and classes == list(OBJECTS)
            boxes = np.array([OBJECTS[c][1] for c in classes], dtype=np.float32) * ([w / 420, h / 300] * 2)
            if flipped:
                boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
            assert np.allclose(instances.gt_boxes.tensor.numpy(), boxes, atol=1e-3)
    assert seen == {(False, False), (False, True), (True, False), (True, True)} and dropped > 0


def test_train_sizes_follow_scales_and_cap(tmp_path):
    # 240x520: wider than the cap allows at the larger scales; crops (at most 600x384) never are.
    dataset_dict = _dataset_dict(tmp_path, h=240, w=520)
    mapper = DatasetMapper(is_train=True, augmentations=detr_train_augmentations(SCALES), image_format="RGB")
    capped = detr_size(240, 520, SCALES[-1], MAX_SIZE)
    assert capped == (608, 1328) != detr_size(240, 520, SCALES[-1], None)
    shapes = []
    for seed in range(30):
        np.random.seed(seed)
        h, w = mapper(dataset_dict)["image"].shape[1:]
        assert max(h, w) <= MAX_SIZE and min(h, w) in SCALES and h % 16 == 0 and w % 16 == 0
        shapes.append((h, w))
    assert capped in shapes and len(set(shapes)) > 10


def test_default_cap_follows_scales():
    scales = list(range(256, 609, 16))
    resize = detr_train_augmentations(scales)[1].first.augs[0]
    assert (resize.short_edge_length, resize.max_size) == (tuple(scales), 608 * 1333 // 800)


@pytest.mark.parametrize("eval_size, expected", [(512, [(512, 704), (384, 848)]), (800, [(800, 1120), (608, 1328)])])
def test_test_mapper_size_is_deterministic(tmp_path, eval_size, expected):
    mapper = DatasetMapper(is_train=False, augmentations=detr_test_augmentations(eval_size), image_format="RGB")
    for (h, w), shape in zip([(300, 420), (240, 520)], expected):
        dataset_dict = _dataset_dict(tmp_path, h, w)
        assert detr_size(h, w, eval_size, eval_size * 1333 // 800) == shape
        outputs = []
        for seed in range(3):
            np.random.seed(seed)
            outputs.append(mapper(dataset_dict))
        assert all(tuple(out["image"].shape[1:]) == shape for out in outputs)
        assert all((out["image"] == outputs[0]["image"]).all() for out in outputs)
        assert "instances" not in outputs[0] and "annotations" not in outputs[0]


def test_random_select_probability():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    flip = [T.HFlipTransform(3)]

    def flipped(select, seed):
        np.random.seed(seed)
        aug_input = T.AugInput(image)
        select(aug_input)
        return bool((aug_input.image != image).any())

    assert all(flipped(RandomSelect(flip, [], prob=1.0), seed) for seed in range(20))
    assert not any(flipped(RandomSelect(flip, [], prob=0.0), seed) for seed in range(20))
    assert 400 < sum(flipped(RandomSelect(flip, []), seed) for seed in range(1000)) < 600


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: detr_train_augmentations([]), "scales"),
        (lambda: detr_train_augmentations([8, 480]), "scales"),
        (lambda: detr_train_augmentations(SCALES, max_size=0), "max_size"),
        (lambda: detr_test_augmentations(8), "eval_size"),
        (lambda: detr_test_augmentations(32, size_multiple=64), "eval_size"),
        (lambda: DETRResizeShortestEdge(512, size_multiple=0), "size_multiple"),
        (lambda: DETRResizeShortestEdge([]), "short_edge_length"),
        (lambda: DETRResizeShortestEdge([0, 480]), "short_edge_length"),
        (lambda: RandomSelect([], [], prob=1.5), "prob"),
    ],
)
def test_bad_arguments_name_themselves(build, name):
    with pytest.raises(ValueError, match=name):
        build()


def capped_by_hand(h, w, max_size):
    """(h, w) scaled to a longer side of ``max_size``, each side rounded half up (at least 1), if it is longer."""
    longer = max(h, w)
    if not max_size or longer <= max_size:
        return h, w
    return tuple(max(1, math.floor(side * max_size / longer + 0.5)) for side in (h, w))


# (h, w): landscape, portrait, square, small and large; eval size 512 caps the longer side at 853.
EVAL_SIZES = [(300, 420), (240, 520), (600, 200), (64, 64), (1000, 1500), (2000, 3000), (30, 100)]


@pytest.mark.parametrize("max_size", [None, 0, 50, 400, 853, 1333])
def test_eval_resize_is_the_config_resize_then_the_cap(max_size):
    with_resize, without = EvalResize(detr_test_augmentations(512), max_size), EvalResize([], max_size)
    for h, w in EVAL_SIZES:
        expected = capped_by_hand(*detr_size(h, w, 512, 853), max_size)
        assert with_resize.output_shape(h, w) == expected
        assert without.output_shape(h, w) == capped_by_hand(h, w, max_size)
        # As while exporting the whole pipeline: 0-d tensors in, 0-d int64 tensors of the same sides out.
        sides = with_resize.output_shape(torch.tensor(h), torch.tensor(w))
        assert all(side.dtype == torch.int64 and side.dim() == 0 for side in sides)
        assert tuple(int(side) for side in sides) == expected
        assert with_resize.is_capped(h, w) == (bool(max_size) and max(detr_size(h, w, 512, 853)) > max_size)


def test_eval_resize_resizes_once_as_pil_and_as_the_test_mapper():
    image = np.random.default_rng(0).integers(0, 256, (300, 1000, 3), dtype=np.uint8)
    # 300x1000 -> 256x853 by the config, floored to 256x848; capped at 400: 121x400 (256 * 400 / 848 = 120.75).
    capped = EvalResize(detr_test_augmentations(512), 400).apply_image(image)
    np.testing.assert_array_equal(capped, np.asarray(Image.fromarray(image).resize((400, 121), Image.BILINEAR)))
    aug_input = T.AugInput(image)
    T.AugmentationList(detr_test_augmentations(512))(aug_input)
    np.testing.assert_array_equal(EvalResize(detr_test_augmentations(512), 1333).apply_image(image), aug_input.image)
    assert EvalResize([], 1333).apply_image(image) is image


@pytest.mark.parametrize(
    "augmentations, max_size, message",
    [
        ([T.RandomFlip()], None, "dataloader.test.mapper.augmentations must be one DETRResizeShortestEdge"),
        ([DETRResizeShortestEdge([480, 512], 853)], None, "with one shorter-side length"),
        (detr_test_augmentations(512) * 2, None, "or none; got"),
        ([], -1, "max_size must be None, 0"),
    ],
)
def test_eval_resize_names_what_it_cannot_take(augmentations, max_size, message):
    with pytest.raises(ValueError, match=message):
        EvalResize(augmentations, max_size)


def _boxes_by_hand(transforms, boxes):
    """XYXY ``boxes`` (N, 4) through flips, crops and resizes, computed without detectron2's apply_box."""
    boxes = boxes.astype(np.float64)
    for t in transforms:
        if isinstance(t, T.HFlipTransform):
            boxes = np.stack([t.width - boxes[:, 2], boxes[:, 1], t.width - boxes[:, 0], boxes[:, 3]], axis=1)
        elif isinstance(t, T.CropTransform):
            boxes = boxes - [t.x0, t.y0, t.x0, t.y0]
        elif isinstance(t, T.ResizeTransform):
            boxes = boxes * ([t.new_w / t.w, t.new_h / t.h] * 2)
        else:
            assert isinstance(t, T.NoOpTransform), t
    return boxes


@st.composite
def _annotated_images(draw):
    """(height, width, XYWH integer boxes reaching past the borders or without area, classes, seed)."""
    h, w = draw(st.integers(16, 64)), draw(st.integers(16, 64))
    n = draw(st.integers(1, 6))
    boxes = draw(st.lists(st.tuples(st.integers(-w, 2 * w), st.integers(-h, 2 * h), st.integers(-8, 2 * w),
                                    st.integers(-8, 2 * h)), min_size=n, max_size=n))
    classes = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    return h, w, boxes, classes, draw(st.integers(0, 2**32 - 1))


@pytest.fixture(scope="module")
def blank_images(tmp_path_factory):
    """Path of a blank PNG of a given (height, width), written on first use."""
    folder = tmp_path_factory.mktemp("blank")

    def path(h, w):
        file = folder / f"{h}x{w}.png"
        if not file.exists():
            Image.new("RGB", (w, h)).save(file)
        return str(file)

    return path


@settings(max_examples=50, deadline=None, database=None)
@given(case=_annotated_images())
def test_random_boxes_end_inside_the_image_with_their_class(blank_images, case):
    """Loaded (clipped, empty ones dropped), flipped, cropped and resized: each box stays on its object."""
    h, w, boxes, classes, seed = case
    annotations = [{"id": i, "bbox": list(b), "bbox_mode": BoxMode.XYWH_ABS, "category_id": c, "iscrowd": 0}
                   for i, (b, c) in enumerate(zip(boxes, classes))]
    record = {"file_name": blank_images(h, w), "height": h, "width": w, "image_id": 1, "annotations": annotations}
    clip_boxes_to_images([record], "random_boxes")
    mapper = DatasetMapper(is_train=True, augmentations=detr_train_augmentations([16, 32, 48]), image_format="RGB")
    np.random.seed(seed % 2**32)
    transforms = mapper.augmentations(T.AugInput(np.zeros((h, w, 3), dtype=np.uint8))).transforms
    np.random.seed(seed % 2**32)
    out = mapper(record)

    height, width = out["image"].shape[1:]
    got = out["instances"].gt_boxes.tensor.numpy()
    assert out["instances"].image_size == (height, width)
    assert ((got[:, :2] >= 0) & (got[:, 2:] <= [width, height]) & (got[:, 2:] > got[:, :2])).all()
    kept = record["annotations"]
    xyxy = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in kept)]).reshape(-1, 4)
    expected = np.clip(_boxes_by_hand(transforms, xyxy), 0, [width, height] * 2)
    visible = (expected[:, 2:] > expected[:, :2]).all(axis=1)
    assert out["instances"].gt_classes.tolist() == [a["category_id"] for a, v in zip(kept, visible) if v]
    np.testing.assert_allclose(got, expected[visible], atol=1e-3)
