"""
Reading image files into 8-bit arrays whatever their bit depth: detectron2's ``read_image``
clips 16-bit images to 255 (a full-range 16-bit gradient comes out 99.6% white).
"""
from typing import Optional

import numpy as np
from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.utils.file_io import PathManager
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["UnreadableImageError", "UnsupportedImageError", "image_to_array", "read_image"]

# PIL modes of 8 bits per channel, which PIL converts to "RGB" and "L".
_8_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")
# PIL modes of 16-bit single-channel images. Pillow opens a 16-bit PNG as mode "I" (32-bit
# integers) holding 0..65535: PNG has at most 16 bits per sample.
_16_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_DESCRIPTIONS = {"I": "32-bit integers", "F": "32-bit floating point"}


class UnreadableImageError(OSError):
    """
    An image file that cannot be decoded (corrupt, truncated, not an image); the message names
    the file. An ``OSError``, as PIL's errors for such files are, so that the training loader and
    the demo skip it.
    """


class UnsupportedImageError(UnreadableImageError):
    """An image whose values cannot be mapped to 0..255."""


def read_image(file_name: str, format: Optional[str] = "RGB") -> np.ndarray:
    """
    Read an image file as detectron2's ``read_image`` does (turned by its EXIF orientation, then
    converted to ``format``: "RGB", "BGR", "L", any PIL mode, "YUV-BT.601" or None to keep the
    file's), but with 16-bit images scaled to 8 bits: see :func:`image_to_array`.

    Returns:
        (H, W, C) array, uint8 in 0..255 (float for "YUV-BT.601"), C = 1 for "L".

    Raises:
        UnreadableImageError naming the file for a file that cannot be decoded (PIL's message:
        "/data/17.jpg: image file is truncated"), UnsupportedImageError for images whose values
        have no known range; OSError (from opening it) for a file that does not exist.
    """
    with PathManager.open(file_name, "rb") as f:
        try:
            return image_to_array(Image.open(f), format, name=file_name)
        except UnreadableImageError:
            raise
        except UnidentifiedImageError:  # whose message shows the file object, not its name
            raise UnreadableImageError(
                f"{file_name}: cannot identify image file (not an image, or in a format PIL cannot read)"
            ) from None
        except (OSError, SyntaxError) as e:  # what PIL raises for a file it cannot decode
            raise UnreadableImageError(f"{file_name}: {e}") from e


def image_to_array(image: Image.Image, format: Optional[str] = "RGB", name: str = "image") -> np.ndarray:
    """
    A PIL image as :func:`read_image` returns the file's: turned by its EXIF orientation (an
    image already turned has no orientation left), converted to ``format``, 16-bit images scaled
    to 8 bits: value * 255 / 65535, rounded. 16-bit colour PNGs are read by Pillow with the high
    byte of each value.

    Returns:
        (H, W, C) array, uint8 in 0..255 (float for "YUV-BT.601"), C = 1 for "L".

    Raises:
        UnsupportedImageError naming ``name`` for other images, e.g. of 32-bit integers or
        floating point (PIL modes "I" and "F"), whose values have no known range.
    """
    sixteen_bit = image.mode in _16_BIT_MODES or (image.mode == "I" and image.format == "PNG")
    if not sixteen_bit and image.mode not in _8_BIT_MODES:
        described = f" ({_DESCRIPTIONS[image.mode]})" if image.mode in _DESCRIPTIONS else ""
        raise UnsupportedImageError(
            f"{name}: images of PIL mode {image.mode!r}{described} are not supported: only images of 8 "
            "or 16 bits per channel have a known range. Convert the image to 8 or 16 bits per channel"
        )
    image = ImageOps.exif_transpose(image)
    if sixteen_bit:
        levels = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray(((levels * 255 + 32767) // 65535).astype(np.uint8), "L")
    return convert_PIL_to_numpy(image, format)
