"""The tools' shared command line: overrides anywhere, --weights and --device, checked configs, console scripts."""
import argparse
import re
from importlib.metadata import entry_points

import pytest

from conftest import config_path
from yolos_d2.config import ConfigError, prepare_config
from benchmarks import __main__ as benchmark
from benchmarks import evaluation as evaluation_benchmark
from yolos_d2.tools import cli

CONSOLE_SCRIPTS = {
    "yolos-analyze": "yolos_d2.tools.analyze",
    "yolos-attention-maps": "yolos_d2.tools.attention_maps",
    "yolos-browse-data": "yolos_d2.tools.browse_data",
    "yolos-convert": "yolos_d2.tools.convert",
    "yolos-demo": "yolos_d2.tools.demo",
    "yolos-det-token-stats": "yolos_d2.tools.det_token_stats",
    "yolos-export": "yolos_d2.tools.export",
    "yolos-model-info": "yolos_d2.tools.model_info",
    "yolos-submit": "yolos_d2.tools.submit",
    "yolos-sweep": "yolos_d2.tools.sweep",
    "yolos-train": "yolos_d2.tools.train",
}


def parser_with_a_list_option():
    parser = argparse.ArgumentParser()
    cli.add_config_arguments(parser)
    parser.add_argument("--input", nargs="+")
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        ["train.seed=1", "--config-file", "c.py", "--input", "a.png", "b.png", "+train.note=x"],
        ["--config-file", "c.py", "--input", "a.png", "train.seed=1", "b.png", "+train.note=x"],
        ["--input", "a.png", "b.png", "train.seed=1", "+train.note=x", "--config-file", "c.py"],
    ],
)
def test_overrides_are_found_anywhere(argv):
    args = cli.parse_args(parser_with_a_list_option(), argv)
    assert (args.config_file, args.input) == ("c.py", ["a.png", "b.png"])
    assert args.opts == ["train.seed=1", "+train.note=x"]
    assert (args.weights, args.device) == (None, None)


def test_an_argument_that_is_neither_an_option_nor_an_override_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(parser_with_a_list_option(), ["--config-file", "c.py", "stray"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err


def test_weights_and_device_set_the_config_and_overrides_are_strict(tmp_path):
    weights = str(tmp_path / "a path, with = signs.pth")
    cfg = prepare_config(config_path("yolos_ti"), ["train.seed=3"], weights=weights, device="cpu")
    assert (cfg.train.init_checkpoint, cfg.train.device, cfg.train.seed) == (weights, "cpu", 3)
    with pytest.raises(ConfigError, match="Unknown config key 'train.seedd'"):
        prepare_config(config_path("yolos_ti"), ["train.seedd=3"])
    with pytest.raises(ConfigError, match=r"train\.device='tpu'"):  # checked as training checks it
        prepare_config(config_path("yolos_ti"), device="tpu")


def test_usage_errors_end_the_command_with_status_2(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    with pytest.raises(SystemExit) as exit_info, cli.usage_errors(parser):
        raise FileNotFoundError("train.init_checkpoint='x.pth': file not found")
    assert exit_info.value.code == 2
    assert "tool: error: train.init_checkpoint='x.pth': file not found" in capsys.readouterr().err


def test_console_scripts_run_the_tools():
    scripts = {e.name: e for e in entry_points(group="console_scripts") if e.name.startswith("yolos-")}
    assert {name: e.module for name, e in scripts.items()} == CONSOLE_SCRIPTS
    for entry in scripts.values():
        assert entry.attr == "console_main" and callable(entry.load())


def test_benchmark_runs_the_subcommand_with_its_arguments(monkeypatch):
    calls, results = [], []

    def run(*args):
        calls.append(args)
        results.append(measure(*args))
        return results[-1]

    measure = evaluation_benchmark.run
    monkeypatch.setattr(evaluation_benchmark, "run", run)
    assert benchmark.main(["evaluation", "--images", "6", "--categories", "3", "--dets", "10", "--repeats", "1"]) == 0
    assert calls == [(6, 3, 7.0, 10, 1, 0)]  # images, categories, ground truths and detections per image, repeats, seed
    assert [row.name for row in results[0].rows] == ["pycocotools COCOeval", "faster-coco-eval COCOeval_faster"]
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["evaluation", "--imagez", "6"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        # An override before --config-file (detectron2's parser read it as the end of the options).
        (["train.max_iters=10", "--config-file", "CONFIG", "--num-gpus", "1"], "Unknown config key 'train.max_iters'"),
        (["--eval-only", "--config-file", "CONFIG", "train.init_checkpoint="], "--eval-only needs the weights"),
        (["--config-file", "CONFIG", "--device", "tpu"], "train.device='tpu': not a device"),
    ],
)
def test_train_reads_the_whole_command_line_and_stops_at_start(tmp_path, capsys, argv, message):
    from yolos_d2.tools import train

    argv = [config_path("quickstart") if a == "CONFIG" else a for a in argv] + [f"train.output_dir={tmp_path / 'out'}"]
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "validator, text, expected",
    [
        (cli.positive_int, "3", 3),
        (cli.positive_int, "0", "must be at least 1, got 0"),
        (cli.positive_int, "2.5", "must be a whole number, got '2.5'"),
        (cli.non_negative_int, "0", 0),
        (cli.non_negative_int, "-5", "must be at least 0, got -5"),
        (cli.positive_number, "0.5", 0.5),
        (cli.positive_number, "0", "must be above 0, got 0"),
        (cli.positive_number, "inf", "must be a finite number, got inf"),
        (cli.positive_number, "x", "must be a number, got 'x'"),
        (cli.fraction, "1", 1.0),
        (cli.fraction, "nan", "must be a finite number, got nan"),
        (cli.fraction, "-0.1", "must be from 0 to 1, got -0.1"),
        (cli.image_size, "480X640", (480, 640)),
        (cli.image_size, "8193x5", f"must be at most {cli.MAX_IMAGE_SIDE}, got 8193"),
        (cli.image_size, "4x5x6", "must be HEIGHTxWIDTH in pixels, e.g. 480x640, got '4x5x6'"),
    ],
)
def test_argument_validators_take_their_range_and_name_what_is_out_of_it(validator, text, expected):
    if isinstance(expected, str):
        with pytest.raises(argparse.ArgumentTypeError, match=f"^{re.escape(expected)}$"):
            validator(text)
    else:
        assert validator(text) == expected
