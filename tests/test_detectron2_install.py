"""The detectron2 this project runs on imports fully; a missing compiled op fails clearly."""
import importlib.util

import pytest

import detectron2

COMPILED = importlib.util.find_spec("detectron2._C").origin.endswith(".so")


def test_detectron2_layers_and_evaluation_import():
    import detectron2.evaluation  # noqa: F401
    import detectron2.layers  # noqa: F401
    import detectron2.modeling  # noqa: F401

    assert detectron2.__version__


@pytest.mark.skipif(COMPILED, reason="detectron2 here has its compiled extension")
def test_placeholder_names_the_missing_op_and_how_to_get_it():
    from detectron2 import _C

    with pytest.raises(RuntimeError, match=r"detectron2\._C\.deform_conv_forward is not available.*from source"):
        _C.deform_conv_forward()
    with pytest.raises(RuntimeError, match=r"detectron2\._C\.COCOevalMaskApi is not available"):
        _C.COCOevalMaskApi.InstanceAnnotation
    assert not hasattr(_C, "__wrapped__")


@pytest.mark.skipif(COMPILED, reason="detectron2 here has its compiled extension")
def test_collect_env_still_reports_the_environment():
    from detectron2.utils.collect_env import collect_env_info

    assert "placeholder detectron2._C" in collect_env_info()
