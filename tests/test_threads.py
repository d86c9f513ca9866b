"""Choosing torch's intra-op threads from the CPUs this process may use and the load of other processes."""
import logging
import subprocess
import sys
import time

import pytest
import torch

from yolos_d2.config import ConfigError, load_config
from yolos_d2.engine import threads

from conftest import config_path


@pytest.mark.parametrize(
    "cpus, busy, processes, expected",
    [(2, 0.0, 1, 2), (2, 1.0, 1, 1), (2, 1.9, 1, 1), (8, 2.2, 1, 6), (8, 0.0, 2, 4), (8, 3.0, 2, 3), (2, None, 1, 2)],
)
def test_the_count_is_the_free_cpus_shared_by_the_processes(monkeypatch, cpus, busy, processes, expected):
    monkeypatch.setattr(threads, "available_cpus", lambda: float(cpus))
    monkeypatch.setattr(threads, "busy_cpus_elsewhere", lambda: None)
    count, why = threads.choose_num_threads(processes, busy=busy)
    assert count == expected
    assert why.startswith(f"{cpus} CPUs available to this process")


def test_a_spinning_process_is_measured_as_busy():
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = threads.busy_cpus_elsewhere(interval=0.5)
    finally:
        competitor.terminate()
        competitor.wait()
    # One core's worth (the scheduler may give it a little less while other work runs).
    assert busy is not None and busy >= 0.7


def test_this_process_own_work_is_not_counted(monkeypatch):
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: sum(i * i for i in range(3_000_000)))
    busy = threads.busy_cpus_elsewhere()
    assert busy is not None and busy < threads.available_cpus()


def test_omp_num_threads_wins_over_auto_and_a_number_is_taken_as_it_is(monkeypatch, caplog):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert threads.resolve_num_threads("auto") == (1, "OMP_NUM_THREADS=1")
        assert threads.resolve_num_threads(3) == (3, "train.num_threads")
        with caplog.at_level(logging.INFO, logger="yolos_d2.engine.threads"):
            threads.set_num_threads(3, "train.num_threads")
        assert torch.get_num_threads() == 3
        assert "Intra-op threads: 3 (train.num_threads)" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_a_seeded_run_takes_the_cpus_whatever_the_load(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4.0)
    monkeypatch.setattr(threads, "busy_cpus_elsewhere", lambda: 2.0)
    assert threads.resolve_num_threads("auto", processes=2)[0] == 1
    count, why = threads.resolve_num_threads("auto", processes=2, measure_load=False)
    assert count == 2
    assert why == (
        "4 CPUs available to this process, load not measured, so that the count is the same in every run, "
        "shared by 2 processes"
    )


def test_a_resumed_run_takes_the_count_of_its_checkpoint(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.resolve_num_threads("auto", recorded=3) == (3, "recorded in the checkpoint resumed")
    assert threads.resolve_num_threads(3, recorded=3) == (3, "train.num_threads")
    count, why = threads.resolve_num_threads(2, recorded=3)
    assert count == 2 and "the checkpoint resumed was computed with 3, so the results differ" in why


@pytest.mark.parametrize("value", ["0", "two", "1.5"])
def test_num_threads_must_be_auto_or_a_positive_integer(value):
    from yolos_d2.config import check_config

    with pytest.raises(ConfigError, match="train.num_threads"):
        check_config(load_config(config_path("quickstart"), [f"train.num_threads={value}"]))
