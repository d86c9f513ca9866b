"""YOLOS as a Detectron2 project: importing this package registers the ``YOLOS`` meta-architecture."""
from . import modeling  # noqa: F401  (registers YOLOS in META_ARCH_REGISTRY)
