"""
YOLOS as a Detectron2 project. Importing this package registers the ``YOLOS`` meta-architecture
and the synthetic quick-start datasets (``synthetic_shapes_train``, ``synthetic_shapes_val``), and
hides the third-party warnings known to be harmless (:mod:`yolos_d2.utils.logging`).
"""
from .utils.logging import silence_harmless_warnings

silence_harmless_warnings()  # first: detectron2 and fvcore use torch.jit.script at import

from . import data, modeling  # noqa: E402,F401  (registration side effects)
