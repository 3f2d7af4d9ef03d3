"""Specular highlights: store lights reflected by glossy packaging."""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np


class SpecularGlare(A.ImageOnlyTransform):
    """Soft specular highlights: store lights reflected by glossy packaging wash parts of it to white.

    Each highlight is an elliptical Gaussian spot; ``hardness`` > 1 saturates its core (a blown-out
    reflection) while the rim stays soft. Highlights are screened towards white, so dark print fades
    and white areas stay white, as on a real reflection.

    Args:
        num_highlights_range: how many highlights, inclusive range.
        radius_range: the spot's minor-axis sigma as a fraction of the shorter side.
        aspect_range: major / minor axis ratio (elongated reflections of tube lights).
        intensity_range: peak opacity of a highlight, 0..1.
        hardness_range: gain before clipping the spot to 1; larger = wider saturated core.
        render_max_side: the highlight matte is computed at no more than this many pixels (it is
            smooth) and resized to the image.
        p: probability of applying the transform.
    """

    def __init__(
        self,
        num_highlights_range: tuple[int, int] = (1, 2),
        radius_range: tuple[float, float] = (0.03, 0.12),
        aspect_range: tuple[float, float] = (1.0, 4.0),
        intensity_range: tuple[float, float] = (0.3, 0.8),
        hardness_range: tuple[float, float] = (1.0, 3.0),
        render_max_side: int = 128,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.num_highlights_range = tuple(num_highlights_range)
        self.radius_range = tuple(radius_range)
        self.aspect_range = tuple(aspect_range)
        self.intensity_range = tuple(intensity_range)
        self.hardness_range = tuple(hardness_range)
        self.render_max_side = render_max_side

    def get_params(self) -> dict[str, Any]:
        rng = self.random_generator
        n = self.py_random.randint(*self.num_highlights_range)
        return {
            "centres": rng.uniform(0.0, 1.0, size=(n, 2)),
            "radii": rng.uniform(*self.radius_range, size=n),
            "aspects": rng.uniform(*self.aspect_range, size=n),
            "angles": rng.uniform(0.0, np.pi, size=n),
            "intensities": rng.uniform(*self.intensity_range, size=n),
            "hardness": rng.uniform(*self.hardness_range, size=n),
        }

    def apply(
        self,
        img: np.ndarray,
        centres: np.ndarray,
        radii: np.ndarray,
        aspects: np.ndarray,
        angles: np.ndarray,
        intensities: np.ndarray,
        hardness: np.ndarray,
        **params: Any,
    ) -> np.ndarray:
        height, width = img.shape[:2]
        scale = min(1.0, self.render_max_side / max(height, width))
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        short = min(h, w)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        keep = np.ones((h, w), dtype=np.float32)  # product over highlights of (1 - alpha_i)
        for (cx, cy), r, a, th, inten, hard in zip(centres, radii, aspects, angles, intensities, hardness, strict=True):
            dx, dy = xx - cx * w, yy - cy * h
            u = dx * np.cos(th) + dy * np.sin(th)
            v = -dx * np.sin(th) + dy * np.cos(th)
            minor = r * short
            spot = np.exp(-0.5 * ((u / (minor * a)) ** 2 + (v / minor) ** 2))
            keep *= 1.0 - inten * np.clip(hard * spot, 0.0, 1.0)
        if (h, w) != (height, width):
            keep = cv2.resize(keep, (width, height), interpolation=cv2.INTER_LINEAR)
        white = np.full_like(img, np.iinfo(img.dtype).max)
        return cv2.blendLinear(img, white, keep, 1.0 - keep)
