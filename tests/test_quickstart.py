"""The README's quick start, in full: train configs/quickstart.py on a CPU and check its AP (slow)."""
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import REPO



@pytest.mark.slow
def test_quickstart_learns_to_detect(tmp_path):
    env = {**os.environ, "YOLOS_D2_CACHE": str(tmp_path / "cache")}  # data generation is part of the run
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", os.path.join(REPO, "configs", "quickstart.py")]
    start = time.perf_counter()
    result = subprocess.run(
        cmd + [f"train.output_dir={tmp_path / 'out'}"], env=env, capture_output=True, text=True, timeout=1800
    )
    minutes = (time.perf_counter() - start) / 60
    assert result.returncode == 0, result.stderr[-6000:]
    ap, ap50, ap75 = map(float, re.findall(r"copypaste: ([\d.]+),([\d.]+),([\d.]+),", result.stdout)[-1])
    # Recorded, not asserted: on 2 CPU cores the run took 10.5 to 12.3 minutes on a day the machine ran
    # slow; on a normal day its base recipe, whose steps cost the same, took 9 min 48 s (docs/training.md).
    print(f"quick start: {minutes:.1f} min, AP {ap:.1f}, AP50 {ap50:.1f}, AP75 {ap75:.1f}")
    # Measured AP 38.9 / AP50 84.9 at this seed, AP50 82.9-86.6 over seeds 0-2 (docs/training.md):
    # the limits leave room for another CPU's rounding, and still fail a model that gives found
    # objects second boxes, as the recipe's base did (AP50 70.9).
    assert ap50 >= 75 and ap >= 35
    assert len(os.listdir(tmp_path / "out" / "predictions")) == 8
