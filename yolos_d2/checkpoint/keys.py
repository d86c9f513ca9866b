"""Naming sets of state-dict keys compactly, by module, for error messages and logs."""
from typing import Iterable, List, Set, Tuple

__all__ = ["compact_key_names"]

Path = Tuple[str, ...]


def compact_key_names(keys: Iterable[str], universe: Iterable[str]) -> List[str]:
    """
    Name ``keys``, a subset of the state-dict keys ``universe``, by module: a module of several
    tensors, all of them in ``keys``, is named once, and consecutive numbered modules named this
    way become a range. For example, blocks 1 to 3 of a 4-block backbone give
    ``["detector.backbone.blocks.1-3"]``; other tensors keep their full names.

    Returns:
        the names, sorted by module name, numbered modules in numeric order.
    """
    return _compact((), {_split(k) for k in keys}, {_split(k) for k in universe})


def _split(key: str) -> Path:
    return tuple(key.split("."))


def _compact(prefix: Path, keys: Set[Path], universe: Set[Path]) -> List[str]:
    if prefix and keys == universe:
        return [".".join(prefix + path) for path in keys] if len(keys) == 1 else [".".join(prefix)]
    names: List[str] = []
    run: List[int] = []  # consecutive numbered children, each named whole

    def end_run():
        if run:
            numbers = f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0])
            names.append(".".join(prefix + (numbers,)))
            run.clear()

    for child in sorted({k[0] for k in keys}, key=_natural_order):
        child_keys = {k[1:] for k in keys if k[0] == child}
        child_universe = {k[1:] for k in universe if k[0] == child}
        whole = child_keys == child_universe and len(child_keys) > 1
        if whole and child.isdigit() and (not run or int(child) == run[-1] + 1):
            run.append(int(child))
            continue
        end_run()
        if whole and child.isdigit():
            run.append(int(child))
        else:
            names += _compact(prefix + (child,), child_keys, child_universe)
    end_run()
    return names


def _natural_order(part: str):
    return (0, int(part), "") if part.isdigit() else (1, 0, part)
