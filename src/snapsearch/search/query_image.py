"""The forms a query image may arrive in, turned into what the models read: upright HxWx3 uint8 RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from snapsearch.data.image_io import ImageReadError, pil_to_rgb, read_rgb

QueryImage = str | Path | bytes | Image.Image | np.ndarray  # or an open binary file (read once)


def to_rgb(image: QueryImage, *, max_pixels: int, draft_size: int | None) -> np.ndarray:
    """Any query form as the reader returns files: upright HxWx3 uint8 RGB (ImageReadError when unusable)."""
    if isinstance(image, Image.Image):
        if image.width * image.height > max_pixels:
            raise ImageReadError("<image>", f"image too large: {image.width}x{image.height} pixels")
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ImageReadError("<array>", f"need an HxW or HxWx3/4 uint8 array, got {image.dtype} {image.shape}")
        return pil_to_rgb(Image.fromarray(image))
    if isinstance(image, bytes | bytearray | memoryview):
        return read_rgb(bytes(image), max_pixels=max_pixels, draft_size=draft_size)
    return read_rgb(image, max_pixels=max_pixels, draft_size=draft_size)
