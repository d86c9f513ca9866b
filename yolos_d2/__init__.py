"""
YOLOS as a Detectron2 project. Importing this package registers the ``YOLOS`` meta-architecture
and the synthetic quick-start datasets (``synthetic_shapes_train``, ``synthetic_shapes_val``).
"""
from . import data, modeling  # noqa: F401  (registration side effects
