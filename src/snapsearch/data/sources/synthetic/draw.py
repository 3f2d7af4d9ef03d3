"""Drawing primitives shared by the sprites and the photos: anti-aliased masks, pixel grids and colours.

Masks are uint8 (what cv2 draws into) until ``to_float`` turns them into float coverage in [0, 1].
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import cv2
import numpy as np

RGB = np.ndarray  # float32 colour in [0, 1], shape (3,)
Range = tuple[float, float]

SUBPIXEL_BITS = 4  # fixed-point fraction bits for cv2 drawing


def _fix(points: list[tuple[float, float]] | np.ndarray) -> np.ndarray:
    """Float pixel coordinates as cv2's fixed-point int32 points."""
    return np.round(np.asarray(points, dtype=np.float64) * (1 << SUBPIXEL_BITS)).astype(np.int32)


def poly(mask: np.ndarray, points: list[tuple[float, float]] | np.ndarray, value: int = 255) -> np.ndarray:
    cv2.fillPoly(mask, [_fix(points)], value, cv2.LINE_AA, SUBPIXEL_BITS)
    return mask


def rect(mask: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return poly(mask, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def ellipse(
    mask: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0, value: int = 255
) -> np.ndarray:
    c = tuple(int(v) for v in _fix([centre])[0])
    a = tuple(int(v) for v in _fix([axes])[0])
    cv2.ellipse(mask, c, a, angle, 0, 360, value, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    return mask


def rounded_rect(mask: np.ndarray, x0: float, y0: float, x1: float, y1: float, r: float) -> np.ndarray:
    rect(mask, x0 + r, y0, x1 - r, y1)
    rect(mask, x0, y0 + r, x1, y1 - r)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        ellipse(mask, (cx, cy), (r, r))
    return mask


def blank(size: int) -> np.ndarray:
    return np.zeros((size, size), np.uint8)


def to_float(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32) / 255.0


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y); cached, never mutate."""
    axis = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(axis, axis)


@lru_cache(maxsize=8)
def unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1]; cached, never mutate."""
    xx, yy = pixel_grid(size)
    return xx / size * 2 - 1, yy / size * 2 - 1


def hsv(h: float, s: float, v: float) -> RGB:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def random_colour(rng: np.random.Generator, sat: Range = (0.0, 1.0), val: Range = (0.1, 1.0)) -> RGB:
    return hsv(rng.uniform(), rng.uniform(*sat), rng.uniform(*val))


def cv_colour(colour: RGB) -> tuple[int, int, int]:
    r, g, b = (round(float(c) * 255) for c in np.clip(colour, 0, 1))
    return r, g, b


def paint(rgb: np.ndarray, mask: np.ndarray, colour: RGB, opacity: float = 1.0) -> None:
    """Lay ``colour`` over ``rgb`` (in place) where ``mask`` covers it."""
    m = (mask * opacity)[..., None]
    rgb *= 1 - m
    rgb += m * colour
