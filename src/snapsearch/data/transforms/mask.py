"""The packshot's background: where a catalog image is plain studio white around the product.

Shared by every transform that swaps a catalog image's surroundings (procedural clutter, compositing into
store photos), so the product is cut out the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PackshotMask:
    """Finds the near-white background connected to the image border (white print inside the product is kept).

    Args:
        white_threshold: a pixel is near-white when all its channels are at least this value.
        min_background_fraction: images whose border-connected white area is a smaller fraction have no
            packshot background (photos, full-bleed packshots): ``None``.
        max_local_contrast: background pixels are flat: the darkest channel varies by at most this many grey
            levels over their 3x3 neighbourhood (the faint outline of a white carton stops the flood).
        fringe_threshold: light pixels (all channels at least this) within ``fringe_width`` of the
            background also count as background: the anti-aliased, JPEG-smeared rim of a cut-out would
            otherwise leave a pale outline around the product.
        fringe_width: how far the background grows into light rim pixels, as a fraction of the shorter side.
    """

    white_threshold: int = 245
    min_background_fraction: float = 0.2
    max_local_contrast: int = 6
    fringe_threshold: int = 200
    fringe_width: float = 0.02

    def __call__(self, img: np.ndarray) -> np.ndarray | None:
        """Boolean HxW mask of the background, or ``None`` when the image has too little of one."""
        upper = np.full(img.shape[2], np.iinfo(img.dtype).max, dtype=img.dtype)
        white = cv2.inRange(img, np.full_like(upper, self.white_threshold), upper)  # 255 = near-white
        if cv2.countNonZero(white) < self.min_background_fraction * white.size:
            return None  # cheap early exit: most photos stop here
        darkest = np.minimum.reduce([img[..., c] for c in range(img.shape[2])])  # faster than min(axis)
        local_contrast = cv2.morphologyEx(darkest, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        white[local_contrast > self.max_local_contrast] = 0
        n_labels, labels = cv2.connectedComponents(white, connectivity=4)
        border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        is_background = np.zeros(n_labels, dtype=bool)
        is_background[border[border > 0]] = True
        background = is_background[labels].view(np.uint8)
        if cv2.countNonZero(background) < self.min_background_fraction * background.size:
            return None
        reach = round(self.fringe_width * min(img.shape[:2]))
        if reach > 0:
            near = cv2.dilate(background, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
            light = cv2.inRange(img, np.full_like(upper, self.fringe_threshold), upper)
            background |= near & (light > 0)
        return background.view(bool)
