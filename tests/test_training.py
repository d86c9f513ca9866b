"""End-to-end training through train_net.py on a tiny synthetic dataset, in subprocesses."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import copypaste_ap, run_train_net, start_train_net

# Whole training runs in subprocesses: about two minutes together on 2 CPU cores (-m slow).
pytestmark = pytest.mark.slow


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def final_weights(output_dir):
    """The trained weights and (prefixed "ema/") their EMA, where the run kept one."""
    checkpoint = torch.load(os.path.join(output_dir, "model_final.pth"), weights_only=True)
    ema = checkpoint.get("ema", {}).get("weights") or {}
    return {**checkpoint["model"], **{f"ema/{k}": v for k, v in ema.items()}}


def test_train_evaluate_and_eval_only(tiny_config, tmp_path):
    """
    The loss falls, the run ends with an evaluation and images, and --eval-only reproduces its AP
    and writes its detections into the output folder. log.txt is plain text, says that training
    starts once the data is loaded, and config.yaml and the checkpoints record the thread count.
    """
    out = str(tmp_path / "run")
    _, log = run_train_net(tiny_config, out, check=True)
    assert "Intra-op threads: 1 (OMP_NUM_THREADS=1)" in log
    losses = [m["total_loss"] for m in read_metrics(out) if "total_loss" in m]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < 0.8 * losses[0]
    trained_ap = copypaste_ap(log)
    assert os.path.isfile(os.path.join(out, "predictions", "000001.png"))
    with open(os.path.join(out, "log.txt")) as f:
        log_file = f.read()
    assert "Contents of args.config_file=" in log_file and "\x1b" not in log_file
    assert log_file.index("Dataset 'tiny_train': 48 images") < log_file.index("Starting training from iteration 0")
    with open(os.path.join(out, "config.yaml")) as f:
        assert "  num_threads: 1\n" in f.read()
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["trainer"]["num_threads"] == 1

    evaluation = tmp_path / "eval"
    _, eval_log = run_train_net(
        tiny_config, str(evaluation), "--eval-only", f"train.init_checkpoint={out}/model_final.pth", check=True
    )
    assert copypaste_ap(eval_log) == pytest.approx(trained_ap, abs=1e-4, nan_ok=True)
    with open(evaluation / "inference" / "coco_instances_results.json") as f:
        assert len(json.load(f)) == 16 * 5  # the 5 [DET] tokens' detections on each validation image


# 24 iterations with a checkpoint every 8: after iterations 7, 15 and 23; with an EMA of the
# weights, which the resumed run must restore too. On the CPU, where a run repeats bit for bit: on
# a GPU, the cross-entropy and the backward pass of the bicubic resize of the position embeddings
# add with atomics, in no set order, and have no deterministic mode (torch.use_deterministic_algorithms
# refuses them), so that two runs differ, more with each step.
ON_THE_CPU = "train.device=cpu"
EMA = ["train.ema.enabled=True", "train.ema.decay=0.9", "train.ema.warmup_iters=4"]
RESUMABLE_RUN = [ON_THE_CPU, "train.seed=7", "train.max_iter=24", "train.checkpointer.period=8", *EMA]


@pytest.fixture(scope="module")
def uninterrupted_run(tiny_config, tmp_path_factory):
    """A run of ``RESUMABLE_RUN`` without data-loader workers: its output folder and its log."""
    out = str(tmp_path_factory.mktemp("uninterrupted"))
    _, log = run_train_net(tiny_config, out, *RESUMABLE_RUN, check=True)
    return out, log


def test_eval_only_of_a_checkpoint_with_an_average_evaluates_the_average(tiny_config, uninterrupted_run, tmp_path):
    """As the run's last evaluation did, without train.ema.enabled; train.eval_with_ema=False: the trained weights."""
    out, log = uninterrupted_run
    weights = f"train.init_checkpoint={out}/model_final.pth"
    _, eval_log = run_train_net(tiny_config, str(tmp_path / "ema"), "--eval-only", weights, check=True)
    assert f"Loading the EMA of the weights (24 updates) from '{out}/model_final.pth'" in eval_log
    assert copypaste_ap(eval_log) == pytest.approx(copypaste_ap(log), abs=1e-4, nan_ok=True)
    _, trained_log = run_train_net(
        tiny_config, str(tmp_path / "trained"), "--eval-only", weights, "train.eval_with_ema=False", check=True
    )
    assert "Loading the EMA" not in trained_log and "copypaste: " in trained_log


def last_logged_iteration(output_dir):
    """The last iteration in metrics.json (written every 5), or -1."""
    try:
        with open(os.path.join(output_dir, "metrics.json")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return -1
    complete = lines if lines and lines[-1].endswith("}") else lines[:-1]
    return json.loads(complete[-1])["iteration"] if complete else -1


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_after_kill_matches_uninterrupted_run(tiny_config, uninterrupted_run, tmp_path, num_workers):
    """
    SIGKILL between two checkpoints, then --resume from the earlier one: the same final weights
    and EMA of the weights as a run never stopped, also when a data-loader worker maps the images.
    """
    killed = str(tmp_path / "killed")
    overrides = [*RESUMABLE_RUN, f"dataloader.train.num_workers={num_workers}"]
    proc = start_train_net(tiny_config, killed, *overrides, capture=False)
    try:
        deadline = time.time() + 300
        while last_logged_iteration(killed) < 9:
            assert proc.poll() is None and time.time() < deadline, "the run ended before iteration 9"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with open(os.path.join(killed, "last_checkpoint")) as f:
        checkpoint = f.read()
    assert last_logged_iteration(killed) > int(checkpoint[len("model_") : -len(".pth")]), "killed at a checkpoint"

    _, log = run_train_net(tiny_config, killed, "--resume", *overrides, check=True)
    assert f"Loading from {killed}/{checkpoint}" in log
    assert "Intra-op threads: 1 (recorded in the checkpoint resumed)" in log
    resumed, uninterrupted = final_weights(killed), final_weights(uninterrupted_run[0])
    assert uninterrupted.keys() == resumed.keys()
    assert "ema/detector.backbone.cls_token" in resumed
    for k in uninterrupted:
        torch.testing.assert_close(resumed[k], uninterrupted[k], rtol=0, atol=0, msg=k)


def test_two_cpu_processes_train_in_step(tiny_config, tmp_path):
    """--num-gpus 2 with train.device=cpu runs two gloo processes whose weights and EMA of the weights stay identical."""
    script = tmp_path / "two_ranks.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, torch
            from detectron2.utils import comm
            from yolos_d2.engine import EMAHook, launch
            from yolos_d2.tools import cli, train

            def main(args):
                trainer = train.worker_main(args)
                ema = next(h.ema for h in trainer._hooks if isinstance(h, EMAHook))
                state = {{**trainer.model.module.state_dict(), **{{f"ema/{{k}}": v for k, v in ema.weights.items()}}}}
                torch.save(state, os.path.join({str(tmp_path)!r}, f"rank{{comm.get_rank()}}.pth"))

            if __name__ == "__main__":
                args = cli.parse_args(train.argument_parser())
                launch(main, args.num_gpus, dist_url="auto", args=(args,), device="cpu")
            """
        )
    )
    cmd = [sys.executable, str(script), "--num-gpus", "2", "--config-file", tiny_config]
    out = tmp_path / "out"
    cmd += [f"train.output_dir={out}", ON_THE_CPU, "train.max_iter=6", "train.checkpointer.period=3"]
    cmd += EMA
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-6000:]
    assert "World size: 2" in result.stdout
    assert "Grad strides do not match bucket view strides" not in result.stderr
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pth", weights_only=True) for r in (0, 1))
    after_3_steps = torch.load(out / "model_0000002.pth", weights_only=True)["model"]
    assert not all(torch.equal(after_3_steps[k], rank0[k]) for k in after_3_steps), "no training happened"
    assert not all(torch.equal(rank0[f"ema/{k}"], rank0[k]) for k in after_3_steps), "no EMA kept"
    for k in rank0:
        torch.testing.assert_close(rank1[k], rank0[k], rtol=0, atol=0, msg=k)
