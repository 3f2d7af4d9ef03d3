"""The shape families' drawings: where each product's body, label and accents lie in its sprite.

Proportions inside the drawers are fractions of the product's height ``h`` or width ``w``: they are the
drawing itself (where a bottle's neck ends), not tuning knobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from snapsearch.data.sources.synthetic.draw import blank, ellipse, pixel_grid, poly, rect, rounded_rect, to_float
from snapsearch.data.sources.synthetic.specs import ProductSpec

SPRITE_FILL = 0.9  # product height as a fraction of its sprite, for products no wider than MAX_WIDTH
MAX_WIDTH = 0.72  # widest product as a fraction of the sprite; wider shapes are drawn shorter
CYLINDER_SHADE = 0.45  # darkening at the edges of round products
SIDE_SHADE = 0.68  # brightness of side faces (boxes, cartons)
TOP_SHADE = 1.15  # brightness of top faces


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


def _box(size: int, aspect: float) -> tuple[float, float, float, float, float, float]:
    """Centre x, top, bottom, left, right, width and height of a product of this aspect in its sprite."""
    height = size * SPRITE_FILL * min(1.0, MAX_WIDTH / (SPRITE_FILL * aspect))
    width = aspect * height
    cx = size / 2
    top = (size - height) / 2
    return cx, top, top + height, cx - width / 2, cx + width / 2, height


def _cylinder(size: int, cx: float, width: float) -> np.ndarray:
    xx, _ = pixel_grid(size)
    u = np.clip((xx - cx) / (width / 2), -1, 1)
    return (1 - CYLINDER_SHADE * u**2).astype(np.float32)


def _label_band(
    size: int, body: np.ndarray, spec: ProductSpec, y0: float, y1: float
) -> tuple[np.ndarray, float, float]:
    """The label: a horizontal band of the labelled part [y0, y1], cut to the body. Returns it, centre, height."""
    centre = y0 + spec.label_centre * (y1 - y0)
    half = spec.label_height * (y1 - y0) / 2
    band = to_float(rect(blank(size), 0, centre - half, size, centre + half))
    return band * body, centre, 2 * half


# --- the drawers: each returns the Parts of its sprite -------------------------------------------------


def _bottle(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    neck = 0.36 * w
    cap_end, neck_end, shoulder_end = top + 0.09 * h, top + 0.26 * h, top + 0.38 * h
    cap = rect(blank(size), cx - neck / 2 - 0.02 * w, top, cx + neck / 2 + 0.02 * w, cap_end)
    body = rect(blank(size), cx - neck / 2, cap_end - 1, cx + neck / 2, neck_end)
    poly(body, [(cx - neck / 2, neck_end - 1), (cx + neck / 2, neck_end - 1), (x1, shoulder_end), (x0, shoulder_end)])
    rounded_rect(body, x0, shoulder_end - 1, x1, bottom, 0.15 * w)
    body_f = to_float(np.maximum(body, cap))
    label, yc, lh = _label_band(size, to_float(body), spec, shoulder_end, bottom)
    return Parts(body_f, label, to_float(cap), _cylinder(size, cx, w), (cx, yc), min(lh, w))


def _box_shape(spec: ProductSpec, size: int) -> Parts:
    _, top, bottom, x0, x1, _ = _box(size, spec.aspect)
    d = 0.14 * (x1 - x0)
    front = to_float(rect(blank(size), x0, top + d, x1 - d, bottom))
    lid = to_float(poly(blank(size), [(x0, top + d), (x0 + d, top), (x1, top), (x1 - d, top + d)]))
    side = to_float(poly(blank(size), [(x1 - d, top + d), (x1, top), (x1, bottom - d), (x1 - d, bottom)]))
    body = np.maximum(np.maximum(front, lid), side)
    shade = 1 + (TOP_SHADE - 1) * lid + (SIDE_SHADE - 1) * side
    label, yc, lh = _label_band(size, front, spec, top + d, bottom)
    return Parts(body, label, lid, shade.astype(np.float32), ((x0 + x1 - d) / 2, yc), min(lh, x1 - d - x0))


def _can(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, _ = _box(size, spec.aspect)
    w = x1 - x0
    ry = 0.1 * w
    body = rect(blank(size), x0, top + ry, x1, bottom - ry)
    ellipse(body, (cx, bottom - ry), (w / 2, ry))
    lid = to_float(ellipse(blank(size), (cx, top + ry), (w / 2, ry)))
    body_f = np.maximum(to_float(body), lid)
    label, yc, lh = _label_band(size, to_float(body), spec, top + 2 * ry, bottom - ry)
    return Parts(body_f, label * (1 - lid), lid, _cylinder(size, cx, w), (cx, yc), min(lh, w))


def _fruit(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    stalk = 0.12 * h
    cy, ry = (top + stalk + bottom) / 2, (bottom - top - stalk) / 2
    body = to_float(ellipse(blank(size), (cx, cy), (w / 2, ry)))
    leaf = rect(blank(size), cx - 0.02 * w, top, cx + 0.02 * w, top + stalk + 0.05 * h)
    ellipse(leaf, (cx + 0.12 * w, top + 0.5 * stalk), (0.12 * w, 0.04 * w), -30.0)
    accent = to_float(leaf)
    sticker_c, sticker_r = (cx + 0.18 * w, cy - 0.05 * h), (0.15 * w, 0.11 * w)
    sticker = to_float(ellipse(blank(size), sticker_c, sticker_r))
    xx, yy = pixel_grid(size)
    r2 = ((xx - (cx - 0.2 * w)) / w) ** 2 + ((yy - (cy - 0.25 * ry)) / (2 * ry)) ** 2
    shade = np.clip(1.1 - 1.2 * r2, 1 - CYLINDER_SHADE, 1.1).astype(np.float32)
    return Parts(np.maximum(body, accent), sticker * body, accent, shade, sticker_c, 2 * sticker_r[1], True)


def _bag(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    crimp_end, bulge, taper = top + 0.09 * h, 0.04 * w, 0.05 * w
    mid = (crimp_end + bottom) / 2
    body = poly(
        blank(size),
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
    crimp = to_float(poly(blank(size), [*zigzag, (x1, crimp_end), (x0, crimp_end)]))
    label, yc, lh = _label_band(size, to_float(body), spec, crimp_end, bottom)
    shade = 1 - 0.5 * (1 - _cylinder(size, cx, w + 2 * bulge))
    return Parts(np.maximum(to_float(body), crimp), label, crimp, shade, (cx, yc), min(lh, w))


def _jar(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    lid_end = top + 0.15 * h
    lid = to_float(rounded_rect(blank(size), x0 + 0.06 * w, top, x1 - 0.06 * w, lid_end, 0.03 * w))
    body = to_float(rounded_rect(blank(size), x0, lid_end - 1, x1, bottom, 0.15 * w))
    label, yc, lh = _label_band(size, body, spec, lid_end, bottom)
    return Parts(np.maximum(body, lid), label, lid, _cylinder(size, cx, w), (cx, yc), min(lh, w))


def _carton(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    fin_end, roof_end = top + 0.05 * h, top + 0.2 * h
    fin = to_float(rect(blank(size), cx - 0.3 * w, top, cx + 0.3 * w, fin_end))
    roof = to_float(
        poly(blank(size), [(x0, roof_end), (cx - 0.3 * w, fin_end - 1), (cx + 0.3 * w, fin_end - 1), (x1, roof_end)])
    )
    front = to_float(rect(blank(size), x0, roof_end - 1, x1, bottom))
    xx, _ = pixel_grid(size)
    side = front * (xx > x1 - 0.28 * w)
    shade = 1 + (TOP_SHADE - 1) * roof + (SIDE_SHADE - 1) * side
    label, yc, lh = _label_band(size, front * (1 - side), spec, roof_end, bottom)
    body = np.maximum(np.maximum(front, roof), fin)
    return Parts(body, label, fin, shade.astype(np.float32), ((x0 + x1 - 0.28 * w) / 2, yc), min(lh, 0.72 * w))


def _tube(spec: ProductSpec, size: int) -> Parts:
    cx, top, bottom, x0, x1, h = _box(size, spec.aspect)
    w = x1 - x0
    crimp_end, cap_start = top + 0.06 * h, bottom - 0.1 * h
    crimp = to_float(rect(blank(size), x0 - 0.03 * w, top, x1 + 0.03 * w, crimp_end))
    cap = to_float(rect(blank(size), cx - 0.2 * w, cap_start - 1, cx + 0.2 * w, bottom))
    body = to_float(
        poly(
            blank(size),
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
