"""Checkpoints survive interrupted saves, and files that would run code when loaded are refused."""
import errno
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import build_model
from yolos_d2.checkpoint import YOLOSCheckpointer, load_weights_file

SMALL = ["model.detector.backbone.depth=1"]


def _linear(seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def test_kill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    """A process SIGKILLed while writing a checkpoint: the previous one stays tagged and loads."""
    script = tmp_path / "save_and_stall.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time, torch
            from yolos_d2.checkpoint import YOLOSCheckpointer

            torch.manual_seed(0)
            checkpointer = YOLOSCheckpointer(torch.nn.Linear(3, 2), sys.argv[1])
            checkpointer.save("model_0000000")

            def stalled_save(obj, f, *args, **kwargs):
                f.write(b"the first bytes of a checkpoint")
                f.flush()
                print("writing", flush=True)
                time.sleep(600)

            torch.save = stalled_save
            checkpointer.save("model_0000001")
            """
        )
    )
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    unfinished, *names = sorted(os.listdir(out))
    assert names == ["last_checkpoint", "model_0000000.pth"]
    assert unfinished.startswith(".model_0000001.pth.") and unfinished.endswith(".tmp")
    model = _linear(seed=1)
    checkpointer = YOLOSCheckpointer(model, str(out))
    assert checkpointer.get_all_checkpoint_files() == [str(out / "model_0000000.pth")]
    checkpointer.resume_or_load("", resume=True)
    expected = _linear(seed=0)
    assert torch.equal(model.weight, expected.weight) and torch.equal(model.bias, expected.bias)


def test_disk_full_while_saving_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, request):
    checkpointer = YOLOSCheckpointer(_linear(seed=0), str(tmp_path))
    checkpointer.save("model_0000000")
    request.getfixturevalue("full_disk")  # torch.save then raises a RuntimeError of its own
    with pytest.raises(OSError) as info:
        checkpointer.save("model_0000001")
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (
        f"[Errno 28] Could not save checkpoint {tmp_path / 'model_0000001.pth'}: ENOSPC (No space left on device). "
        f"The previous checkpoint, {tmp_path / 'model_0000000.pth'}, is intact and tagged as the last one: "
        "--resume continues from it."
    )
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000000.pth"]
    assert checkpointer.get_checkpoint_file() == str(tmp_path / "model_0000000.pth")
    assert torch.equal(load_weights_file(str(tmp_path / "model_0000000.pth"))["model"]["weight"], _linear(0).weight)


def test_disk_full_at_the_first_save_says_there_is_no_earlier_checkpoint(tmp_path, full_disk):
    with pytest.raises(OSError, match=rf"ENOSPC .*No earlier checkpoint is in {tmp_path}\.$"):
        YOLOSCheckpointer(_linear(seed=0), str(tmp_path)).save("model_0000000")
    assert os.listdir(tmp_path) == []


class _CreatesFile:
    """Unpickled by an unrestricted unpickler, it creates the file ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_pickle_that_runs_code_is_refused_without_running_it(tmp_path, suffix):
    marker = tmp_path / "code_ran"
    path = tmp_path / f"evil{suffix}"
    if suffix == ".pth":
        torch.save({"model": {"w": torch.zeros(2)}, "payload": _CreatesFile(str(marker))}, path)
    else:
        path.write_bytes(pickle.dumps({"model": {"w": np.zeros(2)}, "payload": _CreatesFile(str(marker))}))

    with pytest.raises(ValueError, match=rf"Refusing to load .*evil\{suffix}'.*could run code \(.*GLOBAL io.open"):
        load_weights_file(str(path))
    with pytest.raises(ValueError, match=rf"Refusing to load .*evil\{suffix}'"):
        YOLOSCheckpointer(build_model("yolos_ti", SMALL)).load(str(path))
    assert not marker.exists()

    with open(path, "rb") as f:  # the payload is real: plain pickle runs it
        torch.load(f, weights_only=False) if suffix == ".pth" else pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_model_zoo_pickle_of_numpy_arrays_loads(tmp_path, protocol):
    """detectron2's .pkl format ({"model": numpy arrays, "__author__"}), also as Python 2 era files."""
    source = build_model("yolos_ti", SMALL)
    path = tmp_path / "model.pkl"
    arrays = {k: v.numpy() for k, v in source.state_dict().items()}
    path.write_bytes(pickle.dumps({"model": arrays, "__author__": "test"}, protocol=protocol))
    torch.manual_seed(1)
    model = build_model("yolos_ti", SMALL)
    torch.nn.init.normal_(model.detector.backbone.det_token)
    YOLOSCheckpointer(model).load(str(path))
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_empty_and_truncated_files_are_named_with_the_reason(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(ValueError, match=r"^'.*empty\.pth' is not a readable checkpoint: empty file \(0 bytes\)$"):
        load_weights_file(str(empty))
    whole = tmp_path / "whole.pth"
    torch.save({"model": {"weight": torch.zeros(100_000)}}, whole)
    data = whole.read_bytes()
    # Cut in the pickle, in the tensor data (torch's reader then fails with EINVAL), in the zip directory.
    for length in (1, 100, 5000, len(data) // 2, len(data) - 1):
        truncated = tmp_path / f"truncated_{length}.pth"
        truncated.write_bytes(data[:length])
        with pytest.raises(ValueError, match=rf"^'.*truncated_{length}\.pth' is not a readable checkpoint: \S"):
            load_weights_file(str(truncated))


def test_new_keys_leave_to_the_initialisation_only_what_a_conversion_leaves(tmp_path, caplog):
    """A file may not declare the whole model new: strictly it is refused, as any file missing the model's tensors."""
    path = tmp_path / "nothing.pth"
    torch.save({"model": {}, "new_keys": ["detector"]}, path)
    model = build_model("yolos_ti", SMALL)
    missing = r"does not fit the model\..*\n  missing from the checkpoint \(\d+ tensors\): detector\n"
    with pytest.raises(ValueError, match=missing):
        YOLOSCheckpointer(model).load(str(path))
    YOLOSCheckpointer(model, strict=False).load(str(path))
    assert "Loading '" in caplog.text and "partially (strict=False)" in caplog.text


def test_an_ema_that_does_not_fit_is_named_as_the_ema(tmp_path):
    model = build_model("yolos_ti", SMALL)
    weights = model.state_dict()
    ema = {k: v for k, v in weights.items() if k != "detector.backbone.cls_token"}
    path = tmp_path / "model_final.pth"
    torch.save({"model": weights, "ema": {"weights": ema, "num_updates": 3}}, path)
    with pytest.raises(ValueError) as info:
        YOLOSCheckpointer(model, use_ema=True).load(str(path))
    message = str(info.value)
    assert message.startswith(f"Checkpoint '{path}', its EMA of the weights (under 'ema'), does not fit the model.\n")
    assert "missing from the checkpoint (1 tensor): detector.backbone.cls_token" in message
    assert "no YOLOS backbone" not in message
    YOLOSCheckpointer(model, use_ema=False).load(str(path))  # the trained weights are whole
