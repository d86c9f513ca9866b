"""
The names every converted layout shares, and the engine that renames keys between a layout and
yolos_d2's.

A layout is a :class:`KeyMap` of name templates, read one way to convert in and the other way to
convert out. yolos_d2's names are those of a :class:`yolos_d2.modeling.YOLOS` state dict (keys
under ``detector.``). What is not a renaming is a pair of functions, one the inverse of the
other: here the one both the original YOLOS and transformers need, their ``[CLS]``, patch and
``[DET]`` position embeddings in one tensor (:func:`split_pos_embed`, :func:`join_pos_embed`).
"""
import dataclasses
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..modeling.position_embedding import Grid

__all__ = [
    "BACKBONE",
    "DET_POS_EMBED",
    "MID_POS_EMBED",
    "POS_EMBED",
    "QKV_PARTS",
    "Converted",
    "KeyMap",
    "KeyTemplate",
    "StateDict",
    "join_pos_embed",
    "rename_all",
    "require_keys",
    "split_pos_embed",
    "without_pos_embeds",
]

StateDict = Dict[str, torch.Tensor]
BACKBONE = "detector.backbone."
POS_EMBED = BACKBONE + "pos_embed"
DET_POS_EMBED = BACKBONE + "det_pos_embed"
MID_POS_EMBED = BACKBONE + "mid_pos_embed"
# The parts of an attention projection that yolos_d2 (as timm) holds in one ``qkv`` layer, in its order.
QKV_PARTS = ("query", "key", "value")


@dataclasses.dataclass
class Converted:
    """A checkpoint converted to yolos_d2's names."""

    state: StateDict
    # Keys of the source that the model has no use for (heads of other tasks, optimizer state, ...).
    dropped: List[str]
    # Patch grid (rows, cols) of each position embedding in ``state``, where the source says.
    grids: Dict[str, Grid]
    # The model's tensors or modules the source format does not have: they are written under
    # "new_keys", and YOLOSCheckpointer leaves them to the model's initialisation.
    new_keys: List[str] = dataclasses.field(default_factory=list)
    # The source's LayerNorm epsilon, where it says (a Hugging Face config.json).
    layer_norm_eps: Optional[float] = None


class KeyTemplate:
    """A key name in which "{}" stands for one name part (e.g. a block index); ending in "." it names a prefix."""

    def __init__(self, text: str):
        self.text = text
        self.is_prefix = text.endswith(".")
        pattern = re.escape(text).replace(r"\{\}", r"(\w+)")
        self.regex = re.compile(f"^{pattern}{'(.+)' if self.is_prefix else ''}$")

    def match(self, key: str) -> Optional[List[str]]:
        """The name parts of ``key`` (then, for a prefix, the rest of the key), or None if it does not match."""
        match = self.regex.match(key)
        return list(match.groups()) if match else None

    def fill(self, parts: Sequence[str]) -> str:
        """The key of these name parts, as :meth:`match` returns them."""
        if self.is_prefix:
            *parts, rest = parts
            return self.text.format(*parts) + rest
        return self.text.format(*parts)


class KeyMap:
    """
    A one-to-one renaming between the keys of another layout ("theirs") and yolos_d2's ("ours"),
    given as (theirs, ours) pairs of name templates: a template ending in "." renames every key
    under that prefix, another one key; "{}" stands for a name part such as a block index.
    """

    def __init__(self, pairs: Sequence[Tuple[str, str]]):
        self._pairs = [(KeyTemplate(theirs), KeyTemplate(ours)) for theirs, ours in pairs]
        for theirs, ours in self._pairs:
            if theirs.is_prefix != ours.is_prefix:
                raise ValueError(f"{theirs.text!r} and {ours.text!r}: a prefix can only be renamed to a prefix")

    def to_ours(self, key: str) -> Optional[str]:
        """Our name of their ``key``, or None if no template matches it."""
        return self._rename(key, 0)

    def to_theirs(self, key: str) -> Optional[str]:
        """Their name of our ``key``, or None if no template matches it."""
        return self._rename(key, 1)

    def _rename(self, key: str, side: int) -> Optional[str]:
        for pair in self._pairs:
            parts = pair[side].match(key)
            if parts is not None:
                return pair[1 - side].fill(parts)
        return None


def rename_all(state: StateDict, rename: Callable[[str], Optional[str]], layout: str) -> StateDict:
    """``state`` with each key renamed by ``rename``; raises ``KeyError`` naming the keys ``layout`` has no name for."""
    renamed = {key: rename(key) for key in state}
    unnamed = sorted(key for key, name in renamed.items() if name is None)
    if unnamed:
        raise KeyError(f"No name in {layout} for {', '.join(unnamed)}")
    return {renamed[key]: value for key, value in state.items()}


def require_keys(source: str, state: StateDict, keys: Sequence[str], what: str) -> None:
    """Raise ``KeyError`` naming ``source`` and ``what`` it should be if ``state`` lacks any of ``keys``."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise KeyError(f"{source!r} is not {what} checkpoint: it has no {', '.join(missing)}")


def split_pos_embed(pos_embed: torch.Tensor, num_det_tokens: int) -> StateDict:
    """
    (1, 1 + G + K, D) position embeddings of [CLS], patches, [DET] -> the backbone's ``pos_embed``
    (1, 1 + G, D) and ``det_pos_embed`` (1, K, D).
    """
    num_tokens = pos_embed.shape[1]
    return {
        POS_EMBED: pos_embed[:, : num_tokens - num_det_tokens],
        DET_POS_EMBED: pos_embed[:, num_tokens - num_det_tokens :],
    }


def join_pos_embed(state: StateDict) -> torch.Tensor:
    """The inverse of :func:`split_pos_embed`: (1, 1 + G + K, D) from a yolos_d2 state dict."""
    return torch.cat([state[POS_EMBED], state[DET_POS_EMBED]], dim=1)


def without_pos_embeds(state: StateDict) -> StateDict:
    """``state`` without the two tensors :func:`join_pos_embed` joins."""
    return {k: v for k, v in state.items() if k not in (POS_EMBED, DET_POS_EMBED)}
