"""A sprite photographed two ways: the shop's catalog image and the user's phone photo.

The catalog image is the product upright on pure white under even light. The photo is the "shop photo
look" a search must see through: the product warped in front of a background, shadowed, maybe partly
hidden, badly lit, blurred, resampled and noisy, then saved at a low JPEG quality.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from snapsearch.data.sources.synthetic.backgrounds import BACKGROUNDS
from snapsearch.data.sources.synthetic.draw import Range, blank, ellipse, hsv, paint, random_colour, to_float, unit_grid

MIN_IMAGE_SIZE = 32  # smallest image_size the shop accepts; a resampled photo keeps at least half of it
REFERENCE_SIZE = 128  # pixel-valued effects (blur, shadows) are given at this image size and scaled
CATALOG_FILL: Range = (0.88, 0.98)  # sprite size in the catalog image; the first view uses the top
CATALOG_SHIFT = 0.02  # of the image, for catalog views after the first
PHOTO_SCALE: Range = (0.55, 1.05)
PHOTO_MAX_ROTATION_DEG = 25.0
PHOTO_MAX_SHIFT = 0.2  # of the image
PERSPECTIVE_JITTER = 0.08  # corner displacement, of the product size
BACKGROUND_BLUR_SIGMA: Range = (0.0, 2.0)  # depth of field
SHADOW_OFFSET = 0.05  # of the image
SHADOW_BLUR_SIGMA = 3.0
SHADOW_STRENGTH: Range = (0.15, 0.5)
OCCLUSION_PROB = 0.5
OCCLUDER_SIZE: Range = (0.15, 0.3)  # of the product's larger side
OCCLUDER_ASPECT: Range = (0.35, 0.6)
SKIN_HUE: Range = (0.02, 0.1)
SKIN_SATURATION: Range = (0.3, 0.6)
SKIN_VALUE: Range = (0.4, 0.95)
EXPOSURE: Range = (0.55, 1.25)
LIGHT_GRADIENT: Range = (0.0, 0.5)
COLOUR_TEMPERATURE = 0.18  # per-channel gain swing between warm and cool light
CAST_JITTER = 0.05
GAMMA: Range = (0.8, 1.25)
GLARE_PROB = 0.3
GLARE_RADIUS: Range = (0.08, 0.25)
GLARE_STRENGTH: Range = (0.2, 0.6)
BLUR_KINDS = ("none", "gaussian", "motion")
BLUR_PROBS = (0.3, 0.45, 0.25)
GAUSSIAN_BLUR_SIGMA: Range = (0.4, 1.3)
MOTION_BLUR_LENGTH: Range = (3.0, 8.0)
RESAMPLE_PROB = 0.3
RESAMPLE_FACTOR: Range = (0.35, 0.7)
NOISE_SIGMA: Range = (0.005, 0.04)
JPEG_QUALITY: tuple[int, int] = (25, 80)


def catalog_image(sprite: np.ndarray, view: int, rng: np.random.Generator) -> np.ndarray:
    """The shop image: the product upright and centred on pure white, evenly lit."""
    size = sprite.shape[0]
    fill = CATALOG_FILL[1] if view == 0 else rng.uniform(*CATALOG_FILL)
    shift = np.zeros(2) if view == 0 else rng.uniform(-CATALOG_SHIFT, CATALOG_SHIFT, 2) * size
    scaled = size * fill
    offset = (size - scaled) / 2 + shift
    affine = np.array([[fill, 0, offset[0]], [0, fill, offset[1]]], np.float64)
    warped = cv2.warpAffine(sprite, affine, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    image = (1 - warped[..., 3:]) + warped[..., :3]
    return np.clip(image, 0, 1)


def _homography(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random view of the sprite: scale, rotation, shift, then a perspective tilt."""
    scale = rng.uniform(*PHOTO_SCALE)
    angle = math.radians(rng.uniform(-PHOTO_MAX_ROTATION_DEG, PHOTO_MAX_ROTATION_DEG))
    centre = size / 2 + rng.uniform(-PHOTO_MAX_SHIFT, PHOTO_MAX_SHIFT, 2) * size
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    src = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    rel = src - size / 2
    dst = np.stack([cos * rel[:, 0] - sin * rel[:, 1], sin * rel[:, 0] + cos * rel[:, 1]], axis=1) + centre
    dst += rng.uniform(-1, 1, (4, 2)) * PERSPECTIVE_JITTER * size * scale
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))


def _occlude(image: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> None:
    """Hide part of the product behind a thumb or another object, from the edge of its box."""
    ys, xs = np.nonzero(alpha > 0.5)
    if len(ys) == 0:
        return
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    side = int(rng.integers(4))
    t = rng.uniform()
    centre = [(x0 + t * (x1 - x0), y0), (x1, y0 + t * (y1 - y0)), (x0 + t * (x1 - x0), y1), (x0, y0 + t * (y1 - y0))]
    length = rng.uniform(*OCCLUDER_SIZE) * max(x1 - x0, y1 - y0)
    axes = (length, length * rng.uniform(*OCCLUDER_ASPECT))
    if rng.uniform() < 0.5:
        colour = hsv(rng.uniform(*SKIN_HUE), rng.uniform(*SKIN_SATURATION), rng.uniform(*SKIN_VALUE))
    else:
        colour = random_colour(rng)
    mask = to_float(ellipse(blank(image.shape[0]), centre[side], axes, rng.uniform(0, 180)))
    paint(image, mask, colour)


def _light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uneven exposure, a colour cast, maybe glare, and a tone curve."""
    size = image.shape[0]
    xx, yy = unit_grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    illumination = rng.uniform(*EXPOSURE) * (
        1 + rng.uniform(*LIGHT_GRADIENT) * (math.cos(angle) * xx + math.sin(angle) * yy)
    )
    temperature = rng.uniform(-1, 1) * COLOUR_TEMPERATURE
    cast = np.array([1 + temperature, 1.0, 1 - temperature]) + rng.normal(0, CAST_JITTER, 3)
    image = image * illumination[..., None] * cast.astype(np.float32)
    if rng.uniform() < GLARE_PROB:
        gx, gy = rng.uniform(-1, 1, 2)
        radius = rng.uniform(*GLARE_RADIUS) * 2
        glare = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * radius**2))
        image = image + rng.uniform(*GLARE_STRENGTH) * glare[..., None]
    return np.clip(image, 0, 1) ** rng.uniform(*GAMMA)


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera faults: defocus or motion blur, low resolution, sensor noise."""
    size = image.shape[0]
    px = size / REFERENCE_SIZE
    kind = BLUR_KINDS[rng.choice(len(BLUR_KINDS), p=BLUR_PROBS)]
    if kind == "gaussian":
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*GAUSSIAN_BLUR_SIGMA) * px)
    elif kind == "motion":
        length = max(3, round(rng.uniform(*MOTION_BLUR_LENGTH) * px)) | 1
        kernel = np.zeros((length, length), np.float32)
        angle = rng.uniform(0, math.pi)
        half = (length - 1) / 2
        dx, dy = half * math.cos(angle), half * math.sin(angle)
        cv2.line(kernel, (round(half - dx), round(half - dy)), (round(half + dx), round(half + dy)), 1.0, 1)
        image = cv2.filter2D(image, -1, kernel / kernel.sum())
    if rng.uniform() < RESAMPLE_PROB:
        small = max(MIN_IMAGE_SIZE // 2, round(size * rng.uniform(*RESAMPLE_FACTOR)))
        image = cv2.resize(cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA), (size, size))
    noise = rng.normal(0, rng.uniform(*NOISE_SIGMA), image.shape).astype(np.float32)
    return np.clip(image + noise, 0, 1)


def photo(sprite: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A user photo of the product; returns it and the JPEG quality to save it at."""
    size = sprite.shape[0]
    px = size / REFERENCE_SIZE
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))](rng, size).astype(np.float32)
    sigma = rng.uniform(*BACKGROUND_BLUR_SIGMA) * px
    if sigma > 0:
        background = cv2.GaussianBlur(background, (0, 0), sigma)
    warped = cv2.warpPerspective(sprite, _homography(size, rng), (size, size), flags=cv2.INTER_LINEAR)
    alpha = warped[..., 3]
    offset = rng.uniform(-SHADOW_OFFSET, SHADOW_OFFSET, 2) * size
    shadow = cv2.warpAffine(alpha, np.array([[1, 0, offset[0]], [0, 1, offset[1]]]), (size, size))
    shadow = cv2.GaussianBlur(shadow, (0, 0), SHADOW_BLUR_SIGMA * px)
    background *= (1 - rng.uniform(*SHADOW_STRENGTH) * shadow)[..., None]
    image = background * (1 - alpha[..., None]) + warped[..., :3]
    if rng.uniform() < OCCLUSION_PROB:
        _occlude(image, alpha, rng)
    image = _degrade(_light(image, rng), rng)
    return image, int(rng.integers(*JPEG_QUALITY, endpoint=True))
