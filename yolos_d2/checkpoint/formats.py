"""
The checkpoint formats ``yolos-convert`` reads (:data:`FORMATS_IN`, :func:`convert_file`) and
writes (:data:`FORMATS_OUT`: :func:`~yolos_d2.checkpoint.original.save_original_yolos`,
:func:`~yolos_d2.checkpoint.huggingface.save_huggingface`).
"""
from typing import Optional

from ..modeling.position_embedding import Grid
from .huggingface import convert_huggingface_folder
from .io import load_weights_file
from .key_maps import Converted
from .original import convert_original_checkpoint
from .vit_families import FAMILIES, convert_vit_release

__all__ = ["FORMATS_IN", "FORMATS_OUT", "convert_file"]

# "yolos": the original YOLOS code's checkpoints; "hf": transformers' save_pretrained folders;
# the others: ViT releases to initialise the backbone from (see vit_families.FAMILIES).
FORMATS_IN = ["yolos", "hf", *FAMILIES]
FORMATS_OUT = ["yolos", "hf"]


def convert_file(src: str, fmt: str, init_grid: Optional[Grid] = None, keep_class_ids: bool = False) -> Converted:
    """
    Read ``src`` in format ``fmt`` (one of :data:`FORMATS_IN`) and convert it to yolos_d2's names.

    Args:
        src: a checkpoint file, or for "hf" the folder written by ``save_pretrained``.
        init_grid: patch grid of the target model's ``init_pe_size``; required for the ViT
            families, whose position embedding is resized to it.
        keep_class_ids: keep a 92-output COCO class head as it is (see
            :func:`~yolos_d2.checkpoint.class_head.remap_coco_class_head`).
    """
    if fmt == "hf":
        return convert_huggingface_folder(src, keep_class_ids)
    if fmt == "yolos":
        return convert_original_checkpoint(load_weights_file(src), src, keep_class_ids)
    if fmt in FAMILIES:
        if init_grid is None:
            raise ValueError(
                f"Converting {FAMILIES[fmt].name} weights needs the target init_pe_size (give --config-file)"
            )
        return convert_vit_release(load_weights_file(src), src, FAMILIES[fmt], init_grid)
    raise ValueError(f"Unknown checkpoint format {fmt!r}; expected one of {', '.join(FORMATS_IN)}")
