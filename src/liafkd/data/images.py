"""Reading image files the same way everywhere (training, evaluation, predict, drawing).

- EXIF orientation is applied (`ImageOps.exif_transpose`): a phone photo is used the
  way it is displayed, and its size, the one annotations are checked against, is the
  displayed size (width and height swapped for orientations 5-8).
- 16-bit grayscale (PNG mode I;16 and friends, or I) is scaled to 8 bits by its full
  range (value / 257), not clipped to white as `convert("RGB")` would do.
- Floating-point pixels (TIFF mode F) are refused, naming the file: their range is
  unknown, and converted they would mostly decode black.
- Every pixel is decoded, so a truncated file fails here, naming the file.
Only PIL and numpy: the data readers and `liafkd data check` import this without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112
# orientations that rotate by 90 degrees: the displayed width is the stored height
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
FLOAT_MODES = frozenset({"F", "F;16F", "F;32F", "F;32BF"})
READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageReadError(ValueError):
    """An image file that cannot be decoded; the message starts with the file's path."""


def orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError):
        return 1


def displayed_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) after the EXIF orientation, from the header alone."""
    width, height = img.size
    if orientation(img) in SWAPPING_ORIENTATIONS:
        return int(height), int(width)
    return int(width), int(height)


def refuse_float_pixels(img: Image.Image) -> None:
    """Floating-point pixels (TIFF mode F) have no agreed range (0-1? 0-255? metres?):
    converted to 8 bits they would mostly come out black, so they are refused
    (ValueError; the callers name the file)."""
    if img.mode in FLOAT_MODES:
        raise ValueError(
            f"floating-point pixels (mode {img.mode}), whose range liafkd cannot know: "
            "save it as an 8- or 16-bit image (e.g. scaled to 0-255)"
        )


def header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as displayed, without decoding the pixels; ImageReadError."""
    try:
        with Image.open(path) as img:
            refuse_float_pixels(img)
            return displayed_size(img)
    except READ_ERRORS as e:
        raise ImageReadError(f"{path}: cannot read image header: {e}") from None


def to_8bit(img: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) grayscale to 8-bit L by the 16-bit range."""
    if img.mode not in SIXTEEN_BIT_MODES:
        return img
    values = np.asarray(img, dtype=np.float64)
    scaled = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def read_rgb(path: str | Path) -> Image.Image:
    """The fully decoded image as displayed (EXIF applied), 8-bit RGB; ImageReadError."""
    try:
        with Image.open(path) as img:
            refuse_float_pixels(img)
            img.load()
            oriented = ImageOps.exif_transpose(img) or img
            return to_8bit(oriented).convert("RGB")
    except READ_ERRORS as e:
        raise ImageReadError(f"{path}: cannot read image: {e}") from None
