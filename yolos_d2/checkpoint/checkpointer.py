"""A DetectionCheckpointer that loads safely, saves atomically and refuses weights that do not fit the model."""
import errno
import logging
import os
import re
from typing import Dict, Iterable, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .io import load_weights_file, save_checkpoint_atomic, state_dict_of, write_atomic
from ..utils.file_io import os_error_in
from .keys import compact_key_names
from .vit_families import NEW_KEYS
from .position_embeddings import (
    GRIDS_KEY,
    grids_record,
    position_embedding_grids,
    read_grids,
    resize_position_embeddings,
)

__all__ = [
    "YOLOSCheckpointer",
    "check_checkpoint_finite",
    "check_checkpoint_fits",
    "check_finite",
    "describe_variant",
    "ema_weights_of",
]

# (embed_dim, depth) of the paper's backbones.
_VARIANTS = {(192, 12): "YOLOS-Ti", (384, 12): "YOLOS-S", (330, 14): "YOLOS-S-dWr", (768, 12): "YOLOS-B"}
# Tensors whose shape gives the backbone's width, and the axis that does.
_WIDTH_AXES = {"detector.backbone.cls_token": -1, "detector.backbone.patch_embed.proj.weight": 0}
_CLASS_LAYER = re.compile(r"^detector\.class_embed\.layers\.(\d+)\.")
_BLOCK = re.compile(r"^detector\.backbone\.blocks\.(\d+)\.")

# A temporary file of write_atomic (yolos_d2.utils.file_io): ".<name>.<8 hex digits>.tmp".
_UNFINISHED_WRITE = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")
# What check_finite names for the checkpoint's EMA of the weights.
_EMA_PART = "its EMA of the weights (under 'ema')"

# Key prefixes of checkpoints that must go through `yolos-convert` (yolos_d2.tools.convert) first.
_UNCONVERTED = [
    ("backbone.det_token", "an original YOLOS", "yolos"),
    ("vit.embeddings.cls_token", "a Hugging Face YOLOS", "hf"),
    ("cls_token", "a DeiT/ViT ImageNet", "deit"),
    ("embedding/kernel", "a JAX ViT (AugReg)", "augreg"),
]


def describe_variant(state: Dict[str, torch.Tensor]) -> str:
    """Name the backbone held by a yolos_d2 state dict, e.g. 'YOLOS-S (embed_dim 384, depth 12)'."""
    widths = [state[key].shape[axis] for key, axis in _WIDTH_AXES.items() if key in state]
    if not widths:
        return "no YOLOS backbone"
    embed_dim = widths[0]
    depth = len({m[1] for m in map(_BLOCK.match, state) if m})
    name = _VARIANTS.get((embed_dim, depth), "a custom ViT")
    return f"{name} (embed_dim {embed_dim}, depth {depth})"


def check_checkpoint_fits(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """
    Raise ``ValueError`` naming both variants and the differing shapes if any tensor of ``state``
    has another shape in ``model``.
    """
    model_state = model.state_dict()
    differing: List[str] = [
        f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(model_state[k].shape)} in the model"
        for k, v in state.items()
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)
    ]
    if not differing:
        return
    shown = "\n  ".join(differing[:8]) + (f"\n  ... and {len(differing) - 8} more" if len(differing) > 8 else "")
    raise ValueError(
        f"Checkpoint {source!r} holds {describe_variant(state)} but the model is "
        f"{describe_variant(model_state)}; shapes that differ:\n  {shown}\n"
        "Use the config of the checkpoint's variant, or convert the source weights again with "
        "this config (yolos-convert ... --config-file CONFIG)."
    )


class YOLOSCheckpointer(DetectionCheckpointer):
    """
    ``DetectionCheckpointer`` for YOLOS models:

    - ``.pth``/``.safetensors`` files load with ``torch.load(weights_only=True)``/safetensors, and
      ``.pkl`` files (detectron2's model-zoo format) with an unpickler that builds only numpy
      arrays; a file that would run code when loaded is refused with an error naming it, and so
      is a file that holds no state dict;
    - checkpoints and the ``last_checkpoint`` tag are written atomically: a run killed while
      saving leaves the previous checkpoint and tag intact, and ``--resume`` loads them; a save
      that fails (e.g. a full disk) says so, naming the file and the intact previous checkpoint;
    - checkpoints record the patch grids of their position embeddings (under
      "position_embedding_grids"); one made for another ``init_pe_size`` or ``mid_pe_size`` has
      them resized to the model's as the model resizes them at run time (bicubic), logged per
      tensor;
    - weights of another variant (or of another ``init_pe_size`` with no grids recorded) raise an
      error naming the variant and the shapes that differ, instead of being skipped with a warning;
    - unconverted DeiT, original YOLOS or Hugging Face checkpoints raise an error that gives the
      conversion command;
    - a checkpoint that lacks tensors of the model or holds tensors the model does not have
      (another depth, another model) raises an error naming them by module, e.g.
      ``detector.backbone.blocks.1-3``; ``strict=False`` loads the tensors that match on purpose
      and logs the others. Always allowed to be missing, and logged: the class head's output
      layer of a checkpoint trained for another number of classes (e.g. COCO weights fine-tuned
      on a user's dataset), which keeps its fresh initialisation, and the keys that
      ``yolos-convert`` (:mod:`yolos_d2.tools.convert`) records as new in the file (under "new_keys");
    - weights holding infinite or NaN values raise an error naming the tensors; so does an EMA
      of the weights holding them, in a checkpointer that loads it (``use_ema``) or has an EMA
      to restore (an "ema" checkpointable, as training with ``train.ema.enabled`` has).
    Nothing is loaded into the model when one of these errors is raised.

    With ``use_ema``, a checkpoint saved by a run with ``train.ema.enabled`` loads its average of
    the weights (under "ema") instead of the trained weights (under "model"), with the same checks
    and a log line; one without an average loads its trained weights.
    """

    def __init__(
        self, model: torch.nn.Module, save_dir: str = "", *, strict: bool = True, use_ema: bool = False, **kwargs
    ):
        """
        Args:
            model, save_dir, kwargs: as for ``DetectionCheckpointer``.
            strict: missing and unexpected model tensors are an error; False loads what matches.
            use_ema: load a checkpoint's EMA of the weights where it has one (logged), else its
                trained weights.
        """
        super().__init__(model, save_dir, **kwargs)
        self.strict = strict
        self.use_ema = use_ema

    def save(self, name: str, **kwargs) -> None:
        """
        Save ``<save_dir>/<name>.pth`` as detectron2 does, then tag it; each file written
        atomically. Raises ``OSError`` naming the file, the error (e.g. ENOSPC) and the previous
        checkpoint, intact, if it cannot be written.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict(), GRIDS_KEY: grids_record(position_embedding_grids(self.model))}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        previous = self.get_checkpoint_file() if self.has_checkpoint() else None
        try:
            save_checkpoint_atomic(data, save_file)
            self.tag_last_checkpoint(basename)
        except (OSError, RuntimeError) as error:
            # torch.save reports a failed write (e.g. ENOSPC) as a RuntimeError of its zip writer.
            e = os_error_in(error)
            if e is None:
                raise
            kept = (
                f"The previous checkpoint, {previous}, is intact and tagged as the last one: "
                "--resume continues from it."
                if previous
                else f"No earlier checkpoint is in {self.save_dir}."
            )
            reason = f"{errno.errorcode.get(e.errno, 'error')} ({e.strerror})" if e.errno else str(e)
            raise OSError(e.errno, f"Could not save checkpoint {save_file}: {reason}. {kept}") from error

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        tag_file = os.path.join(self.save_dir, "last_checkpoint")
        write_atomic(tag_file, lambda f: f.write(last_filename_basename.encode()))

    def remove_unfinished_saves(self) -> None:
        """
        Remove the temporary files of checkpoints and tags (``.model_final.pth.1f2e3d4c.tmp``)
        that a process killed while saving left in ``save_dir``, logging each. Call it while no
        other process saves there (under the folder's run lock).
        """
        if not self.save_dir or not self.save_to_disk or not os.path.isdir(self.save_dir):
            return
        for name in sorted(os.listdir(self.save_dir)):
            match = _UNFINISHED_WRITE.match(name)
            if match and (match["name"].endswith(".pth") or match["name"] == "last_checkpoint"):
                os.unlink(os.path.join(self.save_dir, name))
                self.logger.info(f"Removed {name} from {self.save_dir}: the unfinished save of a run that was killed")

    def _load_file(self, filename: str) -> Dict:
        loaded = load_weights_file(filename)
        ema_weights = ema_weights_of(loaded)
        if "ema" in self.checkpointables and ema_weights is not None:
            check_finite(ema_weights, filename, keys=ema_weights.keys(), part=_EMA_PART)
        use_ema = self.use_ema and ema_weights is not None
        if use_ema:
            self.logger.info(
                f"Loading the EMA of the weights ({loaded['ema']['num_updates']} updates) from {filename!r}, not its "
                "trained weights (train.eval_with_ema=False loads those)"
            )
            loaded = {**loaded, "model": ema_weights}
        state = state_dict_of(loaded, filename)
        consume_prefix_in_state_dict_if_present(state, "module.")
        reinitialised = self._drop_other_class_head(state, filename)
        state = resize_position_embeddings(
            state, read_grids(loaded, filename), position_embedding_grids(self.model), filename
        )
        # Only what yolos-convert records may be left to the initialisation: no file empties the model so.
        new_keys = [key for key in loaded.get("new_keys", []) if key in NEW_KEYS]
        self._check(state, filename, new_keys, reinitialised, part=_EMA_PART if use_ema else None)
        return {**loaded, "model": state}

    def _drop_other_class_head(self, state: Dict[str, torch.Tensor], filename: str) -> List[str]:
        """
        Remove the class head's output layer from ``state`` if it differs from the model's in its
        class count only (a different width is another variant, which :meth:`_check` reports).

        Returns:
            the keys removed.
        """
        model_state = self.model.state_dict()
        last = max((int(m[1]) for m in map(_CLASS_LAYER.match, model_state) if m), default=None)
        output_layer = [f"detector.class_embed.layers.{last}.{p}" for p in ("weight", "bias")]
        differing = [
            k
            for k in output_layer
            if k in state and state[k].shape != model_state[k].shape and state[k].shape[1:] == model_state[k].shape[1:]
        ]
        if differing:
            # Weight (C + 1, D) and bias (C + 1,): C classes plus "no object".
            logging.getLogger(__name__).warning(
                f"{filename!r} has a class head for {state[differing[0]].shape[0] - 1} classes, the model for "
                f"{model_state[differing[0]].shape[0] - 1}: re-initialised {', '.join(differing)}; "
                "everything else is loaded from the checkpoint."
            )
        for k in differing:
            del state[k]
        return differing

    def _check(
        self,
        state: Dict[str, torch.Tensor],
        filename: str,
        new_keys: List[str],
        reinitialised: List[str],
        part: Optional[str] = None,
    ) -> None:
        if not any(k.startswith("detector.") for k in state):
            fmt = _unconverted_format(state)
            if fmt is not None:
                what, name = fmt
                raise ValueError(
                    f"{filename!r} looks like {what} checkpoint, not a yolos_d2 one. Convert it first: "
                    f"yolos-convert {filename} OUT.pth --format {name} --config-file CONFIG"
                )
        check_checkpoint_fits(self.model, state, filename)
        self._check_keys(state, filename, new_keys, reinitialised, part)
        check_finite(state, filename, keys=self.model.state_dict().keys(), part=part)

    def _check_keys(
        self,
        state: Dict[str, torch.Tensor],
        filename: str,
        new_keys: List[str],
        reinitialised: List[str],
        part: Optional[str] = None,
    ) -> None:
        """
        Raise (or with ``strict=False`` log) the model tensors ``state`` lacks and the tensors the
        model lacks, except those named by ``new_keys`` (keys or module prefixes) and
        ``reinitialised``, which may be missing; naming ``part`` (which part of the file
        ``state`` is) if given.
        """
        model_state = self.model.state_dict()
        missing = [k for k in model_state if k not in state and k not in reinitialised]
        new = [k for k in missing if any(k == p or k.startswith(p + ".") for p in new_keys)]
        if new:
            self.logger.warning(
                f"{filename!r} leaves to the model's initialisation, as recorded when it was converted: "
                f"{', '.join(compact_key_names(new, model_state))}"
            )
        missing = [k for k in missing if k not in new]
        unexpected = [k for k in state if k not in model_state]
        if not missing and not unexpected:
            return
        listing = "\n  ".join(
            f"{what} ({_tensors(len(keys))}): {_shorten(compact_key_names(keys, universe))}"
            for what, keys, universe in [
                ("missing from the checkpoint", missing, model_state),
                ("not in the model", unexpected, state),
            ]
            if keys
        )
        if not self.strict:
            self.logger.warning(
                f"Loading {filename!r} partially (strict=False): the tensors missing from the checkpoint keep "
                f"the model's initialisation, those not in the model are ignored.\n  {listing}"
            )
            return
        summary = ""
        if unexpected and len(unexpected) == len(state):
            summary += f" None of its {_tensors(len(state))} has the name of one of the model's."
        variants = describe_variant(state), describe_variant(model_state)
        if variants[0] != variants[1]:
            summary += f" It holds {variants[0]}, the model is {variants[1]}."
        raise ValueError(
            f"Checkpoint {filename!r}{f', {part},' if part else ''} does not fit the model.{summary}\n  {listing}\n"
            "Load a checkpoint of this model (or use the config it was trained with), or set "
            "train.init_checkpoint_strict=False to load the tensors that match on purpose and keep the "
            "model's initialisation for the others."
        )

    def _log_incompatible_keys(self, incompatible) -> None:
        """Nothing: :meth:`_check_keys` has logged the missing and unexpected keys, by module."""


def check_finite(
    state: Dict[str, torch.Tensor], source: str, keys: Iterable[str], part: Optional[str] = None
) -> None:
    """
    Raise ``ValueError`` naming the tensors of ``state`` among ``keys`` that hold infinite or NaN
    values, and ``part`` (which part of the checkpoint ``source`` ``state`` is) if given.
    """
    bad = []
    for k in keys:
        if k not in state:
            continue
        value = torch.as_tensor(state[k])
        if value.is_floating_point() and not torch.isfinite(value).all():
            counts = [(int(value.isnan().sum()), "NaN"), (int(value.isinf().sum()), "inf")]
            bad.append(f"{k} ({', '.join(f'{n} {what}' for n, what in counts if n)})")
    if bad:
        raise ValueError(
            f"Checkpoint {source!r} holds infinite or NaN values in {part + ', ' if part else ''}"
            f"{_tensors(len(bad))}: {_shorten(bad)}. "
            "It was saved by a run that diverged, or the file is damaged: load an earlier checkpoint."
        )


def ema_weights_of(checkpoint: Dict) -> Optional[Dict[str, torch.Tensor]]:
    """The EMA of the weights a checkpoint of a run with ``train.ema.enabled`` holds; None if it has none."""
    ema = checkpoint.get("ema")
    return ema.get("weights") if isinstance(ema, dict) else None


def check_checkpoint_finite(checkpoint: Dict, source: str) -> None:
    """:func:`check_finite` on all the weights of a loaded checkpoint and, where it has one, its EMA of the weights."""
    weights = state_dict_of(checkpoint, source)
    check_finite(weights, source, keys=weights.keys())
    ema_weights = ema_weights_of(checkpoint)
    if ema_weights is not None:
        check_finite(ema_weights, source, keys=ema_weights.keys(), part=_EMA_PART)


def _tensors(count: int) -> str:
    return f"{count} tensor" + ("s" if count != 1 else "")


def _shorten(names: List[str], limit: int = 12) -> str:
    more = f", ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _unconverted_format(state: Dict[str, torch.Tensor]) -> Optional[tuple]:
    for key, what, name in _UNCONVERTED:
        if key in state:
            return what, name
    return None
