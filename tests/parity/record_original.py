"""
Record reference numbers from the original YOLOS implementation (github.com/hustvl/YOLOS) into
``tests/parity/fixtures/``, for the parity tests of this folder, which then run without it.

The fixtures hold, for reduced-depth (2 blocks) YOLOS-Ti (``configs/yolos_ti.py``: 192-d, no
mid-layer position embeddings, evaluated at 512) and YOLOS-S (``configs/yolos_s.py``: 384-d,
mid-layer position embeddings, evaluated at 800) with random weights:

- ``images/*.png``: four generated images of 1000x200, 200x1000, 640x480 and 500x375 pixels
  (width x height).
- ``inference_yolos_ti.pt``, ``inference_yolos_s.pt``: what the original's evaluation path
  (``PIL.Image.open``, ``make_coco_transforms("val")``, ``Detector``, ``PostProcess`` with the
  original image sizes) gives for each image on its own: the resized input size (H, W) and, per
  ``[DET]`` token, the score, label and box (x1, y1, x2, y2 in the image's pixels, unclipped);
  the same for two images in one zero-padded batch.
- ``training_yolos_ti.pt``, ``training_yolos_s.pt``: one training step on a batch of two
  annotated images with fixed augmentation choices (a horizontal flip and the resize capped by
  max_size for one; the resize to 400, a crop and the last resize for the other), done by the
  original's own ``ConvertCocoPolysToMask``, ``hflip``, ``resize``, ``crop``, ``ToTensor``,
  ``Normalize`` and ``nested_tensor_from_tensor_list``, its ``HungarianMatcher`` and
  ``SetCriterion`` (num_classes 80): the input sizes, the targets, the matching, the weighted
  losses, ``class_error`` and the gradients of the summed weighted loss (for every parameter
  its L2 norm and up to 256 entries, in yolos_d2's names and shapes).

The weights are not stored: :func:`random_weights` draws them again from the names and shapes
of the state dict and a seed, and each fixture holds their SHA-256 to prove it. Everything is
deterministic; the PNG files and numbers are the same at each run on the same software.

To regenerate (CPU only, about a minute; run from the repository root with its environment)::

    git clone https://github.com/hustvl/YOLOS /tmp/YOLOS
    .venv/bin/python tests/parity/record_original.py --original-repo /tmp/YOLOS

This module can be imported without the original code: the tests use :func:`random_weights`.
"""
import argparse
import hashlib
import importlib
import os
import sys
import types
import zlib
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Generated images: file name -> (width, height, seed).
IMAGES = {
    "wide_1000x200.png": (1000, 200, 1),
    "tall_200x1000.png": (200, 1000, 2),
    "landscape_640x480.png": (640, 480, 3),
    "photo_500x375.png": (500, 375, 4),
}
# The two images of the padded inference batch.
BATCH = ("landscape_640x480.png", "wide_1000x200.png")
DEPTH_OVERRIDES = ["model.detector.backbone.depth=2"]

# Per setup: the yolos_d2 config, and the original's arguments for the same model (as its README
# trains them); the original's YOLOS-Ti init_pe_size 800x1333 is the 50x83 patch grid of ours.
SETUPS = {
    "yolos_ti": dict(
        config="configs/yolos_ti.py",
        backbone_name="tiny",
        init_pe_size=(800, 1333),
        mid_pe_size=None,
        eval_size=512,
        seed=0,
    ),
    "yolos_s": dict(
        config="configs/yolos_s.py",
        backbone_name="small",
        init_pe_size=(512, 864),
        mid_pe_size=(512, 864),
        eval_size=800,
        seed=1,
    ),
}

# The training steps: per setup, the cap on the longer side of the original's last resize
# (largest scale * 1333 // 800) and each sample's shorter side there, one of the original's scales.
TRAINING = {
    "yolos_ti": dict(max_size=608 * 1333 // 800, scales=(608, 320)),
    "yolos_s": dict(max_size=800 * 1333 // 800, scales=(800, 480)),
}
# The batch: COCO-style annotations (bbox x, y, w, h in pixels), with labels already in [0, 80)
# so that the original with num_classes=80 has the same no-object index (80) as yolos_d2.
TRAINING_SAMPLES = [
    dict(
        image="wide_1000x200.png",
        annotations=[
            dict(bbox=[20.0, 30.0, 150.0, 120.0], category_id=0),
            dict(bbox=[400.5, 10.0, 300.0, 180.0], category_id=17),
            dict(bbox=[880.0, 60.0, 120.0, 140.0], category_id=79),
            # Reaches past the bottom-right corner: clipped to the image.
            dict(bbox=[950.0, 150.0, 80.0, 70.0], category_id=2),
        ],
        hflip=True,
        crop=None,
    ),
    dict(
        image="landscape_640x480.png",
        annotations=[
            dict(bbox=[100.0, 100.0, 200.0, 150.0], category_id=5),
            # Partly left of the crop: clipped.
            dict(bbox=[20.0, 300.0, 150.0, 100.0], category_id=42),
            dict(bbox=[300.0, 200.0, 250.0, 260.0], category_id=61),
            # Right of the crop: dropped.
            dict(bbox=[610.0, 10.0, 25.0, 30.0], category_id=3),
        ],
        hflip=False,
        # The original's second branch: shorter side to 400 (no cap), then a crop of
        # (top, left, height, width) in the resized image.
        crop=dict(pre_resize=400, region=(8, 60, 384, 440)),
    ),
]
# Gradient entries recorded per parameter.
GRAD_SAMPLES = 256


def random_weights(shapes: Mapping[str, Sequence[int]], seed: int) -> Dict[str, torch.Tensor]:
    """
    Float32 random weights for a state dict with these names and shapes. Each tensor is drawn
    from numpy's legacy ``RandomState`` (a stream numpy keeps unchanged across versions) seeded
    by ``seed`` and the CRC-32 of its name, so it depends on neither the others nor their order.

    The scales keep activations of order 1 through the network, so that the outputs vary with
    the image and with the position (as they barely do with a 0.02-std initialisation):
    Linear/convolution weights N(0, 1/fan_in), LayerNorm weights 1 + N(0, 0.1^2), biases
    N(0, 0.1^2), tokens and position embeddings N(0, 0.5^2).
    """
    weights = {}
    for name, shape in shapes.items():
        noise = np.random.RandomState([seed, zlib.crc32(name.encode())]).standard_normal(tuple(shape))
        if name.endswith(".weight") and len(shape) >= 2:
            value = noise / np.sqrt(np.prod(shape[1:]))
        elif name.endswith(".weight"):
            value = 1 + 0.1 * noise
        elif name.endswith(".bias"):
            value = 0.1 * noise
        else:
            value = 0.5 * noise
        weights[name] = torch.from_numpy(value.astype(np.float32))
    return weights


def weights_digest(weights: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of the names and float32 values of ``weights``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_recorded(name: str) -> dict:
    """The fixture ``fixtures/<name>.pt``, e.g. ``inference_yolos_ti``."""
    return torch.load(os.path.join(FIXTURES, f"{name}.pt"), weights_only=True)


def recorded_weights(recorded: dict) -> Dict[str, torch.Tensor]:
    """A fixture's random weights, drawn again; raises ``ValueError`` if they are not the recorded ones."""
    weights = random_weights(recorded["shapes"], recorded["seed"])
    if weights_digest(weights) != recorded["weights_sha256"]:
        raise ValueError("random_weights no longer draws the weights the fixtures were recorded with")
    return weights


def grad_sample_indices(name: str, numel: int) -> torch.Tensor:
    """Up to ``GRAD_SAMPLES`` distinct flat indices into a parameter's gradient, sorted; (N,) int64."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    return torch.from_numpy(np.sort(rng.choice(numel, min(numel, GRAD_SAMPLES), replace=False)).astype(np.int64))


def write_images(folder: str) -> None:
    """Write the PNG files of ``IMAGES``: random filled shapes on a smooth gradient."""
    from PIL import Image, ImageDraw

    os.makedirs(folder, exist_ok=True)
    for name, (width, height, seed) in IMAGES.items():
        rng = np.random.RandomState(seed)
        rows, cols = np.mgrid[0:height, 0:width]
        start = rng.uniform(40, 215, 3)
        slope = rng.uniform(-40, 40, (2, 3))
        pixels = start + rows[..., None] / height * slope[0] + cols[..., None] / width * slope[1]
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x1, x2 = np.sort(rng.uniform(-0.1, 1.1, 2) * width)
            y1, y2 = np.sort(rng.uniform(-0.1, 1.1, 2) * height)
            fill = tuple(int(c) for c in rng.randint(0, 256, 3))
            shape = draw.ellipse if rng.rand() < 0.5 else draw.rectangle
            shape([float(x1), float(y1), float(x2), float(y2)], fill=fill)
        image.save(os.path.join(folder, name), optimize=True)


def import_original(repo: str) -> types.SimpleNamespace:
    """
    The original's modules, from a checkout ``repo`` of hustvl/YOLOS: ``models/`` as yolos_d2's
    benchmark imports it (a package without its ``__init__``, with the ``torch._six`` it needs);
    its ``util/`` and ``datasets/`` as the top-level packages its code imports them as.
    """
    from benchmarks.original import _import_original_backbone

    package = _import_original_backbone(repo).__package__
    sys.path.insert(0, os.path.abspath(repo))
    modules = {
        "detector": f"{package}.detector",
        "matcher": f"{package}.matcher",
        "transforms": "datasets.transforms",
        "coco": "datasets.coco",
        "misc": "util.misc",
    }
    original = types.SimpleNamespace(**{key: importlib.import_module(name) for key, name in modules.items()})
    for module in (original.transforms, original.misc):
        if not os.path.abspath(module.__file__).startswith(os.path.abspath(repo)):
            raise ImportError(f"{module.__name__} was imported from {module.__file__}, not from {repo!r}")
    return original


def ours_to_original(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A yolos_d2 ``YOLOS`` state dict in the original ``Detector``'s names."""
    out = {name[len("detector.") :]: value for name, value in state.items()}
    # The original keeps [CLS], patch and [DET] position embeddings in one table.
    out["backbone.pos_embed"] = torch.cat([out["backbone.pos_embed"], out.pop("backbone.det_pos_embed")], dim=1)
    return out


def original_grads_to_ours(detector: torch.nn.Module, shapes: Mapping[str, Sequence[int]]) -> Dict[str, torch.Tensor]:
    """The gradients of the original ``Detector``'s parameters, in yolos_d2's names and shapes."""
    grads = {f"detector.{name}": p.grad for name, p in detector.named_parameters()}
    table = grads.pop("detector.backbone.pos_embed")
    cls_and_patches = shapes["detector.backbone.pos_embed"][1]
    grads["detector.backbone.pos_embed"] = table[:, :cls_and_patches]
    grads["detector.backbone.det_pos_embed"] = table[:, cls_and_patches:]
    return grads


def build_ours(setup: dict):
    """The yolos_d2 model of ``setup`` at reduced depth, and the names and shapes of its state dict."""
    from detectron2.config import instantiate

    from yolos_d2.config import load_config

    cfg = load_config(os.path.join(REPO, setup["config"]), DEPTH_OVERRIDES)
    if cfg.dataloader.test.mapper.augmentations.eval_size != setup["eval_size"]:
        raise ValueError(f"{setup['config']} does not evaluate at {setup['eval_size']}")
    model = instantiate(cfg.model)
    shapes = {name: list(value.shape) for name, value in model.state_dict().items()}
    return model, shapes


def build_original(original: types.SimpleNamespace, setup: dict, ours, weights: Mapping[str, torch.Tensor]):
    """
    The original ``Detector`` of ``setup`` with the class count, ``[DET]`` token count and depth
    of ``ours`` (a yolos_d2 ``YOLOS``), holding ``weights`` (yolos_d2 names). It is built by
    its own constructor, without pre-trained weights, then cut to that depth.
    """
    depth = ours.detector.backbone.depth
    detector = original.detector.Detector(
        num_classes=ours.detector.num_classes,
        pre_trained=None,
        det_token_num=ours.detector.backbone.num_det_tokens,
        backbone_name=setup["backbone_name"],
        init_pe_size=list(setup["init_pe_size"]),
        mid_pe_size=None if setup["mid_pe_size"] is None else list(setup["mid_pe_size"]),
    )
    vit = detector.backbone
    vit.blocks = vit.blocks[:depth]
    vit.depth = depth
    if vit.has_mid_pe:
        vit.mid_pos_embed = torch.nn.Parameter(vit.mid_pos_embed[: depth - 1].detach().clone())
    detector.load_state_dict(ours_to_original(weights))
    return detector


def check_pos_embed_resized(vit, input_size: Tuple[int, int]) -> None:
    """
    Refuse an input whose patch grid has as many patches as a position-embedding grid but another
    shape: the original then skips the resize (a bug yolos_d2 fixes), so the numbers would differ.
    """
    grid = (input_size[0] // vit.patch_size, input_size[1] // vit.patch_size)
    sizes = [vit.img_size] + ([vit.mid_pe_size] if vit.has_mid_pe else [])
    for size in sizes:
        pe_grid = (size[0] // vit.patch_size, size[1] // vit.patch_size)
        if grid != pe_grid and grid[0] * grid[1] == pe_grid[0] * pe_grid[1]:
            raise ValueError(f"input {input_size} has a {grid} patch grid, as many patches as the {pe_grid} one")


def open_rgb(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


@torch.no_grad()
def record_inference(original: types.SimpleNamespace, setup: dict, images_dir: str) -> dict:
    """The original's evaluation of each image of ``images_dir``, and of the ``BATCH`` pair."""
    ours, shapes = build_ours(setup)
    weights = random_weights(shapes, setup["seed"])
    detector = build_original(original, setup, ours, weights).eval()
    args = argparse.Namespace(backbone_name=setup["backbone_name"], eval_size=setup["eval_size"])
    transform = original.coco.make_coco_transforms("val", args)
    postprocess = original.detector.PostProcess()

    def run(files: Sequence[str]) -> dict:
        inputs, sizes = [], []
        for file in files:
            image = open_rgb(os.path.join(images_dir, file))
            tensor, _ = transform(image, None)
            check_pos_embed_resized(detector.backbone, tensor.shape[-2:])
            inputs.append(tensor)
            sizes.append([image.height, image.width])
        batch = original.misc.nested_tensor_from_tensor_list(inputs)
        check_pos_embed_resized(detector.backbone, batch.tensors.shape[-2:])
        results = postprocess(detector(batch), torch.tensor(sizes))
        return {
            "input_size": list(batch.tensors.shape[-2:]),
            "image_input_sizes": [list(t.shape[-2:]) for t in inputs],
            "scores": torch.stack([r["scores"] for r in results]),
            "labels": torch.stack([r["labels"] for r in results]),
            "boxes": torch.stack([r["boxes"] for r in results]),
        }

    per_image = {}
    for file in IMAGES:
        result = run([file])
        per_image[file] = {
            "input_size": result["input_size"],
            "scores": result["scores"][0],
            "labels": result["labels"][0],
            "boxes": result["boxes"][0],
        }
    return {
        "config": setup["config"],
        "overrides": DEPTH_OVERRIDES,
        "seed": setup["seed"],
        "shapes": shapes,
        "weights_sha256": weights_digest(weights),
        "images": per_image,
        "batch": {"images": list(BATCH), **run(BATCH)},
    }


def original_training_sample(original: types.SimpleNamespace, sample: dict, max_size: int, images_dir: str):
    """
    One sample through the original's data path with ``sample``'s fixed choices (and its
    ``scale`` for the last resize, capped at ``max_size``): (3, H, W) normalised image, target.
    """
    T = original.transforms
    image = open_rgb(os.path.join(images_dir, sample["image"]))
    annotations = [dict(ann, area=ann["bbox"][2] * ann["bbox"][3], iscrowd=0) for ann in sample["annotations"]]
    image, target = original.coco.ConvertCocoPolysToMask()(image, {"image_id": 0, "annotations": annotations})
    if sample["hflip"]:
        image, target = T.hflip(image, target)
    if sample["crop"] is not None:
        image, target = T.resize(image, target, sample["crop"]["pre_resize"])
        image, target = T.crop(image, target, sample["crop"]["region"])
    image, target = T.resize(image, target, sample["scale"], max_size)
    normalize = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return normalize(image, target)


def record_training(
    original: types.SimpleNamespace, setup: dict, max_size: int, scales: Sequence[int], images_dir: str
) -> dict:
    """
    One original training step on the ``TRAINING_SAMPLES``, resized last to ``scales`` (one per
    sample) with the longer side at most ``max_size``.
    """
    samples = [dict(sample, scale=scale) for sample, scale in zip(TRAINING_SAMPLES, scales)]
    ours, shapes = build_ours(setup)
    weights = random_weights(shapes, setup["seed"])
    detector = build_original(original, setup, ours, weights).train()
    # The original's defaults (main.py): matching costs 1, 5, 2; loss weights 1, 5, 2; eos_coef 0.1.
    matcher = original.matcher.HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2)
    weight_dict = {"loss_ce": 1, "loss_bbox": 5, "loss_giou": 2}
    criterion = original.detector.SetCriterion(
        ours.detector.num_classes, matcher=matcher, weight_dict=weight_dict, eos_coef=0.1, losses=["labels", "boxes"]
    )

    images, targets = zip(*(original_training_sample(original, s, max_size, images_dir) for s in samples))
    targets = [{"labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    batch = original.misc.nested_tensor_from_tensor_list(list(images))
    for image in images:
        check_pos_embed_resized(detector.backbone, image.shape[-2:])
    check_pos_embed_resized(detector.backbone, batch.tensors.shape[-2:])

    matched = []
    hook = matcher.register_forward_hook(lambda module, inputs, output: matched.extend(output))
    losses = criterion(detector(batch), targets)
    hook.remove()
    weighted = {k: losses[k] * weight_dict[k] for k in weight_dict}
    sum(weighted.values()).backward()

    grads = original_grads_to_ours(detector, shapes)
    if set(grads) != set(shapes):
        raise ValueError(f"parameters differ: {sorted(set(grads) ^ set(shapes))}")
    grad_samples = {}
    for name, grad in grads.items():
        index = grad_sample_indices(name, grad.numel())
        grad_samples[name] = {"norm": grad.double().norm().item(), "index": index, "values": grad.flatten()[index]}
    return {
        "config": setup["config"],
        "overrides": DEPTH_OVERRIDES,
        "seed": setup["seed"],
        "shapes": shapes,
        "weights_sha256": weights_digest(weights),
        "max_size": max_size,
        "samples": samples,
        "image_input_sizes": [list(image.shape[-2:]) for image in images],
        "input_size": list(batch.tensors.shape[-2:]),
        "targets": targets,
        "matched": matched,
        "losses": {k: v.item() for k, v in weighted.items()},
        "class_error": losses["class_error"].item(),
        "grad_norm": torch.cat([g.double().flatten() for g in grads.values()]).norm().item(),
        "grads": grad_samples,
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original-repo", required=True, help="a checkout of github.com/hustvl/YOLOS")
    parser.add_argument("--output", default=FIXTURES, help="fixtures folder (default: %(default)s)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # the same float reductions at every run
    original = import_original(args.original_repo)
    images_dir = os.path.join(args.output, "images")
    write_images(images_dir)
    for name, setup in SETUPS.items():
        torch.save(record_inference(original, setup, images_dir), os.path.join(args.output, f"inference_{name}.pt"))
    for name, step in TRAINING.items():
        recorded = record_training(original, SETUPS[name], images_dir=images_dir, **step)
        torch.save(recorded, os.path.join(args.output, f"training_{name}.pt"))
    for root, _, files in os.walk(args.output):
        for file in sorted(files):
            path = os.path.join(root, file)
            print(f"{os.path.relpath(path, args.output)}: {os.path.getsize(path) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
