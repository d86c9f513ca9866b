"""
The tests' shared fixtures and helpers: the repository's paths, the variants' configs and models,
synthetic COCO-format data, a tiny training config, train_net.py in a subprocess, the small
predictor and the docs' fenced blocks. Tests import the helpers from here
(``from conftest import build_model``) and receive the fixtures by name.
"""
import os

# The tests run on the CPU, on a GPU host too: the configs' train.device is "cuda" wherever CUDA
# is available, and the tests expect what the CPU gives (runs repeated bit for bit, processes
# talking through gloo). Hidden here, before torch is imported and CUDA started, the GPUs are
# hidden from the train_net.py processes the tests start too, which inherit the environment.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import re
import subprocess
import sys
import textwrap
from typing import List, Tuple

import numpy as np
import pytest
import torch
from detectron2.config import instantiate

from yolos_d2.config import load_config
from yolos_d2.inference import YOLOSPredictor
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec, generate_synthetic_shapes, split_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs")
TRAIN_NET = os.path.join(REPO, "train_net.py")
VARIANTS = ["yolos_ti", "yolos_s", "yolos_s_200ep", "yolos_s_dwr", "yolos_b"]

# A 2-block YOLOS-Ti with 12 tokens evaluated at 64 (longer side at most 106): predictions in seconds.
SMALL_PREDICTOR = [
    "model.detector.backbone.depth=2",
    "model.detector.backbone.init_pe_size=[64,96]",
    "model.detector.backbone.num_det_tokens=12",
    "dataloader.test.mapper.augmentations.eval_size=64",
]
# Image sizes (H, W) for the small predictor: some share a size after its resize, some do not.
PREDICTOR_SIZES = [(48, 64), (64, 48), (51, 70), (30, 100), (60, 80), (64, 64)]


def config_path(name: str) -> str:
    """The path of ``configs/<name>.py``."""
    return os.path.join(CONFIG_DIR, f"{name}.py")


def build_model(name: str, overrides=()):
    """The model of ``configs/<name>.py`` with the overrides (strictly applied), seeded, in eval mode."""
    torch.manual_seed(0)
    return instantiate(load_config(config_path(name), overrides).model).eval()


def favour_class_0(model) -> None:
    """Bias a random model's class head to class 0, so that its tokens score from about 0.1 to 0.95."""
    with torch.no_grad():
        model.detector.class_embed.layers[-1].bias[0] += 5
        model.detector.class_embed.layers[-1].weight[0] *= 20


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def random_images(sizes, seed=0) -> List[np.ndarray]:
    """Random (H, W, 3) uint8 images of the (H, W) ``sizes``."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]


def make_predictor(weights, *overrides, **kwargs):
    """The small YOLOS-Ti with ``weights``, the ``overrides`` and the predictor's ``kwargs``, on the CPU."""
    overrides = [*SMALL_PREDICTOR, *overrides]
    return YOLOSPredictor(config_path("yolos_ti"), overrides=overrides, weights=weights, device="cpu", **kwargs)


def synthetic_splits(root: str, specs):
    """Generate each ``SyntheticShapesSpec`` of ``specs`` (name -> spec) under ``root``; name -> (json, images)."""
    splits = {}
    for name, spec in specs.items():
        generate_synthetic_shapes(spec, root)
        splits[name] = split_files(spec, root)
    return splits


def random_quickstart_model(root: str, dataset_name: str, num_images: int, depth: int):
    """
    A quick-start model of ``depth`` blocks with random weights (seeded) whose test set is
    ``num_images`` synthetic images generated under ``root`` and registered as ``dataset_name``:
    (its checked config, the model in eval mode).
    """
    from yolos_d2.config import prepare_config
    from yolos_d2.data import register_coco_dataset
    from yolos_d2.inference import build_inference_model

    splits = synthetic_splits(root, {"val": SyntheticShapesSpec(num_images, seed=5)})
    name = register_coco_dataset(dataset_name, *splits["val"])
    overrides = [f"model.detector.backbone.depth={depth}", f"dataloader.test.dataset.names={name}"]
    cfg = prepare_config(config_path("quickstart"), overrides)
    torch.manual_seed(0)
    return cfg, build_inference_model(cfg, require_weights=False)


def write_quickstart_variant(path, body: str, parts=("model", "dataloader", "train")) -> str:
    """
    Write a config file at ``path`` that loads configs/quickstart.py, takes its ``parts`` and then
    runs ``body``, config statements that may use ``L``, ``detr_test_augmentations`` and
    ``register_coco_dataset``; returns the path.
    """
    header = (
        "from detectron2.config import LazyCall as L, LazyConfig\n"
        "from yolos_d2.data import detr_test_augmentations, register_coco_dataset\n\n"
        f"_base = LazyConfig.load({config_path('quickstart')!r})\n"
        f"{', '.join(parts)} = {', '.join(f'_base.{part}' for part in parts)}\n"
    )
    path.write_text(header + textwrap.dedent(body))
    return str(path)


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> str:
    """
    A config file training a 2-block quick-start model on 48 synthetic images (16 for validation);
    one for the session, as the datasets it registers keep their names in a process.
    """
    root = tmp_path_factory.mktemp("tiny_shapes")
    splits = synthetic_splits(str(root), {"tiny_train": SyntheticShapesSpec(48, seed=3), "tiny_val": SyntheticShapesSpec(16, seed=4)})
    return write_quickstart_variant(
        root / "tiny.py",
        f"""
        dataloader.train.dataset.names = register_coco_dataset("tiny_train", *{splits["tiny_train"]!r})
        dataloader.test.dataset.names = register_coco_dataset("tiny_val", *{splits["tiny_val"]!r})
        dataloader.train.total_batch_size = 4
        model.detector.backbone.depth = 2
        lr_multiplier.warmup_iters = 0
        train.update(max_iter=40, eval_period=40, log_period=5, checkpointer=dict(period=20, max_to_keep=5))
        train.prediction_images.num_images = 2
        """,
        parts=("model", "dataloader", "optimizer", "lr_multiplier", "train"),
    )


# transformers' YOLOS key -> the original YOLOS code's, for random weights saved in the original layout.
_HF_TO_ORIGINAL = [
    (r"^vit\.embeddings\.cls_token$", "backbone.cls_token"),
    (r"^vit\.embeddings\.detection_tokens$", "backbone.det_token"),
    (r"^vit\.embeddings\.position_embeddings$", "backbone.pos_embed"),
    (r"^vit\.embeddings\.patch_embeddings\.projection\.", "backbone.patch_embed.proj."),
    (r"^vit\.encoder\.interpolation\.mid_position_embeddings$", "backbone.mid_pos_embed"),
    (r"^vit\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"backbone.blocks.\1.attn.proj."),
    (r"^vit\.encoder\.layer\.(\d+)\.layernorm_before\.", r"backbone.blocks.\1.norm1."),
    (r"^vit\.encoder\.layer\.(\d+)\.layernorm_after\.", r"backbone.blocks.\1.norm2."),
    (r"^vit\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"backbone.blocks.\1.mlp.fc1."),
    (r"^vit\.encoder\.layer\.(\d+)\.output\.dense\.", r"backbone.blocks.\1.mlp.fc2."),
    (r"^vit\.layernorm\.", "backbone.norm."),
    (r"^class_labels_classifier\.", "class_embed."),
    (r"^bbox_predictor\.", "bbox_embed."),
]


def original_state_dict(hf_model):
    """The state dict the original YOLOS code would hold for the same weights (its key layout)."""
    hf = hf_model.state_dict()
    out = {}
    for key, value in hf.items():
        qkv = re.match(r"^vit\.encoder\.layer\.(\d+)\.attention\.attention\.query\.(weight|bias)$", key)
        if qkv:
            layer, kind = qkv.groups()
            parts = [hf[f"vit.encoder.layer.{layer}.attention.attention.{n}.{kind}"] for n in ("query", "key", "value")]
            out[f"backbone.blocks.{layer}.attn.qkv.{kind}"] = torch.cat(parts)
        for pattern, repl in _HF_TO_ORIGINAL:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
    return out


def start_train_net(config: str, output_dir: str, *args: str, capture: bool = True) -> subprocess.Popen:
    """
    Start ``train_net.py --config-file config *args train.output_dir=output_dir`` on one thread,
    its output captured as text (or discarded, without ``capture``).
    """
    cmd = [sys.executable, TRAIN_NET, "--config-file", config, *args, f"train.output_dir={output_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(cmd, env=env, stdout=output, stderr=output, text=True)


def run_train_net(config: str, output_dir: str, *args: str, check: bool = False) -> Tuple[int, str]:
    """
    Run train_net.py as :func:`start_train_net` does, to its end: (exit status, stdout + stderr).
    With ``check``, a run that fails fails the test, showing the end of its output.
    """
    proc = start_train_net(config, output_dir, *args)
    stdout, stderr = proc.communicate(timeout=600)
    if check:
        assert proc.returncode == 0, stdout[-3000:] + stderr[-6000:]
    return proc.returncode, stdout + stderr


def fenced_blocks(text: str) -> List[Tuple[str, int, List[str]]]:
    """(language, line number of the first line, lines) of each fenced block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, language, start = m.group(2), m.group(3).lower(), i + 1
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append((language, start + 1, body))
        i += 1
    return blocks


class _FillingFile:
    """A file on a disk with room for ``room`` more bytes: writing past them fails with ENOSPC, as a full disk does."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        import errno

        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.f.close()


@pytest.fixture
def full_disk(monkeypatch):
    """
    The files yolos_d2 writes atomically (:func:`yolos_d2.utils.file_io.write_atomic`: checkpoints,
    converted weights, drawings, figures, JSON) are on a disk with room for 500 more bytes.
    """
    from yolos_d2.utils import file_io

    monkeypatch.setattr(file_io, "open", lambda path, mode: _FillingFile(open(path, mode), room=500), raising=False)


@pytest.fixture
def no_room_on_disk(monkeypatch):
    """As :func:`full_disk`, with no room left: the first byte of a file fails to be written."""
    from yolos_d2.utils import file_io

    monkeypatch.setattr(file_io, "open", lambda path, mode: _FillingFile(open(path, mode), room=0), raising=False)


def free_port() -> int:
    """A TCP port of this host that no process listens on now, for processes to meet at."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copypaste_ap(log: str) -> List[float]:
    """The AP numbers of detectron2's last 'copypaste' evaluation lines in a log (4 decimals)."""
    return [float(x) for x in re.findall(r"copypaste: ([-\d.,nan]+)\n", log)[-1].split(",")]
