"""
The third-party warnings and log records that yolos_d2 knows to be harmless, and a filter for
each: the message, the category (or logger) and the module that emits it, so that any other
warning still prints.
"""
import logging
import os
import re
import warnings

__all__ = ["silence_harmless_warnings"]

# (message regex, category, module regex) of the warnings hidden.
HARMLESS_WARNINGS = [
    # torch.jit.script, trace, trace_method, save and load: fvcore and detectron2 script functions
    # at import, and yolos-export's TorchScript format is a trace, for LibTorch.
    (r"`torch\.jit\.\w+` is deprecated", FutureWarning, r"torch\.jit\."),
    # PyTorch's dynamic quantisation, which --precision int8 runs (the warning is attributed to the
    # caller: yolos_d2's, then torch.ao's own calls), and the quantised weight tensors it creates.
    (r"torch\.ao\.quantization is deprecated", DeprecationWarning, r"yolos_d2\.inference\.precision\Z|torch\.ao\."),
    (r"torch\.quantize_per_tensor, torch\.quantize_per_channel", UserWarning, r"torch\.ao\."),
]

# onnxruntime's dynamic quantiser logs, on the root logger from its quantization package, that it
# does not quantise a uint8 tensor (TensorProto elem_type 2), e.g. the exported pipeline's input
# image, with the tensor's type.
_ONNXRUNTIME_QUANTIZATION = os.path.join("onnxruntime", "quantization", "")
_UINT8_TENSOR_NOT_QUANTIZED = re.compile(
    r"Inference failed or unsupported type to quantize for tensor '[^']*', type is tensor_type \{\s*elem_type: 2\s"
)


def _keeps(record: logging.LogRecord) -> bool:
    """The root logger's filter: False for onnxruntime's record on uint8 tensors, True for any other."""
    return not (
        record.name == "root"
        and _ONNXRUNTIME_QUANTIZATION in record.pathname
        and _UINT8_TENSOR_NOT_QUANTIZED.match(record.getMessage()) is not None
    )


def silence_harmless_warnings() -> None:
    """
    Hide the warnings of :data:`HARMLESS_WARNINGS` and onnxruntime's record on uint8 tensors, in
    this process (a second call changes nothing).
    """
    for message, category, module in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    logging.getLogger().addFilter(_keeps)
