"""The embedded synthetic shop: a zero-download data source, so ``train.py`` runs anywhere.

Each category is a product *shape family* (bottle, box, can, fruit, bag, jar, carton, tube) with its own
hue band and, when shapes repeat, its own surface texture: a category classifier has shape and colour to
learn. Each product inside a category has its own colours, label, print pattern and logo glyph: an
embedder has product-level detail to learn. Catalog images show the product upright on pure white under
even light (PNG); user photos show it warped, in clutter, badly lit, blurred, noisy, partly hidden and
saved as low-quality JPEG, so the two domains differ the way shop images and phone photos do.

Generated once per parameter set into ``root/<hash of params>/`` (a few seconds at the default size) and
reused from there. The folder appears in one rename with its manifest and completion marker written last,
so an interrupted generation is redone, never half-used. Every image draws from its own numpy Generator
seeded from ``seed`` and its ids: the same parameters give byte-identical files, in any order.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from snapsearch.data.manifest import CATEGORY_SEP, COLUMNS, SPLITS, ManifestError, read_manifest
from snapsearch.utils.atomic import atomic_dir, atomic_write_text

log = logging.getLogger(__name__)

# Bump when the drawing changes: the version is part of the cache hash, so old shops are not reused.
GENERATOR_VERSION = 1
MANIFEST_NAME = "manifest.csv"
COMPLETE_MARKER = "COMPLETE.json"
PARAM_HASH_CHARS = 16
MIN_IMAGE_SIZE = 32
DEFAULT_PHOTOS = {"train": 6, "val": 2, "test": 3}
SPLIT_ORDER = ("train", "val", "test")
MAX_WORKERS = 8  # products render in parallel threads (cv2 and numpy release the GIL)

CATALOG_EXT = ".png"
PHOTO_EXT = ".jpg"
PNG_COMPRESSION = 3

# Independent random streams: each image seeds a Generator from (seed, stream, ids...).
STREAM_CATEGORY, STREAM_PRODUCT, STREAM_SPRITE, STREAM_CATALOG, STREAM_PHOTO = range(5)

RGB = np.ndarray  # float32 colour in [0, 1], shape (3,)
Range = tuple[float, float]

# --- the products ------------------------------------------------------------------------------------

SUPERSAMPLE = 2  # sprites are drawn at this multiple of the image size, then area-downsampled (anti-aliasing)
SUBPIXEL_BITS = 4  # fixed-point fraction bits for cv2 drawing
SPRITE_FILL = 0.9  # product height as a fraction of its sprite, for products no wider than MAX_WIDTH
MAX_WIDTH = 0.72  # widest product as a fraction of the sprite; wider shapes are drawn shorter
HUE_SPREAD_FRACTION = 0.3  # product body hues vary by this fraction of the spacing between category hues
MIN_HUE_SPREAD = 0.03  # ...but at least this much (hue in turns), so products differ with many categories
BODY_SATURATION: Range = (0.5, 0.95)
BODY_VALUE: Range = (0.5, 0.95)
LABEL_HEIGHT: Range = (0.25, 0.45)  # fraction of the labelled part's height
LABEL_CENTRE: Range = (0.4, 0.6)
PATTERN_PERIODS: tuple[int, int] = (4, 10)  # pattern repeats across the sprite
PATTERN_DUTY = 0.4
DOT_RADIUS = 0.28  # of the pattern period
FRUIT_PATTERN_OPACITY = 0.35  # fruit has no label: its pattern is a faint skin marking
GLYPH_FILL = 0.7  # glyph size as a fraction of the label height (or width when narrower)
CYLINDER_SHADE = 0.45  # darkening at the edges of round products
SIDE_SHADE = 0.68  # brightness of side faces (boxes, cartons)
TOP_SHADE = 1.15  # brightness of top faces
GLOSS_STRENGTH = 0.35
GLOSS_WIDTH = 0.08  # of the product width
SPECKLE_DENSITY = 0.012  # speckles per sprite pixel
SPECKLE_DARKEN = 0.6
RIB_PERIODS = 40
RIB_DARKEN = 0.12


@dataclass(frozen=True)
class ShapeFamily:
    shape: str
    names: tuple[str, ...]  # category paths, taken in turn when more categories share the shape
    aspect: Range  # body width / height


SHAPE_FAMILIES = (
    ShapeFamily("bottle", ("Drinks/Bottles", "Household/Cleaners", "Drinks/Juice"), (0.3, 0.4)),
    ShapeFamily("box", ("Pantry/Cereal", "Household/Detergent", "Pantry/Tea"), (0.55, 0.72)),
    ShapeFamily("can", ("Drinks/Cans", "Pantry/CannedFood", "Pantry/Soup"), (0.5, 0.62)),
    ShapeFamily("fruit", ("Fresh/Fruit", "Fresh/Citrus", "Fresh/Vegetables"), (0.85, 1.05)),
    ShapeFamily("bag", ("Snacks/Crisps", "Pantry/Pasta", "Snacks/Sweets"), (0.6, 0.75)),
    ShapeFamily("jar", ("Pantry/Jars", "Pantry/Spreads", "Pantry/Sauces"), (0.68, 0.85)),
    ShapeFamily("carton", ("Dairy/Milk", "Drinks/JuiceCartons", "Dairy/Cream"), (0.4, 0.5)),
    ShapeFamily("tube", ("Household/Toothpaste", "Household/Creams", "Pantry/Paste"), (0.3, 0.38)),
)
TEXTURES = ("plain", "gloss", "speckle", "ribbed")  # category-level, tells apart categories sharing a shape
PATTERNS = ("none", "hstripes", "vstripes", "diagonal", "dots", "checker", "zigzag")
GLYPH_SHAPES = ("circle", "ring", "triangle", "diamond", "star", "cross", "square")
GLYPHS = GLYPH_SHAPES + tuple(chr(c) for c in range(ord("A"), ord("Z") + 1))  # letters: logo initials
STAR_POINTS = 5
STAR_INNER = 0.45  # inner / outer radius
RING_WIDTH = 0.22  # of the glyph size
CROSS_WIDTH = 0.3
LETTER_THICKNESS = 0.12  # of the glyph size
LEAF_HUE: Range = (0.22, 0.38)  # fruit accents are leaves
LEAF_SATURATION: Range = (0.5, 0.9)
LEAF_VALUE: Range = (0.3, 0.7)
ACCENT_SATURATION: Range = (0.0, 0.9)
ACCENT_VALUE: Range = (0.15, 0.95)
MID_GREY = 0.5  # luminance above which print on a colour is dark, below which it is light
DARK_INK: Range = (0.05, 0.4)
LIGHT_INK: Range = (0.8, 1.0)


@dataclass(frozen=True)
class Category:
    index: int
    path: str
    shape: str
    texture: str
    aspect: Range
    hue: float  # centre of the category's body hue band, in turns
    hue_spread: float


@dataclass(frozen=True)
class ProductSpec:
    product_id: str
    category: Category
    index: int
    aspect: float
    body: RGB
    accent: RGB  # caps, lids, crimps, leaves
    label: RGB
    pattern: str
    pattern_colour: RGB
    pattern_periods: int
    glyph: str
    glyph_colour: RGB
    label_centre: float
    label_height: float


@dataclass
class Parts:
    """Where a shape's regions lie in its sprite (float masks in [0, 1]) and how it is shaded."""

    body: np.ndarray
    label: np.ndarray
    accent: np.ndarray
    shade: np.ndarray
    glyph_centre: tuple[float, float]
    glyph_size: float
    pattern_on_body: bool = False


# --- the photos ----------------------------------------------------------------------------------------

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
SHELF_ROWS: tuple[int, int] = (2, 5)
SHELF_ITEM_WIDTH: Range = (0.08, 0.25)
SHELF_BOARD = 0.04  # of the image
SHELF_ITEM_HEIGHT: Range = (0.3, 0.9)  # of the row height
SHELF_LABEL_POSITION: Range = (0.3, 0.7)  # of the item height, from its base
SHELF_GAP: Range = (0.0, 0.04)  # of the image
WALL_SATURATION: Range = (0.0, 0.4)
WALL_VALUE: Range = (0.4, 0.95)
BOARD_SATURATION: Range = (0.0, 0.5)
BOARD_VALUE: Range = (0.2, 0.7)
TABLE_SATURATION: Range = (0.2, 0.7)
TABLE_VALUE: Range = (0.3, 0.85)
CLUTTER_SHAPES: tuple[int, int] = (6, 16)
CLUTTER_SIZE: Range = (0.08, 0.35)
GRAIN_FREQUENCY: Range = (20.0, 60.0)
GRAIN_CONTRAST = 0.12


# --- geometry helpers ----------------------------------------------------------------------------------


def _fix(points: list[tuple[float, float]] | np.ndarray) -> np.ndarray:
    """Float pixel coordinates as cv2's fixed-point int32 points."""
    return np.round(np.asarray(points, dtype=np.float64) * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _poly(mask: np.ndarray, points: list[tuple[float, float]] | np.ndarray, value: int = 255) -> np.ndarray:
    cv2.fillPoly(mask, [_fix(points)], value, cv2.LINE_AA, SUBPIXEL_BITS)
    return mask


def _rect(mask: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return _poly(mask, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def _ellipse(
    mask: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0, value: int = 255
) -> np.ndarray:
    c = tuple(int(v) for v in _fix([centre])[0])
    a = tuple(int(v) for v in _fix([axes])[0])
    cv2.ellipse(mask, c, a, angle, 0, 360, value, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    return mask


def _rounded_rect(mask: np.ndarray, x0: float, y0: float, x1: float, y1: float, r: float) -> np.ndarray:
    _rect(mask, x0 + r, y0, x1 - r, y1)
    _rect(mask, x0, y0 + r, x1, y1 - r)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        _ellipse(mask, (cx, cy), (r, r))
    return mask


def _blank(size: int) -> np.ndarray:
    return np.zeros((size, size), np.uint8)


def _f(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32) / 255.0


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y); cached, never mutate."""
    axis = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(axis, axis)


@lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1]; cached, never mutate."""
    xx, yy = _pixel_grid(size)
    return xx / size * 2 - 1, yy / size * 2 - 1


def _hsv(h: float, s: float, v: float) -> RGB:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _random_colour(rng: np.random.Generator, sat: Range = (0.0, 1.0), val: Range = (0.1, 1.0)) -> RGB:
    return _hsv(rng.uniform(), rng.uniform(*sat), rng.uniform(*val))


def _contrasting(colour: RGB, rng: np.random.Generator) -> RGB:
    """A colour that reads on ``colour``: dark on light, light on dark."""
    luminance = float(colour @ np.array([0.299, 0.587, 0.114], np.float32))
    val = DARK_INK if luminance > MID_GREY else LIGHT_INK
    return _random_colour(rng, (0.0, 1.0), val)


def _cv_colour(colour: RGB) -> tuple[int, int, int]:
    r, g, b = (round(float(c) * 255) for c in np.clip(colour, 0, 1))
    return r, g, b


def _box(size: int, aspect: float) -> tuple[float, float, float, float, float, float]:
    """Centre x, top, bottom, left, right, width and height of a product of this aspect in its sprite."""
    height = size * SPRITE_FILL * min(1.0, MAX_WIDTH / (SPRITE_FILL * aspect))
    width = aspect * height
    cx = size / 2
    top = (size - height) / 2
    return cx, top, top + height, cx - width / 2, cx + width / 2, height


def _cylinder(size: int, cx: float, width: float) -> np.ndarray:
    xx, _ = _pixel_grid(size)
    u = np.clip((xx - cx) / (width / 2), -1, 1)
    return (1 - CYLINDER_SHADE * u**2).astype(np.float32)


def _label_band(
    size: int, body: np.ndarray, spec: ProductSpec, y0: float, y1: float
) -> tuple[np.ndarray, float, float]:
    """The label: a horizontal band of the labelled part [y0, y1], cut to the body. Returns it, centre, height."""
    centre = y0 + spec.label_centre * (y1 - y0)
    half = spec.label_height * (y1 - y0) / 2
    band = _f(_rect(_blank(size), 0, centre - half, size, centre + half))
    return band * body, centre, 2 * half


# --- shapes: each returns the Parts of its sprite ------------------------------------------------------
# Proportions inside the drawers are fractions of the product's height ``h`` or width ``w``: they are the
# drawing itself (where a bottle's neck ends), not tuning knobs.


def _bottle(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    neck = 0.36 * w
    cap_end, neck_end, shoulder_end = top + 0.09 * h, top + 0.26 * h, top + 0.38 * h
    cap = _rect(_blank(size), cx - neck / 2 - 0.02 * w, top, cx + neck / 2 + 0.02 * w, cap_end)
    body = _rect(_blank(size), cx - neck / 2, cap_end - 1, cx + neck / 2, neck_end)
    _poly(body, [(cx - neck / 2, neck_end - 1), (cx + neck / 2, neck_end - 1), (x1, shoulder_end), (x0, shoulder_end)])
    _rounded_rect(body, x0, shoulder_end - 1, x1, bottom, 0.15 * w)
    body_f = _f(np.maximum(body, cap))
    label, yc, lh = _label_band(size, _f(body), spec, shoulder_end, bottom)
    return Parts(body_f, label, _f(cap), _cylinder(size, cx, w), (cx, yc), min(lh, w))


def _box_shape(spec: ProductSpec, size: int) -> Parts:
    _, top, bottom, x0, x1, _ = _box(size, spec.aspect)
    d = 0.14 * (x1 - x0)
    front = _f(_rect(_blank(size), x0, top + d, x1 - d, bottom))
    lid = _f(_poly(_blank(size), [(x0, top + d), (x0 + d, top), (x1, top), (x1 - d, top + d)]))
    side = _f(_poly(_blank(size), [(x1 - d, top + d), (x1, top), (x1, bottom - d), (x1 - d, bottom)]))
    body = np.maximum(np.maximum(front, lid), side)
    shade = 1 + (TOP_SHADE - 1) * lid + (SIDE_SHADE - 1) * side
    label, yc, lh = _label_band(size, front, spec, top + d, bottom)
    return Parts(body, label, lid, shade.astype(np.float32), ((x0 + x1 - d) / 2, yc), min(lh, x1 - d - x0))


def _can(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, _ = _box(size, spec.aspect)
    w = x1 - x0
    ry = 0.1 * w
    body = _rect(_blank(size), x0, top + ry, x1, bottom - ry)
    _ellipse(body, (cx, bottom - ry), (w / 2, ry))
    lid = _f(_ellipse(_blank(size), (cx, top + ry), (w / 2, ry)))
    body_f = np.maximum(_f(body), lid)
    label, yc, lh = _label_band(size, _f(body), spec, top + 2 * ry, bottom - ry)
    return Parts(body_f, label * (1 - lid), lid, _cylinder(size, cx, w), (cx, yc), min(lh, w))


def _fruit(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    stalk = 0.12 * h
    cy, ry = (top + stalk + bottom) / 2, (bottom - top - stalk) / 2
    body = _f(_ellipse(_blank(size), (cx, cy), (w / 2, ry)))
    leaf = _rect(_blank(size), cx - 0.02 * w, top, cx + 0.02 * w, top + stalk + 0.05 * h)
    _ellipse(leaf, (cx + 0.12 * w, top + 0.5 * stalk), (0.12 * w, 0.04 * w), -30.0)
    accent = _f(leaf)
    sticker_c, sticker_r = (cx + 0.18 * w, cy - 0.05 * h), (0.15 * w, 0.11 * w)
    sticker = _f(_ellipse(_blank(size), sticker_c, sticker_r))
    xx, yy = _pixel_grid(size)
    r2 = ((xx - (cx - 0.2 * w)) / w) ** 2 + ((yy - (cy - 0.25 * ry)) / (2 * ry)) ** 2
    shade = np.clip(1.1 - 1.2 * r2, 1 - CYLINDER_SHADE, 1.1).astype(np.float32)
    return Parts(np.maximum(body, accent), sticker * body, accent, shade, sticker_c, 2 * sticker_r[1], True)


def _bag(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    crimp_end, bulge, taper = top + 0.09 * h, 0.04 * w, 0.05 * w
    mid = (crimp_end + bottom) / 2
    body = _poly(
        _blank(size),
        [
            (x0, crimp_end - 1),
            (x1, crimp_end - 1),
            (x1 + bulge, mid),
            (x1 - taper, bottom),
            (x0 + taper, bottom),
            (x0 - bulge, mid),
        ],
    )
    teeth = 9
    zigzag = [(x0 + w * i / (2 * teeth), top + (0.025 * h if i % 2 else 0.0)) for i in range(2 * teeth + 1)]
    crimp = _f(_poly(_blank(size), [*zigzag, (x1, crimp_end), (x0, crimp_end)]))
    label, yc, lh = _label_band(size, _f(body), spec, crimp_end, bottom)
    shade = 1 - 0.5 * (1 - _cylinder(size, cx, w + 2 * bulge))
    return Parts(np.maximum(_f(body), crimp), label, crimp, shade, (cx, yc), min(lh, w))


def _jar(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    lid_end = top + 0.15 * h
    lid = _f(_rounded_rect(_blank(size), x0 + 0.06 * w, top, x1 - 0.06 * w, lid_end, 0.03 * w))
    body = _f(_rounded_rect(_blank(size), x0, lid_end - 1, x1, bottom, 0.15 * w))
    label, yc, lh = _label_band(size, body, spec, lid_end, bottom)
    return Parts(np.maximum(body, lid), label, lid, _cylinder(size, cx, w), (cx, yc), min(lh, w))


def _carton(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    fin_end, roof_end = top + 0.05 * h, top + 0.2 * h
    fin = _f(_rect(_blank(size), cx - 0.3 * w, top, cx + 0.3 * w, fin_end))
    roof = _f(
        _poly(_blank(size), [(x0, roof_end), (cx - 0.3 * w, fin_end - 1), (cx + 0.3 * w, fin_end - 1), (x1, roof_end)])
    )
    front = _f(_rect(_blank(size), x0, roof_end - 1, x1, bottom))
    xx, _ = _pixel_grid(size)
    side = front * (xx > x1 - 0.28 * w)
    shade = 1 + (TOP_SHADE - 1) * roof + (SIDE_SHADE - 1) * side
    label, yc, lh = _label_band(size, front * (1 - side), spec, roof_end, bottom)
    body = np.maximum(np.maximum(front, roof), fin)
    return Parts(body, label, fin, shade.astype(np.float32), ((x0 + x1 - 0.28 * w) / 2, yc), min(lh, 0.72 * w))


def _tube(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    crimp_end, cap_start = top + 0.06 * h, bottom - 0.1 * h
    crimp = _f(_rect(_blank(size), x0 - 0.03 * w, top, x1 + 0.03 * w, crimp_end))
    cap = _f(_rect(_blank(size), cx - 0.2 * w, cap_start - 1, cx + 0.2 * w, bottom))
    body = _f(
        _poly(
            _blank(size),
            [(x0, crimp_end - 1), (x1, crimp_end - 1), (cx + 0.28 * w, cap_start), (cx - 0.28 * w, cap_start)],
        )
    )
    label, yc, lh = _label_band(size, body, spec, crimp_end, cap_start)
    accent = np.maximum(crimp, cap)
    return Parts(np.maximum(body, accent), label, accent, _cylinder(size, cx, w), (cx, yc), min(lh, 0.8 * w))


SHAPE_DRAWERS: dict[str, Callable[[ProductSpec, int], Parts]] = {
    "bottle": _bottle,
    "box": _box_shape,
    "can": _can,
    "fruit": _fruit,
    "bag": _bag,
    "jar": _jar,
    "carton": _carton,
    "tube": _tube,
}


# --- patterns, glyphs, textures ------------------------------------------------------------------------


def _pattern(name: str, periods: int, size: int) -> np.ndarray:
    """A print pattern over the whole sprite (float mask), cut to the label by the caller."""
    xx, yy = _pixel_grid(size)
    u, v = xx / (size / periods), yy / (size / periods)
    if name == "none":
        return np.zeros((size, size), np.float32)
    if name == "hstripes":
        on = v % 1 < PATTERN_DUTY
    elif name == "vstripes":
        on = u % 1 < PATTERN_DUTY
    elif name == "diagonal":
        on = (u + v) % 1 < PATTERN_DUTY
    elif name == "dots":
        on = (u % 1 - 0.5) ** 2 + (v % 1 - 0.5) ** 2 < DOT_RADIUS**2
    elif name == "checker":
        on = (np.floor(u) + np.floor(v)) % 2 == 0
    elif name == "zigzag":
        on = (v + 0.5 * np.abs((u % 1) * 2 - 1)) % 1 < PATTERN_DUTY
    else:
        raise ValueError(f"unknown pattern {name!r}; use one of {PATTERNS}")
    return on.astype(np.float32)


def _glyph(name: str, centre: tuple[float, float], glyph_size: float, size: int) -> np.ndarray:
    """The product's logo glyph (float mask): a simple shape or a letter."""
    mask = _blank(size)
    cx, cy = centre
    r = glyph_size / 2
    if name == "circle":
        _ellipse(mask, centre, (r, r))
    elif name == "ring":
        _ellipse(mask, centre, (r, r))
        _ellipse(mask, centre, (r * (1 - 2 * RING_WIDTH), r * (1 - 2 * RING_WIDTH)), value=0)
    elif name == "triangle":
        _poly(mask, [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)])
    elif name == "diamond":
        _poly(mask, [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)])
    elif name == "star":
        angles = -math.pi / 2 + np.arange(2 * STAR_POINTS) * math.pi / STAR_POINTS
        radii = np.where(np.arange(2 * STAR_POINTS) % 2 == 0, r, r * STAR_INNER)
        _poly(mask, np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1))
    elif name == "cross":
        arm = r * CROSS_WIDTH
        _rect(mask, cx - r, cy - arm, cx + r, cy + arm)
        _rect(mask, cx - arm, cy - r, cx + arm, cy + r)
    elif name == "square":
        _rect(mask, cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8)
    else:
        font = cv2.FONT_HERSHEY_SIMPLEX
        thickness = max(1, round(glyph_size * LETTER_THICKNESS))
        (tw, th), _ = cv2.getTextSize(name, font, 1.0, thickness)
        scale = glyph_size / max(tw, th)
        thickness = max(1, round(thickness * min(scale, 1.0)))
        (tw, th), _ = cv2.getTextSize(name, font, scale, thickness)
        origin = (round(cx - tw / 2), round(cy + th / 2))
        cv2.putText(mask, name, origin, font, scale, 255, thickness, cv2.LINE_AA)
    return _f(mask)


def _texture(texture: str, parts: Parts, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The category's surface finish: a multiplier and an additive highlight over the body."""
    mult = np.ones((size, size), np.float32)
    add = np.zeros((size, size), np.float32)
    xx, yy = _pixel_grid(size)
    if texture == "gloss":
        cols = np.nonzero(parts.body.max(axis=0) > 0)[0]
        left, right = float(cols.min()), float(cols.max())
        centre, width = left + 0.28 * (right - left), GLOSS_WIDTH * (right - left)
        add = GLOSS_STRENGTH * np.exp(-(((xx - centre) / width) ** 2)).astype(np.float32)
    elif texture == "speckle":
        n = int(SPECKLE_DENSITY * size * size)
        flat = rng.integers(0, size * size, n)
        mult.flat[flat] = SPECKLE_DARKEN
        mult = cv2.GaussianBlur(mult, (3, 3), 0)
    elif texture == "ribbed":
        mult = 1 - RIB_DARKEN * (np.sin(yy * 2 * math.pi * RIB_PERIODS / size) > 0)
    return mult.astype(np.float32), add * parts.body


def _paint(rgb: np.ndarray, mask: np.ndarray, colour: RGB, opacity: float = 1.0) -> None:
    m = (mask * opacity)[..., None]
    rgb *= 1 - m
    rgb += m * colour


def _render_sprite(spec: ProductSpec, size: int, rng: np.random.Generator) -> np.ndarray:
    """The product on a transparent square: premultiplied RGBA float32, ``size`` pixels wide."""
    big = size * SUPERSAMPLE
    parts = SHAPE_DRAWERS[spec.category.shape](spec, big)
    rgb = np.empty((big, big, 3), np.float32)
    rgb[:] = spec.body
    pattern = _pattern(spec.pattern, spec.pattern_periods, big)
    if parts.pattern_on_body:
        _paint(rgb, pattern * parts.body, spec.pattern_colour, FRUIT_PATTERN_OPACITY)
    _paint(rgb, parts.label, spec.label)
    if not parts.pattern_on_body:
        _paint(rgb, pattern * parts.label, spec.pattern_colour)
    glyph = _glyph(spec.glyph, parts.glyph_centre, GLYPH_FILL * parts.glyph_size, big)
    _paint(rgb, glyph * parts.body, spec.glyph_colour)
    _paint(rgb, parts.accent, spec.accent)
    mult, add = _texture(spec.category.texture, parts, big, rng)
    rgb *= (parts.shade * mult)[..., None]
    rgb += add[..., None]
    rgba = np.dstack([np.clip(rgb, 0, 1) * parts.body[..., None], parts.body])
    return cv2.resize(rgba, (size, size), interpolation=cv2.INTER_AREA)


# --- specs ---------------------------------------------------------------------------------------------


def _rng(seed: int, stream: int, *ids: int) -> np.random.Generator:
    return np.random.default_rng([seed, GENERATOR_VERSION, stream, *ids])


def _slug(path: str) -> str:
    return path.lower().replace(CATEGORY_SEP, "-")


def _categories(n: int) -> list[Category]:
    """Shape families in turn; categories sharing a shape differ in name, texture and hue."""
    spacing = 1.0 / n
    out = []
    for c in range(n):
        family = SHAPE_FAMILIES[c % len(SHAPE_FAMILIES)]
        repeat = c // len(SHAPE_FAMILIES)
        name = family.names[repeat % len(family.names)]
        cycle = repeat // len(family.names)
        path = name if cycle == 0 else f"{name}{cycle + 1}"
        texture = TEXTURES[repeat % len(TEXTURES)]
        spread = max(HUE_SPREAD_FRACTION * spacing, MIN_HUE_SPREAD)
        out.append(Category(c, path, family.shape, texture, family.aspect, c * spacing, spread))
    return out


def _product_specs(category: Category, count: int, seed: int) -> list[ProductSpec]:
    """Products of one category: patterns and glyphs dealt without repeats, so neighbours differ."""
    deal = _rng(seed, STREAM_CATEGORY, category.index)
    patterns = deal.permutation(len(PATTERNS))
    glyphs = deal.permutation(len(GLYPHS))
    specs = []
    for p in range(count):
        rng = _rng(seed, STREAM_PRODUCT, category.index, p)
        body = _hsv(
            category.hue + rng.uniform(-1, 1) * category.hue_spread,
            rng.uniform(*BODY_SATURATION),
            rng.uniform(*BODY_VALUE),
        )
        label = _random_colour(rng)
        if category.shape == "fruit":
            accent = _hsv(rng.uniform(*LEAF_HUE), rng.uniform(*LEAF_SATURATION), rng.uniform(*LEAF_VALUE))
        else:
            accent = _random_colour(rng, ACCENT_SATURATION, ACCENT_VALUE)
        specs.append(
            ProductSpec(
                product_id=f"{_slug(category.path)}_{p:03d}",
                category=category,
                index=p,
                aspect=float(rng.uniform(*category.aspect)),
                body=body,
                accent=accent,
                label=label,
                pattern=PATTERNS[patterns[p % len(PATTERNS)]],
                pattern_colour=_contrasting(label, rng),
                pattern_periods=int(rng.integers(*PATTERN_PERIODS, endpoint=True)),
                glyph=GLYPHS[glyphs[p % len(GLYPHS)]],
                glyph_colour=_contrasting(label, rng),
                label_centre=float(rng.uniform(*LABEL_CENTRE)),
                label_height=float(rng.uniform(*LABEL_HEIGHT)),
            )
        )
    return specs


# --- catalog images and photos -------------------------------------------------------------------------


def _catalog_image(sprite: np.ndarray, view: int, rng: np.random.Generator) -> np.ndarray:
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


def _bg_gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    xx, yy = _unit_grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    t = ((math.cos(angle) * xx + math.sin(angle) * yy) / 2 + 0.5)[..., None]
    return (1 - t) * _random_colour(rng) + t * _random_colour(rng)


def _bg_shelf(rng: np.random.Generator, size: int) -> np.ndarray:
    """A shop shelf: rows of other products standing on boards."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _cv_colour(_random_colour(rng, WALL_SATURATION, WALL_VALUE))
    rows = int(rng.integers(*SHELF_ROWS, endpoint=True))
    board = max(1, round(SHELF_BOARD * size))
    board_colour = _cv_colour(_random_colour(rng, BOARD_SATURATION, BOARD_VALUE))
    for r in range(rows):
        base = round((r + 1) * size / rows + rng.uniform(-0.05, 0.05) * size)
        x = float(rng.uniform(-0.1, 0.05) * size)
        while x < size:
            w = rng.uniform(*SHELF_ITEM_WIDTH) * size
            h = rng.uniform(*SHELF_ITEM_HEIGHT) * size / rows
            cv2.rectangle(img, (round(x), round(base - h)), (round(x + w), base), _cv_colour(_random_colour(rng)), -1)
            band = round(base - h * rng.uniform(*SHELF_LABEL_POSITION))
            cv2.rectangle(
                img,
                (round(x), band),
                (round(x + w), band + max(1, round(h * 0.2))),
                _cv_colour(_random_colour(rng)),
                -1,
            )
            x += w + rng.uniform(*SHELF_GAP) * size
        cv2.rectangle(img, (0, base), (size, base + board), board_colour, -1)
    return img.astype(np.float32) / 255


def _bg_clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered counter: random coloured shapes on a plain surface."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _cv_colour(_random_colour(rng))
    for _ in range(int(rng.integers(*CLUTTER_SHAPES, endpoint=True))):
        colour = _cv_colour(_random_colour(rng))
        centre = rng.uniform(0, size, 2)
        radius = rng.uniform(*CLUTTER_SIZE) * size
        if rng.uniform() < 0.5:
            axes = (round(radius), round(radius * rng.uniform(0.4, 1.0)))
            cv2.ellipse(
                img, (round(centre[0]), round(centre[1])), axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA
            )
        else:
            corners = cv2.boxPoints(
                ((centre[0], centre[1]), (radius * 2, radius * rng.uniform(0.5, 2.0)), rng.uniform(0, 180))
            )
            cv2.fillPoly(img, [np.round(corners).astype(np.int32)], colour, cv2.LINE_AA)
    return img.astype(np.float32) / 255


def _bg_table(rng: np.random.Generator, size: int) -> np.ndarray:
    """A wooden or fabric table top: a grained surface."""
    xx, yy = _unit_grid(size)
    freq = rng.uniform(*GRAIN_FREQUENCY)
    wobble = rng.uniform(0.5, 3.0) * np.sin(xx * rng.uniform(1, 4) + rng.uniform(0, 2 * math.pi))
    grain = np.sin(yy * freq + wobble)[..., None]
    base = _random_colour(rng, TABLE_SATURATION, TABLE_VALUE)
    return base * (1 + GRAIN_CONTRAST * grain)


BACKGROUNDS: tuple[Callable[[np.random.Generator, int], np.ndarray], ...] = (
    _bg_gradient,
    _bg_shelf,
    _bg_clutter,
    _bg_table,
)


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
        colour = _hsv(rng.uniform(*SKIN_HUE), rng.uniform(*SKIN_SATURATION), rng.uniform(*SKIN_VALUE))
    else:
        colour = _random_colour(rng)
    mask = _f(_ellipse(_blank(image.shape[0]), centre[side], axes, rng.uniform(0, 180)))
    _paint(image, mask, colour)


def _light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uneven exposure, a colour cast, maybe glare, and a tone curve."""
    size = image.shape[0]
    xx, yy = _unit_grid(size)
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


def _photo(sprite: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
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


def _write(path: Path, image: np.ndarray, params: list[int]) -> None:
    bgr = cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), bgr, params):
        raise OSError(f"could not write synthetic image {path}")


# --- generation and cache ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    out: Path
    spec: ProductSpec
    params: Mapping


def _render_product(job: _Job) -> list[dict[str, str]]:
    """All images of one product (its own random streams: any order, any thread, same bytes)."""
    spec, params = job.spec, job.params
    seed, size, c, p = params["seed"], params["image_size"], spec.category.index, spec.index
    folder = Path("images") / _slug(spec.category.path) / spec.product_id
    (job.out / folder).mkdir(parents=True, exist_ok=True)
    sprite = _render_sprite(spec, size, _rng(seed, STREAM_SPRITE, c, p))
    rows = []

    def row(name: str, domain: str, split: str) -> dict[str, str]:
        return {
            "image_id": f"{spec.product_id}/{Path(name).stem}",
            "path": str(folder / name),
            "product_id": spec.product_id,
            "category": spec.category.path,
            "domain": domain,
            "split": split,
        }

    for k in range(params["catalog_per_product"]):
        name = f"catalog_{k:02d}{CATALOG_EXT}"
        image = _catalog_image(sprite, k, _rng(seed, STREAM_CATALOG, c, p, k))
        _write(job.out / folder / name, image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
        rows.append(row(name, "catalog", "train"))
    for s, split in enumerate(SPLIT_ORDER):
        for k in range(params["photos_per_product"][split]):
            name = f"{split}_{k:03d}{PHOTO_EXT}"
            image, quality = _photo(sprite, _rng(seed, STREAM_PHOTO, c, p, s, k))
            _write(job.out / folder / name, image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            rows.append(row(name, "query", split))
    return rows


def _generate(out: Path, params: Mapping) -> None:
    """Draw every image into ``out``, then the manifest, then (last) the completion marker."""
    jobs = [
        _Job(out, spec, params)
        for category in _categories(params["n_categories"])
        for spec in _product_specs(category, params["products_per_category"], params["seed"])
    ]
    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        rows = [r for product_rows in pool.map(_render_product, jobs) for r in product_rows]
    atomic_write_text(out / MANIFEST_NAME, pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(index=False))
    atomic_write_text(out / COMPLETE_MARKER, json.dumps(params, sort_keys=True))


def _load_cached(out: Path, params: Mapping) -> pd.DataFrame | None:
    """The finished shop in ``out`` if there is one for exactly these parameters, else None."""
    marker = out / COMPLETE_MARKER
    if not marker.is_file():
        return None
    try:
        if json.loads(marker.read_text()) != params:
            log.warning("synthetic shop at %s was made with other parameters; regenerating", out)
            return None
        return read_manifest(out / MANIFEST_NAME)
    except (OSError, ValueError, ManifestError) as err:
        log.warning("synthetic shop at %s is unusable (%s); regenerating", out, err)
        return None


def _check_params(
    n_categories: int,
    products_per_category: int,
    photos_per_product: Mapping[str, int] | None,
    catalog_per_product: int,
    image_size: int,
    seed: int,
) -> dict:
    """Validated, normalised parameters: what the cache folder is named after."""
    photos = dict(DEFAULT_PHOTOS if photos_per_product is None else photos_per_product)
    unknown = sorted(set(photos) - SPLITS)
    if unknown:
        raise ValueError(f"photos_per_product has unknown splits {unknown}; use {list(SPLIT_ORDER)}")
    counts = {split: photos.get(split, 0) for split in SPLIT_ORDER}
    minimums = {
        "n_categories": 1,
        "products_per_category": 1,
        "catalog_per_product": 1,
        "image_size": MIN_IMAGE_SIZE,
        "seed": 0,
        **{f"photos_per_product.{s}": 0 for s in SPLIT_ORDER},
    }
    values = {
        "n_categories": n_categories,
        "products_per_category": products_per_category,
        "catalog_per_product": catalog_per_product,
        "image_size": image_size,
        "seed": seed,
        **{f"photos_per_product.{s}": n for s, n in counts.items()},
    }
    for key, value in values.items():
        if int(value) != value or value < minimums[key]:
            raise ValueError(f"synthetic shop: {key} must be an integer >= {minimums[key]}, got {value!r}")
    return {
        "version": GENERATOR_VERSION,
        "n_categories": int(n_categories),
        "products_per_category": int(products_per_category),
        "photos_per_product": {split: int(n) for split, n in counts.items()},
        "catalog_per_product": int(catalog_per_product),
        "image_size": int(image_size),
        "seed": int(seed),
    }


def _shop_dir(root: str | Path, params: Mapping) -> Path:
    """The cache folder of one parameter set: ``root/<hash of the parameters and generator version>``."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return Path(root).expanduser().resolve() / digest[:PARAM_HASH_CHARS]


class _BuiltMeanwhile(Exception):
    """Another process finished the same shop while this one drew it: keep theirs."""


def make_synthetic_shop(
    root: str | Path,
    *,
    n_categories: int = 6,
    products_per_category: int = 5,
    photos_per_product: Mapping[str, int] | None = None,
    catalog_per_product: int = 1,
    image_size: int = 128,
    seed: int = 0,
) -> pd.DataFrame:
    """The synthetic shop's manifest, drawing its images under ``root`` on first use.

    ``photos_per_product`` maps split -> user photos per product (default ``{train: 6, val: 2, test: 3}``);
    catalog images are split ``train`` (the search pool, also usable for training).
    """
    params = _check_params(
        n_categories, products_per_category, photos_per_product, catalog_per_product, image_size, seed
    )
    out = _shop_dir(root, params)
    cached = _load_cached(out, params)
    if cached is not None:
        return cached
    n_products = params["n_categories"] * params["products_per_category"]
    log.info("Drawing the synthetic shop (%d products) into %s", n_products, out)
    start = time.perf_counter()
    try:
        with atomic_dir(out) as tmp:
            _generate(tmp, params)
            if _load_cached(out, params) is not None:
                raise _BuiltMeanwhile
    except _BuiltMeanwhile:
        log.info("another process finished the synthetic shop at %s first; using it", out)
    log.info("Synthetic shop ready in %.1f s", time.perf_counter() - start)
    shop = _load_cached(out, params)
    if shop is None:
        raise ManifestError(f"the synthetic shop just written to {out} cannot be read back; delete it and retry")
    return shop
