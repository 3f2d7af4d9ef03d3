"""What the shop holds: categories (shape family, texture, hue band) and each product's dealt look.

Also the seeding: every image draws from its own numpy Generator seeded from the shop's seed, a stream
and its ids, so images come out the same in any order and any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snapsearch.data.manifest import CATEGORY_SEP
from snapsearch.data.sources.synthetic.draw import RGB, Range, hsv, random_colour

# Bump when the drawing changes: the version is part of the cache hash, so old shops are not reused.
GENERATOR_VERSION = 1

# Independent random streams: each image seeds a Generator from (seed, stream, ids...).
STREAM_CATEGORY, STREAM_PRODUCT, STREAM_SPRITE, STREAM_CATALOG, STREAM_PHOTO = range(5)

HUE_SPREAD_FRACTION = 0.3  # product body hues vary by this fraction of the spacing between category hues
MIN_HUE_SPREAD = 0.03  # ...but at least this much (hue in turns), so products differ with many categories
BODY_SATURATION: Range = (0.5, 0.95)
BODY_VALUE: Range = (0.5, 0.95)
LABEL_HEIGHT: Range = (0.25, 0.45)  # fraction of the labelled part's height
LABEL_CENTRE: Range = (0.4, 0.6)
PATTERN_PERIODS: tuple[int, int] = (4, 10)  # pattern repeats across the sprite
LEAF_HUE: Range = (0.22, 0.38)  # fruit accents are leaves
LEAF_SATURATION: Range = (0.5, 0.9)
LEAF_VALUE: Range = (0.3, 0.7)
ACCENT_SATURATION: Range = (0.0, 0.9)
ACCENT_VALUE: Range = (0.15, 0.95)
MID_GREY = 0.5  # luminance above which print on a colour is dark, below which it is light
DARK_INK: Range = (0.05, 0.4)
LIGHT_INK: Range = (0.8, 1.0)


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


def stream_rng(seed: int, stream: int, *ids: int) -> np.random.Generator:
    return np.random.default_rng([seed, GENERATOR_VERSION, stream, *ids])


def slug(path: str) -> str:
    return path.lower().replace(CATEGORY_SEP, "-")


def _contrasting(colour: RGB, rng: np.random.Generator) -> RGB:
    """A colour that reads on ``colour``: dark on light, light on dark."""
    luminance = float(colour @ np.array([0.299, 0.587, 0.114], np.float32))
    val = DARK_INK if luminance > MID_GREY else LIGHT_INK
    return random_colour(rng, (0.0, 1.0), val)


def categories(n: int) -> list[Category]:
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


def product_specs(category: Category, count: int, seed: int) -> list[ProductSpec]:
    """Products of one category: patterns and glyphs dealt without repeats, so neighbours differ."""
    deal = stream_rng(seed, STREAM_CATEGORY, category.index)
    patterns = deal.permutation(len(PATTERNS))
    glyphs = deal.permutation(len(GLYPHS))
    specs = []
    for p in range(count):
        rng = stream_rng(seed, STREAM_PRODUCT, category.index, p)
        body = hsv(
            category.hue + rng.uniform(-1, 1) * category.hue_spread,
            rng.uniform(*BODY_SATURATION),
            rng.uniform(*BODY_VALUE),
        )
        label = random_colour(rng)
        if category.shape == "fruit":
            accent = hsv(rng.uniform(*LEAF_HUE), rng.uniform(*LEAF_SATURATION), rng.uniform(*LEAF_VALUE))
        else:
            accent = random_colour(rng, ACCENT_SATURATION, ACCENT_VALUE)
        specs.append(
            ProductSpec(
                product_id=f"{slug(category.path)}_{p:03d}",
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
