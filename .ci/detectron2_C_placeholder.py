"""Placeholder for detectron2's compiled extension ``detectron2._C``.

Installed by ``.ci/setup`` when detectron2 is built from the ``pb1-detectron2``
source release, which ships without its C++/CUDA sources. Importing this module
works, so ``import detectron2.layers`` works; using any compiled op raises an
error that names the op and how to get it.
"""

_HOW_TO_GET_IT = (
    "this detectron2 was installed without its compiled C++/CUDA extension. "
    "Install official detectron2 from source to use it: "
    "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' "
    "(see the yolos_d2 README, 'Installing detectron2')."
)


class MissingCompiledOp:
    """Stands in for one compiled op; calling it or reading its attributes raises."""

    def __init__(self, name):
        self._name = name

    def _fail(self):
        raise RuntimeError(f"detectron2._C.{self._name} is not available: {_HOW_TO_GET_IT}")

    def __call__(self, *args, **kwargs):
        self._fail()

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        self._fail()


# What detectron2.utils.collect_env asks of the build: answered, so that it still runs.
_NOT_COMPILED = "none (detectron2 built without its C++/CUDA extension; placeholder detectron2._C)"


def get_compiler_version():
    return _NOT_COMPILED


def get_cuda_version():
    return _NOT_COMPILED


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return MissingCompiledOp(name)
