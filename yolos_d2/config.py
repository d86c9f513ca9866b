"""
Loading LazyConfigs so that mistakes fail at start, naming the file or key and what is allowed:
a config file that does not exist, a ``key=value`` override of a key that does not exist, and
sizes the model cannot work with.

LazyConfig files are Python code, run when loaded: load only configs you trust.
"""
import difflib
import glob
import inspect
import os
from typing import Optional, Sequence, Set

from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog
from detectron2.utils.registry import locate
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from .modeling.position_embedding import embedding_grid

__all__ = ["CONFIG_DIR", "ConfigError", "apply_overrides_strict", "check_config", "load_config"]

# The project's configs (one per variant), listed when a config file is not found.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

# Image sizes in pixels given to detr_test_augmentations and detr_train_augmentations.
_IMAGE_SIZE_KEYS = (
    "dataloader.test.mapper.augmentations.eval_size",
    "dataloader.train.mapper.augmentations.scales",
    "dataloader.train.mapper.augmentations.max_size",
)


class ConfigError(ValueError):
    """A config file, override or setting that cannot work; the message says what is allowed."""


def load_config(config_file: str, overrides: Sequence[str] = ()) -> DictConfig:
    """
    ``LazyConfig.load(config_file)`` with the ``key=value`` ``overrides`` applied by
    :func:`apply_overrides_strict`. A missing file raises :class:`ConfigError` listing the
    project's configs.
    """
    if not os.path.isfile(config_file):
        raise ConfigError(f"Config file {config_file!r} does not exist.{_available_configs(config_file)}")
    return apply_overrides_strict(LazyConfig.load(config_file), overrides)


def _available_configs(missing: str) -> str:
    """The project's configs as a sentence, led by the one whose name is closest to ``missing``'s."""
    project = os.path.dirname(CONFIG_DIR)
    by_name = {os.path.basename(p): os.path.relpath(p, project) for p in glob.glob(f"{CONFIG_DIR}/*.py")}
    close = difflib.get_close_matches(os.path.basename(missing), list(by_name), n=1)
    hint = f" Did you mean {by_name[close[0]]}?" if close else ""
    return f"{hint} Available configs: {', '.join(sorted(by_name.values())) or 'none'}"


def apply_overrides_strict(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """
    detectron2's ``LazyConfig.apply_overrides`` (hydra's override syntax, in place), except that
    overriding a key that does not exist raises :class:`ConfigError` naming it, the keys at its
    level and the closest one, where detectron2 would silently add it. A key exists if the config
    holds it or if it is an argument of the callable of its ``LazyCall`` node (e.g.
    ``model.detector.backbone.drop_path_rate``). ``+key=value`` adds a new key on purpose.

    Returns:
        ``cfg``.
    """
    overrides = list(overrides)
    for override, text in zip(OverridesParser.create().parse_overrides(overrides), overrides):
        if not override.is_add():
            _check_key_exists(cfg, override.key_or_group, text)
    return LazyConfig.apply_overrides(cfg, overrides)


def _check_key_exists(cfg: DictConfig, key: str, override: str) -> None:
    node, parts = cfg, key.split(".")
    for depth, part in enumerate(parts):
        parent = ".".join(parts[:depth]) or "the config"
        if not isinstance(node, (DictConfig, ListConfig)):
            raise ConfigError(f"Cannot apply {override!r}: {parent} is a value ({node!r}), not a group of keys")
        known = _settable_keys(node)
        if known is not None and part not in known:
            close = difflib.get_close_matches(part, sorted(known), n=1)
            hint = f" Did you mean {'.'.join(parts[:depth] + close)!r}?" if close else ""
            raise ConfigError(
                f"Unknown config key {'.'.join(parts[: depth + 1])!r} in {override!r}.{hint} "
                f"Keys of {parent}: {', '.join(sorted(known))}. (Prefix an override with '+' to add a new key.)"
            )
        if depth < len(parts) - 1:
            node = node[part] if isinstance(node, DictConfig) else node[int(part)]


def _settable_keys(node) -> Optional[Set[str]]:
    """The keys an override may set in ``node``; None when any key is accepted (``**kwargs``)."""
    if isinstance(node, ListConfig):
        return {str(i) for i in range(len(node))}
    keys = {k for k in node.keys() if k != "_target_"}
    target = node.get("_target_")
    if target is None:
        return keys
    try:
        params = inspect.signature(locate(target) if isinstance(target, str) else target).parameters.values()
    except (TypeError, ValueError):  # a callable without an inspectable signature
        return None
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return keys | {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_config(cfg: DictConfig) -> None:
    """
    Raise :class:`ConfigError` naming the key for settings that would fail later in a run
    (checked before anything is built): position-embedding sizes that are not whole patches,
    evaluation or training sizes smaller than a patch, datasets that are not registered.
    Keys a config does not have are not checked.
    """
    patch_size = _select(cfg, "model.detector.backbone.patch_size") or 16  # ViTWithDetTokens' default
    for key in ("model.detector.backbone.init_pe_size", "model.detector.backbone.mid_pe_size"):
        size = _select(cfg, key)
        if size is not None:
            try:
                embedding_grid(size, patch_size, key)
            except ValueError as e:
                raise ConfigError(str(e)) from None
    for key in _IMAGE_SIZE_KEYS:
        value = _select(cfg, key)
        too_small = [v for v in (value if OmegaConf.is_list(value) else [value]) if v is not None and v < patch_size]
        if too_small:
            raise ConfigError(
                f"{key}={value} has sizes smaller than one {patch_size}-pixel patch "
                f"(model.detector.backbone.patch_size): use at least {patch_size}"
            )
    for key in ("dataloader.train.dataset.names", "dataloader.test.dataset.names"):
        _check_datasets_registered(key, _select(cfg, key))


def _select(cfg: DictConfig, key: str):
    """
    The value at the dotted ``key``, or None where the config has no such key (OmegaConf.select
    raises instead when the path runs through a list, e.g. an augmentation list).
    """
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node[part]
    return node


def _check_datasets_registered(key: str, names) -> None:
    """``names``: a dataset name or a list of them, the value of ``key``."""
    registered = DatasetCatalog.list()
    for name in [names] if isinstance(names, str) else names or []:
        if name not in registered:
            close = difflib.get_close_matches(name, registered, n=3)
            hint = f" Close registered names: {', '.join(close)}." if close else ""
            raise ConfigError(
                f"{key}: dataset {name!r} is not registered.{hint} Register your own with "
                "yolos_d2.data.register_coco_dataset in the config (see README)."
            )
