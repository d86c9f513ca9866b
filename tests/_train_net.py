"""Running train_net.py in a subprocess whose output and exit status the test reads."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "train_net.py")


def start_train_net(config: str, output_dir: str, *args: str) -> subprocess.Popen:
    """Start ``train_net.py --config-file config *args train.output_dir=output_dir``, capturing its output as text."""
    cmd = [sys.executable, TRAIN_NET, "--config-file", config, *args, f"train.output_dir={output_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_train_net(config: str, output_dir: str, *args: str):
    """Run train_net.py as :func:`start_train_net` does, to its end: (exit status, stdout + stderr)."""
    proc = start_train_net(config, output_dir, *args)
    stdout, stderr = proc.communicate(timeout=600)
    return proc.returncode, stdout + stderr
