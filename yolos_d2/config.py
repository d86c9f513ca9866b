"""
Loading LazyConfigs so that mistakes fail at start, naming the file or key and what is allowed:
a config file that does not exist, a ``key=value`` override of a key that does not exist, sizes
the model cannot work with, values of the wrong type or range, a device that does not exist and
a batch that does not divide among the processes.

LazyConfig files are Python code, run when loaded: load only configs you trust.
"""
import contextlib
import copy
import difflib
import inspect
import math
import os
from typing import Any, Callable, Optional, Sequence, Set, Union

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.utils.registry import locate
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .modeling.criterion import DEFAULT_LOSS_WEIGHTS
from .modeling.position_embedding import embedding_grid
from .utils.hardware import NATIVE_BF16_FLAGS, cpu_has_native_bf16

__all__ = [
    "AMP_DTYPES",
    "ConfigError",
    "apply_overrides_strict",
    "check_config",
    "check_launch",
    "load_config",
    "prepare_config",
]

# train.amp.dtype -> the autocast dtype; None is full precision, "auto" bfloat16 where the training
# device computes it natively, else full precision (yolos_d2.engine.amp.resolve_amp_dtype).
AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
AMP_AUTO = "auto"

# Config nodes cheap to build whose constructors check their arguments: built by check_config.
_BUILT_AT_START = ("dataloader.train.mapper.augmentations", "dataloader.test.mapper.augmentations", "model.criterion")

_BACKBONE = "model.detector.backbone"

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
    ``model.detector.backbone.drop_path_rate``); the keys of a dict merged into a group
    (``train.ema={decay:0.5}``) must exist too. ``+key=value`` adds a new key on purpose. A pair
    may be written ``(a,b)``, read as the list ``[a,b]``.

    Also raises :class:`ConfigError`, naming the override, for one the parser cannot read, a
    deletion (``~key``), several values (a sweep, ``key=a,b``), a value replacing a group of keys
    (``train.ema=5``), and an override that changes a key of a group that acts only when switched
    on (``train.ema.decay``) while the switch ends up off (``train.ema.enabled=False``).

    Returns:
        ``cfg``.
    """
    texts = list(overrides)
    parsed = [_parse_override(text) for text in texts]
    for override, text in zip(parsed, texts):
        _check_override_keys(cfg, override, text)
    settings_before = _switched_settings(cfg)
    for override, text in zip(parsed, texts):
        try:
            LazyConfig.apply_overrides(cfg, [override.input_line])
        except (KeyError, OmegaConfBaseException) as e:  # e.g. +train.seed.x=1: below a value
            reason = e.args[0] if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise ConfigError(f"Cannot apply {text!r}: {reason}") from None
    _check_switched_on(cfg, settings_before, parsed, texts)
    return cfg


def _parse_override(text: str) -> Override:
    """
    ``text`` read by hydra's override parser; where it cannot read a pair written ``(a,b)``, the
    pair is read as the list ``[a,b]``. Raises :class:`ConfigError` naming an override it cannot read.
    """
    parser = OverridesParser.create()
    try:
        return parser.parse_override(text)
    except HydraException as e:
        # Hydra's first line, less the grammar tokens it expected.
        reason = str(e).splitlines()[0].split(" expecting ")[0]
    key, equals, value = text.partition("=")
    with_lists = key + equals + _tuples_as_lists(value)
    if with_lists != text:
        with contextlib.suppress(HydraException):
            return parser.parse_override(with_lists)
    raise ConfigError(
        f"Cannot read the override {text!r} ({reason}): write key=value, a list or pair as [a,b], a dict as "
        "{k:v}, and quote a string that holds spaces, brackets, commas or '='"
    )


def _tuples_as_lists(value: str) -> str:
    """``value`` with each parenthesised sequence ``(a,b)`` written as the list ``[a,b]``, calls (``int(a)``) kept."""
    chars, opened_tuples = list(value), []
    for i, char in enumerate(value):
        if char == "(":
            opened_tuples.append(i == 0 or not (value[i - 1].isalnum() or value[i - 1] == "_"))
            chars[i] = "[" if opened_tuples[-1] else char
        elif char == ")" and opened_tuples:
            chars[i] = "]" if opened_tuples.pop() else char
    return "".join(chars)


def _check_override_keys(cfg: DictConfig, override: Override, text: str) -> None:
    """The keys ``override`` (written ``text``) sets exist, and it sets a single value."""
    if override.is_delete():
        raise ConfigError(f"Cannot apply {text!r}: deleting a key is not supported; set it to another value")
    if override.is_sweep_override():
        raise ConfigError(f"Cannot apply {text!r}: it gives several values (a sweep); write a list or pair as [a,b]")
    if not override.is_add():
        _check_keys_exist(cfg, override.key_or_group, override.value(), text)


def _check_keys_exist(cfg: DictConfig, key: str, value, override: str) -> None:
    """
    ``key`` exists (:func:`_check_key_exists`); where it holds a group of keys, ``value`` is a dict
    whose keys exist in it (merged into it), or replaces a ``LazyCall`` node (e.g. a list of
    augmentations for the node that builds them).
    """
    _check_key_exists(cfg, key, override)
    try:
        node = _select(cfg, key)
    except OmegaConfBaseException:  # a value that cannot be computed before the overrides: not a group
        return
    if not isinstance(node, DictConfig):
        return
    if isinstance(value, dict):
        if "_target_" not in value:  # a new callable takes other arguments
            for name, item in value.items():
                _check_keys_exist(cfg, f"{key}.{name}", item, override)
    elif node.get("_target_") is None:
        raise ConfigError(
            f"Cannot apply {override!r}: {key} is a group of keys ({', '.join(sorted(node.keys()))}), not a value: "
            "set its keys one by one"
        )


def _switched_settings(cfg: DictConfig) -> dict[str, Any]:
    """
    The keys of each group of :data:`_SWITCHED_GROUPS` but its switch, unresolved, by group; None
    for a group ``cfg`` lacks.
    """
    settings = {}
    for group, switch in _SWITCHED_GROUPS.items():
        node = _select(cfg, group)
        container = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else None
        settings[group] = {k: v for k, v in container.items() if k != switch} if container is not None else None
    return settings


def _check_switched_on(
    cfg: DictConfig, settings_before: dict[str, Any], parsed: Sequence[Override], texts: Sequence[str]
) -> None:
    """
    No group of :data:`_SWITCHED_GROUPS` whose switch is off in ``cfg`` has other settings than in
    ``settings_before`` (:func:`_switched_settings` before the overrides ``texts``, read as ``parsed``).
    """
    settings_after = _switched_settings(cfg)
    for group, switch in _SWITCHED_GROUPS.items():
        if settings_after[group] == settings_before[group] or _select(cfg, f"{group}.{switch}") is not False:
            continue
        setters = [
            text
            for override, text in zip(parsed, texts)
            if _overlaps(override.key_or_group, group) and override.key_or_group != f"{group}.{switch}"
        ]
        raise ConfigError(
            f"{', '.join(map(repr, setters))} has no effect while {group}.{switch}=False: "
            f"add {group}.{switch}=True to use it"
        )


def _overlaps(key: str, group: str) -> bool:
    """Whether setting ``key`` may set keys of ``group``: it is the group, inside it, or holds it."""
    return key == group or key.startswith(group + ".") or group.startswith(key + ".")


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
        if depth < len(parts) - 1 and isinstance(node, ListConfig):
            node = node[int(part)]
        elif depth < len(parts) - 1:
            # An argument the config does not set holds its callable's default.
            node = node[part] if part in node else _call_argument(cfg, ".".join(parts[:depth]), part)


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
    or range (:data:`_VALUE_RULES`), more threads than the CPUs this process may use, a
    learning-rate schedule that does not fit the run, a device that does not exist, a width the
    heads do not divide, position-embedding sizes that are not whole patches (the backbone's own
    check), augmentations and a loss whose constructors refuse their arguments (e.g. sizes smaller
    than a patch, matcher costs all 0; they are built here), datasets that are not registered.
    Values are read resolved, as the run will see them; one that cannot be computed is named with
    its expression. Keys a config does not have are not checked.
    """
    _check_values(cfg)
    _check_num_threads(cfg)
    _check_schedule(cfg)
    _check_device(cfg)
    _check_backbone_sizes(cfg)
    for key in _BUILT_AT_START:
        _check_builds(cfg, key)
    for key in ("dataloader.train.dataset.names", "dataloader.test.dataset.names"):
        _check_datasets_registered(key, _select(cfg, key))


def _check_backbone_sizes(cfg: DictConfig) -> None:
    """The width divides among the heads; position-embedding sizes are whole patches (the backbone's own check)."""
    width, heads = _call_argument(cfg, _BACKBONE, "embed_dim"), _call_argument(cfg, _BACKBONE, "num_heads")
    if width is not None and heads is not None and width % heads:
        raise ConfigError(
            f"{_BACKBONE}.embed_dim={width} is not divisible by {_BACKBONE}.num_heads={heads}: use a multiple of it"
        )
    patch_size = _call_argument(cfg, _BACKBONE, "patch_size")
    for name in ("init_pe_size", "mid_pe_size"):
        size = _call_argument(cfg, _BACKBONE, name)
        if size is not None and patch_size is not None:
            try:
                embedding_grid(size, patch_size, f"{_BACKBONE}.{name}")
            except ValueError as e:
                raise ConfigError(str(e)) from None


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
    processes, several processes on one numbered device (e.g. ``cuda:1``), more processes than
    GPUs on a CUDA device, TF32 (``train.allow_tf32``) on a device other than CUDA, training
    autocast the CPU does not compute natively (``train.amp.dtype`` float16, or bfloat16 without
    AVX512-BF16 or AMX).
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
    if device is not None and torch.device(device).index is not None and num_gpus_per_machine > 1:
        raise ConfigError(
            f"--num-gpus {num_gpus_per_machine} with train.device={device!r}: every process would run on that "
            f"one device; use train.device='{torch.device(device).type}' (each process takes its own)"
        )
    if device is not None and torch.device(device).type == "cuda" and num_gpus_per_machine > torch.cuda.device_count():
        raise ConfigError(
            f"--num-gpus {num_gpus_per_machine} with train.device={device!r}: this machine has "
            f"{torch.cuda.device_count()} GPUs"
        )
    if _value(cfg, "train.allow_tf32") and device is not None and torch.device(device).type != "cuda":
        raise ConfigError(
            f"train.allow_tf32=True with train.device={device!r}: TF32 is a mode of NVIDIA GPUs, for "
            "train.device=cuda only; set train.allow_tf32=False"
        )
    if training and device is not None and torch.device(device).type == "cpu":
        _check_cpu_autocast(_value(cfg, "train.amp.dtype"), device)


def _check_cpu_autocast(amp_dtype: Optional[str], device: str) -> None:
    """Training autocast in ``amp_dtype`` on the CPU ``device``: only bfloat16, and only where native."""
    if amp_dtype == "float16":
        raise ConfigError(
            f"train.amp.dtype='float16' with train.device={device!r}: float16 autocast is for CUDA devices; "
            f"on the CPU use {AMP_AUTO!r} (bfloat16 where the CPU computes it natively) or null"
        )
    if amp_dtype == "bfloat16" and not cpu_has_native_bf16():
        raise ConfigError(
            f"train.amp.dtype='bfloat16' with train.device={device!r}: this CPU has no "
            f"{' or '.join(NATIVE_BF16_FLAGS)}, so bfloat16 would be emulated, slower than float32; "
            f"use null or {AMP_AUTO!r} (float32 on this CPU)"
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_unit_pair(value) -> bool:
    return isinstance(value, (ListConfig, list, tuple)) and len(value) == 2 and all(
        _is_number(v) and 0 <= v < 1 for v in value
    )


def _is_rgb(value, test: Callable[[Any], bool] = _is_number) -> bool:
    return isinstance(value, (ListConfig, list, tuple)) and len(value) == 3 and all(test(v) for v in value)


# A rule of _VALUE_RULES: (key, test, what is allowed).
_Rule = tuple[str, Callable[[Any], bool], str]


def _rules(keys: Sequence[str], test: Callable[[Any], bool], allowed: str) -> tuple[_Rule, ...]:
    """One rule of :data:`_VALUE_RULES` for each of ``keys``."""
    return tuple((key, test, allowed) for key in keys)


_INTEGER_FROM_1 = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
_INTEGER_FROM_0 = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_POSITIVE_NUMBER = (lambda v: _is_number(v) and v > 0, "a number > 0")
_NUMBER_FROM_0 = (lambda v: _is_number(v) and v >= 0, "a number >= 0")
_BOOL = (lambda v: isinstance(v, bool), "True or False")

# Checked in this order where the config has the key: inputs of computed values (the total batch,
# from which the paper configs compute train.max_iter) first.
_VALUE_RULES: tuple[_Rule, ...] = (
    *_rules(
        [
            "dataloader.train.total_batch_size",
            "train.max_iter",
            "train.checkpointer.period",
            "train.log_period",
            "train.schedule.reference_batch_size",
        ],
        *_INTEGER_FROM_1,
    ),
    ("train.checkpointer.max_to_keep", lambda v: v is None or (_is_int(v) and v >= 1), "None or an integer >= 1"),
    ("train.eval_period", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: only after the last iteration)"),
    (
        "train.seed",
        lambda v: _is_int(v) and (v == -1 or 0 <= v < 2**64),
        "an integer, -1 (drawn at random) or from 0 to 2**64 - 1",
    ),
    ("train.output_dir", lambda v: isinstance(v, str) and v.strip() != "", "a non-empty path"),
    *_rules(["dataloader.train.num_workers", "dataloader.test.num_workers"], *_INTEGER_FROM_0),
    *_rules(["optimizer.lr", "optimizer.eps"], *_POSITIVE_NUMBER),
    ("optimizer.weight_decay", *_NUMBER_FROM_0),
    ("optimizer.betas", _is_unit_pair, "two numbers in [0, 1)"),
    ("lr_multiplier.warmup_factor", lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    ("lr_multiplier.warmup_lr", *_NUMBER_FROM_0),
    ("train.clip_grad_norm", lambda v: _is_number(v) and v >= 0, "a number >= 0 (0 disables clipping)"),
    ("train.num_threads", lambda v: v == "auto" or (_is_int(v) and v >= 1), "'auto' or an integer >= 1"),
    ("train.ema.enabled", *_BOOL),
    ("train.ema.decay", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("train.ema.warmup_iters", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: no warm-up)"),
    (
        "train.amp.dtype",
        lambda v: v is None or v == AMP_AUTO or v in AMP_DTYPES,
        f"one of {', '.join(map(repr, [None, AMP_AUTO, *AMP_DTYPES]))} (None is written null in an override)",
    ),
    *_rules(
        [
            "train.init_checkpoint_strict",
            "train.eval_with_ema",
            "train.allow_tf32",
            "train.schedule.scale_lr",
            "train.ddp.broadcast_buffers",
            "train.ddp.find_unused_parameters",
            "model.clip_boxes",
        ],
        *_BOOL,
    ),
    ("train.prediction_images.num_images", *_INTEGER_FROM_1),
    ("train.prediction_images.scale", *_POSITIVE_NUMBER),
    ("train.prediction_images.score_threshold", lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("model.detector.num_classes", *_INTEGER_FROM_1),
    *_rules(
        [f"{_BACKBONE}.{k}" for k in ("embed_dim", "depth", "num_heads", "patch_size", "num_det_tokens")],
        *_INTEGER_FROM_1,
    ),
    *_rules([f"{_BACKBONE}.mlp_ratio", f"{_BACKBONE}.norm_eps"], *_POSITIVE_NUMBER),
    (f"{_BACKBONE}.drop_path_rate", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    (f"{_BACKBONE}.pe_cache_size", *_INTEGER_FROM_0),
    *_rules([f"{_BACKBONE}.qkv_bias", f"{_BACKBONE}.use_act_checkpoint"], *_BOOL),
    ("model.pixel_mean", _is_rgb, "three numbers (R, G, B), in 0-255 pixel units"),
    ("model.pixel_std", lambda v: _is_rgb(v, lambda x: _is_number(x) and x > 0), "three numbers > 0 (R, G, B)"),
    ("model.size_divisibility", *_INTEGER_FROM_0),
    ("model.criterion.eos_coef", lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    *_rules([f"model.criterion.loss_weights.{name}" for name in DEFAULT_LOSS_WEIGHTS], *_NUMBER_FROM_0),
    *_rules([f"model.criterion.matcher.cost_{k}" for k in ("class", "bbox", "giou")], *_NUMBER_FROM_0),
)


def _check_values(cfg: DictConfig) -> None:
    for key, test, allowed in _VALUE_RULES:
        if _has_key(cfg, key):
            value = _value(cfg, key)
            if not test(value):
                raise ConfigError(f"{_shown(cfg, key, value)}: must be {allowed}")


def _check_num_threads(cfg: DictConfig) -> None:
    """``train.num_threads``, if a number, at most the CPUs this process may use (its affinity mask)."""
    threads = _value(cfg, "train.num_threads")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if _is_int(threads) and threads > cpus:
        raise ConfigError(
            f"train.num_threads={threads}: must be 'auto' or an integer from 1 to {cpus}, the CPUs this process may use"
        )


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
