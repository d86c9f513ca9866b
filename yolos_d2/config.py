"""
Loading LazyConfigs so that mistakes fail at start, naming the file or key and what is allowed:
a config file that does not exist, a ``key=value`` override of a key that does not exist, sizes
the model cannot work with, values of the wrong type or range, a device that does not exist and
a batch that does not divide among the processes.

LazyConfig files are Python code, run when loaded: load only configs you trust.
"""
import copy
import difflib
import inspect
import math
import os
from typing import Any, Callable, Optional, Sequence, Set, Tuple, Union

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.utils.registry import locate
from hydra.core.override_parser.overrides_parser import OverridesParser
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .modeling.position_embedding import embedding_grid

__all__ = [
    "AMP_DTYPES",
    "ConfigError",
    "apply_overrides_strict",
    "check_config",
    "check_launch",
    "load_config",
    "prepare_config",
]

# train.amp.dtype -> the autocast dtype; None is full precision.
AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}

# Config nodes cheap to build whose constructors check their arguments: built by check_config.
_BUILT_AT_START = ("dataloader.train.mapper.augmentations", "dataloader.test.mapper.augmentations")

# Groups of keys that act only when the group's switch is on: group -> switch key in the group.
_SWITCHED_GROUPS = {"train.ema": "enabled"}


class ConfigError(ValueError):
    """A config file, override or setting that cannot work; the message says what is allowed."""


def load_config(config_file: str, overrides: Sequence[str] = ()) -> DictConfig:
    """
    ``LazyConfig.load(config_file)`` with the ``key=value`` ``overrides`` applied by
    :func:`apply_overrides_strict`. A missing file raises :class:`ConfigError` listing the
    configs of the folder its path points into.
    """
    if not os.path.isfile(config_file):
        raise ConfigError(f"Config file {config_file!r} does not exist.{_available_configs(config_file)}")
    return apply_overrides_strict(LazyConfig.load(config_file), overrides)


def prepare_config(
    config: Union[str, os.PathLike, DictConfig],
    overrides: Sequence[str] = (),
    weights: Optional[str] = None,
    device: Optional[str] = None,
) -> DictConfig:
    """
    A config to build a model from: the file ``config`` loaded by :func:`load_config` with the
    ``key=value`` ``overrides``, or a copy of the config object ``config`` (left unchanged) with
    them applied by :func:`apply_overrides_strict`; ``train.init_checkpoint`` set to ``weights``
    and ``train.device`` to ``device`` where given; checked by :func:`check_config`. Raises
    :class:`ConfigError`.
    """
    if isinstance(config, DictConfig):
        cfg = apply_overrides_strict(copy.deepcopy(config), overrides)
    else:
        cfg = load_config(os.fspath(config), overrides)
    # Set directly rather than as override text: a path may hold characters the override grammar reads.
    if weights is not None:
        cfg.train.init_checkpoint = weights
    if device is not None:
        cfg.train.device = device
    check_config(cfg)
    return cfg


def _available_configs(missing: str) -> str:
    """
    The ``.py`` configs of the folder the path ``missing`` points into, as a sentence led by the
    one whose name is closest to ``missing``'s; or that the folder does not exist.
    """
    folder, name = os.path.split(missing)
    if folder and not os.path.isdir(folder):
        return f" Its folder {folder!r} does not exist either."
    names = sorted(
        n for n in os.listdir(folder or ".") if n.endswith(".py") and os.path.isfile(os.path.join(folder, n))
    )
    if not names:
        return f" There is no .py config in {repr(folder) if folder else 'the current folder'}."
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {os.path.join(folder, close[0])}?" if close else ""
    return f"{hint} Available configs: {', '.join(os.path.join(folder, n) for n in names)}"


def apply_overrides_strict(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """
    detectron2's ``LazyConfig.apply_overrides`` (hydra's override syntax, in place), except that
    overriding a key that does not exist raises :class:`ConfigError` naming it, the keys at its
    level and the closest one, where detectron2 would silently add it. A key exists if the config
    holds it or if it is an argument of the callable of its ``LazyCall`` node (e.g.
    ``model.detector.backbone.drop_path_rate``). ``+key=value`` adds a new key on purpose.
    Setting a key of a group that acts only when switched on (``train.ema.decay``) while the
    switch is off (``train.ema.enabled=False``) raises :class:`ConfigError` too.

    Returns:
        ``cfg``.
    """
    overrides = list(overrides)
    parsed = OverridesParser.create().parse_overrides(overrides)
    for override, text in zip(parsed, overrides):
        if not override.is_add():
            _check_key_exists(cfg, override.key_or_group, text)
    LazyConfig.apply_overrides(cfg, overrides)
    for override, text in zip(parsed, overrides):
        _check_switched_on(cfg, override.key_or_group, text)
    return cfg


def _check_switched_on(cfg: DictConfig, key: str, override: str) -> None:
    for group, switch in _SWITCHED_GROUPS.items():
        if key.startswith(group + ".") and key != f"{group}.{switch}" and _select(cfg, f"{group}.{switch}") is False:
            raise ConfigError(
                f"{override!r} has no effect while {group}.{switch}=False: add {group}.{switch}=True to use it"
            )


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
    if node.get("_target_") is None:
        return keys
    params = _call_parameters(node)
    if params is None or any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return keys | {p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _call_parameters(node: DictConfig):
    """The parameters of the callable of the ``LazyCall`` node ``node``; None if it cannot be inspected."""
    target = node["_target_"]
    try:
        return inspect.signature(locate(target) if isinstance(target, str) else target).parameters
    except (TypeError, ValueError):  # a callable without an inspectable signature
        return None


def _call_argument(cfg: DictConfig, node_key: str, name: str):
    """
    The argument ``name`` the ``LazyCall`` node at ``node_key`` calls its callable with: its value
    in the config, else the callable's default; None where there is neither.
    """
    node = _select(cfg, node_key)
    if not isinstance(node, DictConfig):
        return None
    if name in node:
        return _value(cfg, f"{node_key}.{name}")
    params = _call_parameters(node) if node.get("_target_") is not None else None
    param = params.get(name) if params is not None else None
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def check_config(cfg: DictConfig) -> None:
    """
    Raise :class:`ConfigError` naming the key, its value and what is allowed for settings that
    would fail later in a run (checked before anything large is built): values of the wrong type
    or range (:data:`_VALUE_RULES`), a learning-rate schedule that does not fit the run, a device
    that does not exist, position-embedding sizes that are not whole patches (the backbone's own
    check), augmentations whose constructors refuse their arguments (e.g. sizes smaller than a
    patch; they are built here), datasets that are not registered. Values are read resolved, as
    the run will see them; one that cannot be computed is named with its expression. Keys a
    config does not have are not checked.
    """
    _check_values(cfg)
    _check_schedule(cfg)
    _check_device(cfg)
    backbone = "model.detector.backbone"
    patch_size = _call_argument(cfg, backbone, "patch_size")
    for name in ("init_pe_size", "mid_pe_size"):
        size = _call_argument(cfg, backbone, name)
        if size is not None and patch_size is not None:
            try:
                embedding_grid(size, patch_size, f"{backbone}.{name}")
            except ValueError as e:
                raise ConfigError(str(e)) from None
    for key in _BUILT_AT_START:
        _check_builds(cfg, key)
    for key in ("dataloader.train.dataset.names", "dataloader.test.dataset.names"):
        _check_datasets_registered(key, _select(cfg, key))


def _check_builds(cfg: DictConfig, key: str) -> None:
    """Build the config node at ``key``, if any: an argument its constructor refuses is a ConfigError naming ``key``."""
    node = _value(cfg, key)
    if node is None:
        return
    try:
        instantiate(node)
    except (ValueError, TypeError, OmegaConfBaseException) as e:
        raise ConfigError(f"{key}: {str(e).splitlines()[0]}") from None


def check_launch(cfg: DictConfig, num_gpus_per_machine: int, num_machines: int = 1, training: bool = True) -> None:
    """
    Raise :class:`ConfigError` if ``cfg`` (checked by :func:`check_config`) cannot run in
    ``num_gpus_per_machine`` processes on each of ``num_machines`` machines (``yolos-train``'s
    ``--num-gpus`` and ``--num-machines``): a training batch that does not divide among the
    processes, more processes than GPUs on a CUDA device.
    """
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ConfigError(f"--num-gpus {num_gpus_per_machine} --num-machines {num_machines}: each must be at least 1")
    processes = num_gpus_per_machine * num_machines
    batch = _value(cfg, "dataloader.train.total_batch_size")
    if training and batch is not None and batch % processes:
        raise ConfigError(
            f"dataloader.train.total_batch_size={batch} is not divisible by the {processes} processes "
            f"(--num-gpus {num_gpus_per_machine} x --num-machines {num_machines}): use a multiple of {processes}"
        )
    device = _value(cfg, "train.device")
    if device is not None and torch.device(device).type == "cuda" and num_gpus_per_machine > torch.cuda.device_count():
        raise ConfigError(
            f"--num-gpus {num_gpus_per_machine} with train.device={device!r}: this machine has "
            f"{torch.cuda.device_count()} GPUs"
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# (key, test, what is allowed), checked in this order where the config has the key: inputs of
# computed values (the total batch, from which the paper configs compute train.max_iter) first.
_VALUE_RULES: Tuple[Tuple[str, Callable[[Any], bool], str], ...] = (
    ("dataloader.train.total_batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train.max_iter", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train.checkpointer.period", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train.checkpointer.max_to_keep", lambda v: v is None or (_is_int(v) and v >= 1), "None or an integer >= 1"),
    ("train.eval_period", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: only after the last iteration)"),
    ("train.log_period", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("optimizer.lr", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("train.clip_grad_norm", lambda v: _is_number(v) and v >= 0, "a number >= 0 (0 disables clipping)"),
    ("train.num_threads", lambda v: v == "auto" or (_is_int(v) and v >= 1), "'auto' or an integer >= 1"),
    ("train.ema.enabled", lambda v: isinstance(v, bool), "True or False"),
    ("train.ema.decay", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("train.ema.warmup_iters", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: no warm-up)"),
    (
        "train.amp.dtype",
        lambda v: v is None or v in AMP_DTYPES,
        f"one of {', '.join(map(repr, [None, *AMP_DTYPES]))}",
    ),
)


def _check_values(cfg: DictConfig) -> None:
    for key, test, allowed in _VALUE_RULES:
        if _has_key(cfg, key):
            value = _value(cfg, key)
            if not test(value):
                raise ConfigError(f"{_shown(cfg, key, value)}: must be {allowed}")


def _check_schedule(cfg: DictConfig) -> None:
    """The schedule's minimum and warmup (of ``warmup_cosine`` or ``EpochCosine``) within the run's."""
    lr, min_lr = _value(cfg, "optimizer.lr"), _value(cfg, "lr_multiplier.min_lr")
    if lr is not None and min_lr is not None and not (_is_number(min_lr) and 0 < min_lr <= lr):
        raise ConfigError(
            f"{_shown(cfg, 'lr_multiplier.min_lr', min_lr)}: must be a number > 0 and at most optimizer.lr={lr!r}"
        )
    for warmup, length in (("warmup_iters", "max_iter"), ("warmup_epochs", "epochs")):
        value, limit = _value(cfg, f"lr_multiplier.{warmup}"), _value(cfg, f"lr_multiplier.{length}")
        if value is not None and limit is not None and not (_is_int(value) and 0 <= value <= limit):
            raise ConfigError(
                f"{_shown(cfg, f'lr_multiplier.{warmup}', value)}: must be an integer from 0 to "
                f"lr_multiplier.{length}={limit!r}"
            )


def _check_device(cfg: DictConfig) -> None:
    """``train.device`` exists on this machine; CUDA is asked for its device count only, not started."""
    device = _value(cfg, "train.device")
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"train.device={device!r}: not a device; use 'cpu', 'cuda' or 'cuda:N'") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(
                f"train.device={device!r}: CUDA is not available on this machine (no GPU, or a torch "
                "built without CUDA); use train.device=cpu"
            )
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"train.device={device!r}: this machine has {count} GPUs, cuda:0 to cuda:{count - 1}")
    elif parsed.type != "cpu":
        try:
            torch.empty(0, device=parsed)
        except RuntimeError as e:
            raise ConfigError(f"train.device={device!r} is not available on this machine: {e}") from None


def _has_key(cfg: DictConfig, key: str) -> bool:
    parent_key, _, name = key.rpartition(".")
    parent = _select(cfg, parent_key) if parent_key else cfg
    return isinstance(parent, DictConfig) and name in parent


def _value(cfg: DictConfig, key: str):
    """
    The resolved value at the dotted ``key``, or None where the config has no such key. A value
    whose interpolation cannot be computed raises :class:`ConfigError` naming the key and its
    expression.
    """
    try:
        return _select(cfg, key)
    except OmegaConfBaseException as e:
        reason = str(e).splitlines()[0]
        raise ConfigError(f"{key}={_expression(cfg, key)} cannot be computed: {reason}") from None


def _expression(cfg: DictConfig, key: str) -> Optional[str]:
    """The interpolation that computes ``key``'s value, or None if it is set directly."""
    parent_key, _, name = key.rpartition(".")
    parent = _select(cfg, parent_key) if parent_key else cfg
    if not OmegaConf.is_interpolation(parent, name):
        return None
    return OmegaConf.to_container(parent, resolve=False)[name]


def _shown(cfg: DictConfig, key: str, value) -> str:
    """``key=value`` for a message; a value computed by an interpolation is shown with it."""
    text = repr(value)
    text = text if len(text) <= 40 else f"{text[:37]}..."
    expression = _expression(cfg, key)
    return f"{key}={text}" if expression is None else f"{key}={expression} gives {text}"


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
