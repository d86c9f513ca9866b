"""A DetectionCheckpointer that loads safely, saves atomically and refuses weights of another YOLOS variant."""
import logging
import os
import re
from typing import Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .io import load_weights_file, save_checkpoint_atomic, write_atomic

__all__ = ["YOLOSCheckpointer", "check_checkpoint_fits", "describe_variant"]

# (embed_dim, depth) of the paper's backbones.
_VARIANTS = {(192, 12): "YOLOS-Ti", (384, 12): "YOLOS-S", (330, 14): "YOLOS-S-dWr", (768, 12): "YOLOS-B"}
_CLS_TOKEN = "detector.backbone.cls_token"
_CLASS_LAYER = re.compile(r"^detector\.class_embed\.layers\.(\d+)\.")
_BLOCK = re.compile(r"^detector\.backbone\.blocks\.(\d+)\.")

# Key prefixes of checkpoints that must go through `python -m yolos_d2.convert` first.
_UNCONVERTED = [
    ("backbone.det_token", "an original YOLOS", "yolos"),
    ("vit.embeddings.cls_token", "a Hugging Face YOLOS", "hf"),
    ("cls_token", "a DeiT/ViT ImageNet", "deit"),
]


def describe_variant(state: Dict[str, torch.Tensor]) -> str:
    """Name the backbone held by a yolos_d2 state dict, e.g. 'YOLOS-S (embed_dim 384, depth 12)'."""
    if _CLS_TOKEN not in state:
        return "no YOLOS backbone"
    embed_dim = state[_CLS_TOKEN].shape[-1]
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
        "this config (python -m yolos_d2.convert ... --config-file CONFIG)."
    )


class YOLOSCheckpointer(DetectionCheckpointer):
    """
    ``DetectionCheckpointer`` for YOLOS models:

    - ``.pth``/``.safetensors`` files load with ``torch.load(weights_only=True)``/safetensors, and
      ``.pkl`` files (detectron2's model-zoo format) with an unpickler that builds only numpy
      arrays; a file that would run code when loaded is refused with an error naming it;
    - checkpoints and the ``last_checkpoint`` tag are written atomically: a run killed while
      saving leaves the previous checkpoint and tag intact, and ``--resume`` loads them;
    - weights of another variant (or another ``init_pe_size``) raise an error naming the variant
      and the shapes that differ, instead of being skipped with a warning;
    - unconverted DeiT, original YOLOS or Hugging Face checkpoints raise an error that gives the
      conversion command;
    - a checkpoint trained for another number of classes (e.g. COCO weights fine-tuned on a
      user's dataset) loads all but the class head's output layer, which keeps its fresh
      initialisation, and says so in the log.
    Missing and unexpected keys are reported by name, as detectron2 does.
    """

    def save(self, name: str, **kwargs) -> None:
        """Save ``<save_dir>/<name>.pth`` as detectron2 does, then tag it; each file written atomically."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        save_checkpoint_atomic(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        tag_file = os.path.join(self.save_dir, "last_checkpoint")
        write_atomic(tag_file, lambda f: f.write(last_filename_basename.encode()))

    def _load_file(self, filename: str) -> Dict:
        loaded = load_weights_file(filename)
        if not isinstance(loaded.get("model"), dict):
            loaded = {"model": loaded}
        consume_prefix_in_state_dict_if_present(loaded["model"], "module.")
        self._drop_other_class_head(loaded["model"], filename)
        self._check(loaded["model"], filename)
        return loaded

    def _drop_other_class_head(self, state: Dict[str, torch.Tensor], filename: str) -> None:
        """
        Remove the class head's output layer from ``state`` if it differs from the model's in its
        class count only (a different width is another variant, which :meth:`_check` reports).
        """
        model_state = self.model.state_dict()
        last = max((int(m[1]) for m in map(_CLASS_LAYER.match, model_state) if m), default=None)
        output_layer = [f"detector.class_embed.layers.{last}.{p}" for p in ("weight", "bias")]
        differing = [
            k
            for k in output_layer
            if k in state and state[k].shape != model_state[k].shape and state[k].shape[1:] == model_state[k].shape[1:]
        ]
        if not differing:
            return
        # Weight (C + 1, D) and bias (C + 1,): C classes plus "no object".
        logging.getLogger(__name__).warning(
            f"{filename!r} has a class head for {state[differing[0]].shape[0] - 1} classes, the model for "
            f"{model_state[differing[0]].shape[0] - 1}: re-initialised {', '.join(differing)}; "
            "everything else is loaded from the checkpoint."
        )
        for k in differing:
            del state[k]

    def _check(self, state: Dict[str, torch.Tensor], filename: str) -> None:
        if not any(k.startswith("detector.") for k in state):
            fmt = _unconverted_format(state)
            if fmt is not None:
                what, name = fmt
                raise ValueError(
                    f"{filename!r} looks like {what} checkpoint, not a yolos_d2 one. Convert it first: "
                    f"python -m yolos_d2.convert {filename} OUT.pth --format {name} --config-file CONFIG"
                )
        check_checkpoint_fits(self.model, state, filename)


def _unconverted_format(state: Dict[str, torch.Tensor]) -> Optional[tuple]:
    for key, what, name in _UNCONVERTED:
        if key in state:
            return what, name
    return None
