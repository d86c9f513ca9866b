"""Config mistakes fail at start with a message naming the file or key and what is allowed."""
import re

import pytest
from omegaconf import OmegaConf

from conftest import REPO, VARIANTS, config_path
from yolos_d2.config import ConfigError, check_config, load_config, prepare_config
from yolos_d2.modeling import ViTWithDetTokens
from yolos_d2.tools.convert import main as convert_main


@pytest.mark.parametrize(
    "override, unknown, suggestion, listed",
    [
        (
            "model.detector.backbone.embed_dimm=3",
            "model.detector.backbone.embed_dimm",
            "model.detector.backbone.embed_dim",
            "depth, drop_path_rate, embed_dim, init_pe_size",
        ),
        ("model.detectr.num_classes=3", "model.detectr", "model.detector", "criterion, detector, input_format"),
        ("train.seedd=1", "train.seedd", "train.seed", "output_dir, schedule, seed"),
    ],
)
def test_unknown_override_key_names_it_the_closest_key_and_the_keys_there(override, unknown, suggestion, listed):
    with pytest.raises(ConfigError) as info:
        load_config(config_path("yolos_ti"), [override])
    message = str(info.value)
    assert message.startswith(f"Unknown config key {unknown!r} in {override!r}. Did you mean {suggestion!r}? Keys of ")
    assert listed in message


def test_override_below_a_value_is_refused():
    with pytest.raises(ConfigError, match=r"Cannot apply 'train.seed.x=1': train.seed is a value \(-1\), not a group"):
        load_config(config_path("yolos_ti"), ["train.seed.x=1"])


def test_existing_keys_call_arguments_and_explicit_additions_are_set():
    cfg = load_config(
        config_path("yolos_ti"),
        [
            "train.init_checkpoint=/weights/yolos_ti_d2.pth",
            "model.detector.backbone.drop_path_rate=0.1",  # an argument of ViTWithDetTokens, not in the config
            "dataloader.train.mapper.augmentations.scales=[320,352]",
            "+train.note=hello",
        ],
    )
    assert cfg.train.init_checkpoint == "/weights/yolos_ti_d2.pth"
    assert cfg.model.detector.backbone.drop_path_rate == 0.1
    assert list(cfg.dataloader.train.mapper.augmentations.scales) == [320, 352]
    assert cfg.train.note == "hello"


@pytest.mark.parametrize(
    "tuple_override, list_override",
    [
        ("model.detector.backbone.init_pe_size=(512,864)", "model.detector.backbone.init_pe_size=[512,864]"),
        ("model.detector.backbone.mid_pe_size=(512, 864)", "model.detector.backbone.mid_pe_size=[512,864]"),
        (  # a call inside the pair is kept
            "dataloader.train.mapper.augmentations.scales=(int(320.0),352)",
            "dataloader.train.mapper.augmentations.scales=[320,352]",
        ),
    ],
)
def test_a_pair_may_be_written_as_a_tuple(tuple_override, list_override):
    key = tuple_override.partition("=")[0]
    as_tuple = OmegaConf.select(load_config(config_path("yolos_ti"), [tuple_override]), key)
    as_list = OmegaConf.select(load_config(config_path("yolos_ti"), [list_override]), key)
    assert list(as_tuple) == list(as_list)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.detector.backbone.init_pe_size=[128,130", "Cannot read the override {!r} (no viable alternative"),
        ("model.detector.backbone.init_pe_size=(128,130", "Cannot read the override {!r} ("),
        ("train.seed=tuple(1)", "Cannot read the override {!r} (HydraException while evaluating 'tuple(1)'"),
        ("~train.seed", "Cannot apply {!r}: deleting a key is not supported"),
        ("model.detector.backbone.init_pe_size=128,130", "Cannot apply {!r}: it gives several values (a sweep)"),
        ("train.seed=range(3)", "Cannot apply {!r}: it gives several values (a sweep)"),
        ("train.ema=5", "Cannot apply {!r}: train.ema is a group of keys (decay, enabled, warmup_iters), not a value"),
        ("+train.seed.x=1", "Cannot apply {!r}: Trying to update key train.seed.x, but train.seed is not a config"),
        (
            "model.detector.backbone.drop_path_rate.x=1",
            "Cannot apply {!r}: model.detector.backbone.drop_path_rate is a value (0.0), not a group of keys",
        ),
    ],
)
def test_override_that_cannot_be_applied_is_named_in_one_line(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(config_path("yolos_ti"), ["train.seed=3", override])
    assert str(info.value).startswith(message.format(override))
    assert "\n" not in str(info.value)


def test_keys_of_a_merged_dict_must_exist():
    with pytest.raises(ConfigError, match=r"^Unknown config key 'train\.ema\.decai' in 'train\.ema=\{decai:0\.5\}'\. "
                                          r"Did you mean 'train\.ema\.decay'\?"):
        load_config(config_path("yolos_ti"), ["train.ema={decai:0.5}"])
    cfg = load_config(config_path("yolos_ti"), ["train={checkpointer:{period:7}}"])
    assert (cfg.train.checkpointer.period, cfg.train.checkpointer.max_to_keep) == (7, 100)


@pytest.mark.parametrize(
    "overrides, refused",
    [
        (["train.ema={decay:0.5}"], "'train.ema={decay:0.5}'"),
        (["train.ema={enabled:false,decay:0.5}"], "'train.ema={enabled:false,decay:0.5}'"),
        (["train={ema:{warmup_iters:10}}"], "'train={ema:{warmup_iters:10}}'"),
        (["+train.ema.extra=1"], "'+train.ema.extra=1'"),
        (["train.ema.enabled=True", "train.ema.decay=0.5", "train.ema.enabled=False"], "'train.ema.decay=0.5'"),
    ],
)
def test_a_switched_off_group_refuses_new_settings_however_they_are_written(overrides, refused):
    with pytest.raises(ConfigError) as info:
        load_config(config_path("yolos_ti"), overrides)
    assert str(info.value) == (
        f"{refused} has no effect while train.ema.enabled=False: add train.ema.enabled=True to use it"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.ema={enabled:true,decay:0.5}"],
        ["train.ema.decay=0.5", "train.ema.enabled=True"],
        ["train={ema:{enabled:true,decay:0.5}}"],
    ],
)
def test_a_switched_on_group_takes_its_settings(overrides):
    cfg = load_config(config_path("yolos_ti"), overrides)
    assert (cfg.train.ema.enabled, cfg.train.ema.decay, cfg.train.ema.warmup_iters) == (True, 0.5, 2000)


def test_a_config_object_is_prepared_on_a_copy():
    cfg = load_config(config_path("yolos_ti"))
    prepared = prepare_config(cfg, ["train.seed=3"], weights="w.pth", device="cpu")
    assert (prepared.train.seed, prepared.train.init_checkpoint, prepared.train.device) == (3, "w.pth", "cpu")
    assert (cfg.train.seed, cfg.train.init_checkpoint) == (-1, "deit_tiny_yolos_d2.pth")
    with pytest.raises(ConfigError, match="Unknown config key 'train.seedd'"):
        prepare_config(cfg, ["train.seedd=3"])
    with pytest.raises(ConfigError, match=r"train\.device='tpu'"):
        prepare_config(cfg, device="tpu")


def test_missing_config_file_lists_the_configs_of_its_folder(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as info:
        load_config("configs/yolos_tiny.py")
    message = str(info.value)
    assert message.startswith("Config file 'configs/yolos_tiny.py' does not exist. Did you mean configs/yolos_ti.py? ")
    assert "Available configs: configs/quickstart.py, configs/yolos_b.py, configs/yolos_s.py" in message
    assert "configs/yolos_ti.py" in message


def test_missing_config_folder_is_named(tmp_path):
    missing = str(tmp_path / "configs" / "yolos_ti.py")
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == (
        f"Config file {missing!r} does not exist. Its folder {str(tmp_path / 'configs')!r} does not exist either."
    )


@pytest.mark.parametrize(
    "node, argument, value, shown",
    [
        ("dataloader.test.mapper.augmentations", "eval_size", "8", "8"),
        ("dataloader.train.mapper.augmentations", "scales", "[8,480]", "[8, 480]"),
        ("dataloader.train.mapper.augmentations", "max_size", "12", "12"),
    ],
)
def test_image_sizes_below_a_patch_fail_at_start(node, argument, value, shown):
    """The augmentations' own checks, run by check_config: sizes are floored to whole 16-pixel patches."""
    cfg = load_config(config_path("yolos_ti"), [f"{node}.{argument}={value}"])
    message = f"{node}: {argument}={shown} must be"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)} .*at least size_multiple=16 pixels$"):
        check_config(cfg)


def test_size_checks_follow_the_patch_size():
    patch_32 = ["model.detector.backbone.patch_size=32", "model.detector.backbone.init_pe_size=[800,1344]"]
    check_config(load_config(config_path("yolos_ti"), patch_32))
    cfg = load_config(config_path("yolos_ti"), [*patch_32, "dataloader.test.mapper.augmentations.eval_size=16"])
    with pytest.raises(ConfigError, match=r"eval_size=16 must be at least size_multiple=32 pixels$"):
        check_config(cfg)
    cfg = load_config(config_path("yolos_ti"), ["model.detector.backbone.patch_size=32"])  # (800, 1328): 41.5 patches
    with pytest.raises(ConfigError, match=r"init_pe_size=\(800, 1328\) must be .* patch_size=32"):
        check_config(cfg)


def test_position_embedding_sizes_must_be_whole_patches():
    small = dict(embed_dim=8, depth=1, num_heads=1)
    # The original's YOLOS-Ti size: floored, it is the grid of 800x1328.
    message = r"^init_pe_size=\(800, 1333\) .*patch_size=16.*nearest valid: \(800, 1328\) or \(800, 1344\)$"
    with pytest.raises(ValueError, match=message):
        ViTWithDetTokens(**small, init_pe_size=(800, 1333))
    with pytest.raises(ValueError, match=r"^mid_pe_size=\(500, 864\) .* nearest valid: \(496, 864\) or \(512, 864\)$"):
        ViTWithDetTokens(**small, init_pe_size=(512, 864), mid_pe_size=(500, 864))
    with pytest.raises(ValueError, match=r"^init_pe_size=\(8, 64\) .* nearest valid: \(16, 64\)$"):
        ViTWithDetTokens(**small, init_pe_size=(8, 64))

    cfg = load_config(config_path("yolos_s"), ["model.detector.backbone.mid_pe_size=[512,860]"])
    with pytest.raises(ConfigError, match=r"^model\.detector\.backbone\.mid_pe_size=\(512, 860\) must be"):
        check_config(cfg)


def test_unregistered_dataset_fails_at_start():
    cfg = load_config(config_path("yolos_ti"), ["dataloader.train.dataset.names=coco_2017_trian"])
    with pytest.raises(ConfigError, match=r"dataset\.names: dataset 'coco_2017_trian' is not registered\. "
                                          r"Close registered names: coco_2017_train"):
        check_config(cfg)


@pytest.mark.parametrize("name", ["quickstart", *VARIANTS])
def test_every_config_passes_the_checks(name):
    check_config(load_config(config_path(name)))


def test_convert_stops_on_config_mistakes(tmp_path, capsys):
    for overrides, message in [
        (["model.detector.backbone.depht=1"], "Unknown config key 'model.detector.backbone.depht'"),
        (["model.detector.backbone.init_pe_size=[800,1333]"], "init_pe_size=(800, 1333) must be"),
    ]:
        with pytest.raises(SystemExit):
            convert_main([str(tmp_path / "in.pth"), str(tmp_path / "out.pth"), "--format", "yolos",
                          "--config-file", config_path("yolos_ti"), *overrides])
        assert message in capsys.readouterr().err
