"""What a user photo shows behind the product: a gradient, a shop shelf, a cluttered counter or a table.

Each background is ``f(rng, size) -> float RGB image``; ``BACKGROUNDS`` lists them for the photo to pick from.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from snapsearch.data.sources.synthetic.draw import Range, cv_colour, random_colour, unit_grid

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


def _bg_gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    xx, yy = unit_grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    t = ((math.cos(angle) * xx + math.sin(angle) * yy) / 2 + 0.5)[..., None]
    return (1 - t) * random_colour(rng) + t * random_colour(rng)


def _bg_shelf(rng: np.random.Generator, size: int) -> np.ndarray:
    """A shop shelf: rows of other products standing on boards."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = cv_colour(random_colour(rng, WALL_SATURATION, WALL_VALUE))
    rows = int(rng.integers(*SHELF_ROWS, endpoint=True))
    board = max(1, round(SHELF_BOARD * size))
    board_colour = cv_colour(random_colour(rng, BOARD_SATURATION, BOARD_VALUE))
    for r in range(rows):
        base = round((r + 1) * size / rows + rng.uniform(-0.05, 0.05) * size)
        x = float(rng.uniform(-0.1, 0.05) * size)
        while x < size:
            w = rng.uniform(*SHELF_ITEM_WIDTH) * size
            h = rng.uniform(*SHELF_ITEM_HEIGHT) * size / rows
            cv2.rectangle(img, (round(x), round(base - h)), (round(x + w), base), cv_colour(random_colour(rng)), -1)
            band = round(base - h * rng.uniform(*SHELF_LABEL_POSITION))
            cv2.rectangle(
                img,
                (round(x), band),
                (round(x + w), band + max(1, round(h * 0.2))),
                cv_colour(random_colour(rng)),
                -1,
            )
            x += w + rng.uniform(*SHELF_GAP) * size
        cv2.rectangle(img, (0, base), (size, base + board), board_colour, -1)
    return img.astype(np.float32) / 255


def _bg_clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered counter: random coloured shapes on a plain surface."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = cv_colour(random_colour(rng))
    for _ in range(int(rng.integers(*CLUTTER_SHAPES, endpoint=True))):
        colour = cv_colour(random_colour(rng))
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
    xx, yy = unit_grid(size)
    freq = rng.uniform(*GRAIN_FREQUENCY)
    wobble = rng.uniform(0.5, 3.0) * np.sin(xx * rng.uniform(1, 4) + rng.uniform(0, 2 * math.pi))
    grain = np.sin(yy * freq + wobble)[..., None]
    base = random_colour(rng, TABLE_SATURATION, TABLE_VALUE)
    return base * (1 + GRAIN_CONTRAST * grain)


BACKGROUNDS: tuple[Callable[[np.random.Generator, int], np.ndarray], ...] = (
    _bg_gradient,
    _bg_shelf,
    _bg_clutter,
    _bg_table,
)
