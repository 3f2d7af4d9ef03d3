"""The one image reader: any decodable file becomes an upright HxWx3 uint8 RGB array, or a clear error.

Every dataset, preview and evaluation path goes through :func:`read_rgb`, so a bad file anywhere surfaces as
one :class:`ImageReadError` (a ``ValueError``) with a reason a user can act on, never a raw Pillow traceback.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Catalog product shots sit on white, so transparent pixels become white rather than black.
WHITE = (255, 255, 255)
OPAQUE = 255
U8_MAX = 255.0
U16_MAX = 65535.0
# 16-bit -> 8-bit by the exact ratio 255/65535 (= 1/257), so 65535 maps to 255 instead of clipping.
U16_TO_U8 = U8_MAX / U16_MAX
# Float images whose finite values all lie in [0, FLOAT_UNIT_MAX] are taken as unit-range intensities.
FLOAT_UNIT_MAX = 1.0
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})
# Formats whose decoder can downscale by 2/4/8 while decoding (MPO is a multi-picture JPEG from cameras).
DRAFTABLE_FORMATS = frozenset({"JPEG", "MPO"})
MAX_PIXELS_HINT = "raise data.max_image_pixels if intended"
UPLOAD_NAME = "<upload>"


class ImageReadError(ValueError):
    """An image that cannot be used; ``reason`` says why in words a user can act on."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    """Scale 16-bit (or 32-bit integer holding 16-bit data) to 8 bits; ``convert`` would clip at 255."""
    arr = np.asarray(im, dtype=np.float64)
    scaled = np.clip(np.rint(arr * U16_TO_U8), 0, U8_MAX)
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def _float_to_l(im: Image.Image) -> Image.Image:
    """Map a float image to 8 bits: unit-range data is stretched to 0..255, anything else taken as 0..255."""
    arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=U8_MAX, neginf=0.0)
    if arr.size and arr.max() <= FLOAT_UNIT_MAX:
        arr = arr * U8_MAX
    return Image.fromarray(np.clip(np.rint(arr), 0, U8_MAX).astype(np.uint8), mode="L")


def _flatten_on_white(im: Image.Image) -> Image.Image:
    """Alpha-composite onto white, so transparent catalog cut-outs look like the usual white-ground shots."""
    rgba = im.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*WHITE, OPAQUE))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Bring any Pillow mode to 8-bit RGB, handling the modes where a plain ``convert('RGB')`` is wrong."""
    if im.mode in SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_l(im).convert("RGB")
    if im.mode == "F":
        return _float_to_l(im).convert("RGB")
    if im.mode in ALPHA_MODES or "transparency" in im.info:
        return _flatten_on_white(im)
    return im.convert("RGB")


def _too_large_reason(width: int, height: int, max_pixels: int) -> str:
    return f"image too large: {width}x{height} pixels exceeds max_pixels={max_pixels}; {MAX_PIXELS_HINT}"


def _decode_failure_reason(err: Exception) -> str:
    """Name truncation explicitly: it is the common failure (interrupted downloads) and can be re-fetched."""
    detail = str(err) or type(err).__name__
    if "truncated" in detail.lower():
        return f"truncated file ({detail})"
    return f"corrupt or unsupported image ({detail})"


def _open(source: Path | io.BytesIO, label: str | Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse oversized images before any pixel is decoded."""
    try:
        # Pillow's own decompression-bomb guard warns inside ``open``; make that a refusal, not log noise.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(source)
    except UnidentifiedImageError as err:
        raise ImageReadError(label, "not an image (unrecognised file content)") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        reason = f"image too large: refused by Pillow's decompression-bomb guard ({err})"
        raise ImageReadError(label, reason) from err
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise ImageReadError(label, _too_large_reason(width, height, max_pixels))
    return im


def read_rgb(
    path: str | Path | bytes, *, max_pixels: int, draft_size: int | None = None, name: str = UPLOAD_NAME
) -> np.ndarray:
    """Decode a file (or its ``bytes``, e.g. an upload named ``name`` in errors) by content, not extension;
    apply EXIF orientation; return a writable HxWx3 uint8 RGB array.

    ``draft_size`` lets the JPEG decoder downscale by 2/4/8 while keeping the shorter side >= ``draft_size``,
    which makes CPU training far cheaper when images are resized down anyway. Images with more than
    ``max_pixels`` pixels are refused from their header, before their pixels are decoded.
    """
    if draft_size is not None and draft_size < 1:
        raise ValueError(f"draft_size must be a positive number of pixels or None, got {draft_size}")
    if isinstance(path, bytes):
        if not path:
            raise ImageReadError(name, "empty file")
        return _decode(io.BytesIO(path), name, max_pixels, draft_size)
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(path, "empty file")
    except PermissionError as err:
        raise ImageReadError(path, f"permission denied ({err.strerror})") from err
    return _decode(path, path, max_pixels, draft_size)


def _decode(source: Path | io.BytesIO, label: str | Path, max_pixels: int, draft_size: int | None) -> np.ndarray:
    try:
        with _open(source, label, max_pixels) as im:
            if draft_size is not None and im.format in DRAFTABLE_FORMATS:
                # Draft works in stored (pre-rotation) coordinates; asking for a square keeps *both* stored
                # sides >= draft_size, hence the shorter side too, whichever way EXIF later rotates it.
                im.draft("RGB", (draft_size, draft_size))
            im.load()
            upright = ImageOps.exif_transpose(im)
            return np.array(_to_rgb(upright), dtype=np.uint8)
    except ImageReadError:
        raise
    except PermissionError as err:
        raise ImageReadError(label, f"permission denied ({err.strerror})") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(label, _decode_failure_reason(err)) from err


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """An already opened Pillow image as the reader returns files: upright, HxWx3 uint8 RGB."""
    return np.array(_to_rgb(ImageOps.exif_transpose(im)), dtype=np.uint8)
