"""docs/your_data.md's CPU config, as the page writes it, trains and evaluates on a COCO-format set."""
import json
import os

from conftest import REPO, fenced_blocks, run_train_net, synthetic_splits
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec


def cpu_config_block() -> str:
    """The python block of docs/your_data.md's section "On a CPU, in minutes"."""
    with open(os.path.join(REPO, "docs", "your_data.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## On a CPU, in minutes") :]
    return next("\n".join(body) for language, _, body in fenced_blocks(section) if language == "python")


def test_the_cpu_config_of_the_page_trains_and_evaluates(tmp_path):
    splits = synthetic_splits(
        str(tmp_path / "data"),
        {"train": SyntheticShapesSpec(8, seed=11, image_size=256), "val": SyntheticShapesSpec(4, seed=12, image_size=256)},
    )
    source = cpu_config_block()
    for split, folder in (("train", "my/train"), ("val", "my/val")):
        json_file, images = splits[split]
        source = source.replace(f'"{folder}.json"', repr(json_file)).replace(f'"{folder}_images"', repr(images))
    configs = tmp_path / "configs"
    configs.mkdir()
    # The page's config imports .quickstart, which imports .common: the repository's, beside it.
    for name in ("quickstart.py", "common"):
        (configs / name).symlink_to(os.path.join(REPO, "configs", name))
    (configs / "my_data_cpu.py").write_text(source)

    out = tmp_path / "out"
    status, log = run_train_net(str(configs / "my_data_cpu.py"), str(out), "train.max_iter=4", "lr_multiplier.warmup_iters=2", "train.log_period=2")
    assert status == 0, log[-4000:]
    with open(out / "metrics.json") as f:
        metrics = [json.loads(line) for line in f]
    assert max(m["iteration"] for m in metrics if "total_loss" in m) == 3
    assert any("bbox/AP" in m for m in metrics)
    assert "Schedule: 4 iterations of 16 images" in log
    assert sorted(os.listdir(out / "predictions")) == [f"{i:06d}.png" for i in range(1, 5)]
