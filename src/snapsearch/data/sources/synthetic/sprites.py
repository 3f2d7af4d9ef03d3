"""A product's sprite: its shape coloured, printed (label, pattern, logo glyph), textured and shaded.

Drawn at ``SUPERSAMPLE`` times the image size and area-downsampled, so edges are anti-aliased.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from snapsearch.data.sources.synthetic.draw import blank, ellipse, paint, pixel_grid, poly, rect, to_float
from snapsearch.data.sources.synthetic.shapes import SHAPE_DRAWERS, Parts
from snapsearch.data.sources.synthetic.specs import PATTERNS, ProductSpec

SUPERSAMPLE = 2  # sprites are drawn at this multiple of the image size, then area-downsampled (anti-aliasing)
PATTERN_DUTY = 0.4
DOT_RADIUS = 0.28  # of the pattern period
FRUIT_PATTERN_OPACITY = 0.35  # fruit has no label: its pattern is a faint skin marking
GLYPH_FILL = 0.7  # glyph size as a fraction of the label height (or width when narrower)
GLOSS_STRENGTH = 0.35
GLOSS_WIDTH = 0.08  # of the product width
SPECKLE_DENSITY = 0.012  # speckles per sprite pixel
SPECKLE_DARKEN = 0.6
RIB_PERIODS = 40
RIB_DARKEN = 0.12
STAR_POINTS = 5
STAR_INNER = 0.45  # inner / outer radius
RING_WIDTH = 0.22  # of the glyph size
CROSS_WIDTH = 0.3
LETTER_THICKNESS = 0.12  # of the glyph size


def _pattern(name: str, periods: int, size: int) -> np.ndarray:
    """A print pattern over the whole sprite (float mask), cut to the label by the caller."""
    xx, yy = pixel_grid(size)
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
    mask = blank(size)
    cx, cy = centre
    r = glyph_size / 2
    if name == "circle":
        ellipse(mask, centre, (r, r))
    elif name == "ring":
        ellipse(mask, centre, (r, r))
        ellipse(mask, centre, (r * (1 - 2 * RING_WIDTH), r * (1 - 2 * RING_WIDTH)), value=0)
    elif name == "triangle":
        poly(mask, [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)])
    elif name == "diamond":
        poly(mask, [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)])
    elif name == "star":
        angles = -math.pi / 2 + np.arange(2 * STAR_POINTS) * math.pi / STAR_POINTS
        radii = np.where(np.arange(2 * STAR_POINTS) % 2 == 0, r, r * STAR_INNER)
        poly(mask, np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1))
    elif name == "cross":
        arm = r * CROSS_WIDTH
        rect(mask, cx - r, cy - arm, cx + r, cy + arm)
        rect(mask, cx - arm, cy - r, cx + arm, cy + r)
    elif name == "square":
        rect(mask, cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8)
    else:
        font = cv2.FONT_HERSHEY_SIMPLEX
        thickness = max(1, round(glyph_size * LETTER_THICKNESS))
        (tw, th), _ = cv2.getTextSize(name, font, 1.0, thickness)
        scale = glyph_size / max(tw, th)
        thickness = max(1, round(thickness * min(scale, 1.0)))
        (tw, th), _ = cv2.getTextSize(name, font, scale, thickness)
        origin = (round(cx - tw / 2), round(cy + th / 2))
        cv2.putText(mask, name, origin, font, scale, 255, thickness, cv2.LINE_AA)
    return to_float(mask)


def _texture(texture: str, parts: Parts, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The category's surface finish: a multiplier and an additive highlight over the body."""
    mult = np.ones((size, size), np.float32)
    add = np.zeros((size, size), np.float32)
    xx, yy = pixel_grid(size)
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


def render_sprite(spec: ProductSpec, size: int, rng: np.random.Generator) -> np.ndarray:
    """The product on a transparent square: premultiplied RGBA float32, ``size`` pixels wide."""
    big = size * SUPERSAMPLE
    parts = SHAPE_DRAWERS[spec.category.shape](spec, big)
    rgb = np.empty((big, big, 3), np.float32)
    rgb[:] = spec.body
    pattern = _pattern(spec.pattern, spec.pattern_periods, big)
    if parts.pattern_on_body:
        paint(rgb, pattern * parts.body, spec.pattern_colour, FRUIT_PATTERN_OPACITY)
    paint(rgb, parts.label, spec.label)
    if not parts.pattern_on_body:
        paint(rgb, pattern * parts.label, spec.pattern_colour)
    glyph = _glyph(spec.glyph, parts.glyph_centre, GLYPH_FILL * parts.glyph_size, big)
    paint(rgb, glyph * parts.body, spec.glyph_colour)
    paint(rgb, parts.accent, spec.accent)
    mult, add = _texture(spec.category.texture, parts, big, rng)
    rgb *= (parts.shade * mult)[..., None]
    rgb += add[..., None]
    rgba = np.dstack([np.clip(rgb, 0, 1) * parts.body[..., None], parts.body])
    return cv2.resize(rgba, (size, size), interpolation=cv2.INTER_AREA)
