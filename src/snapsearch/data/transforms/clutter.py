"""Procedural clutter behind a catalog image: a first step from "product on white" towards a store scene.

Kept beside :mod:`~snapsearch.data.transforms.composite` (real store photos as backgrounds) for catalogs
without shopper photos to borrow scenes from, and as the fallback when compositing is off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from snapsearch.data.transforms.mask import PackshotMask

MAX_UINT8 = 255.0


def _random_colours(
    rng: np.random.Generator,
    n: int,
    saturation_range: Sequence[float],
    value_range: Sequence[float],
) -> np.ndarray:
    """``n`` RGB colours (float32, 0..255) with any hue and bounded saturation and brightness."""
    hsv = np.empty((n, 1, 3), dtype=np.float32)
    hsv[:, 0, 0] = rng.uniform(0.0, 360.0, size=n)  # OpenCV's float HSV takes hue in degrees
    hsv[:, 0, 1] = rng.uniform(*saturation_range, size=n)
    hsv[:, 0, 2] = rng.uniform(*value_range, size=n)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[:, 0, :] * MAX_UINT8


class BackgroundClutter(A.ImageOnlyTransform):
    """Replace the near-white background of a catalog image with a procedural cluttered scene.

    Catalog images show products cut out on white, user photos show them on shelves, in fridges and in
    hands; a model that has only seen white surroundings learns "white background = catalog". The
    background is the near-white region connected to the image border (white print inside the product
    is kept). Images whose background fraction is below ``min_background_fraction`` (photos, full-bleed
    packshots) pass through unchanged.

    The product can also be zoomed out (``product_scale_range``): only images found to be on white
    are shrunk, since on a photo the uncovered area would have nothing credible to show.

    The scene: a two-colour gradient, optional shelf-like horizontal bands, random ellipses and rotated
    rectangles (other products), a low-frequency brightness texture, and a defocus blur. It is rendered
    at no more than ``render_max_side`` pixels (it is blurred anyway) and resized to the image.

    Args:
        white_threshold, min_background_fraction, max_local_contrast, fringe_threshold, fringe_width:
            how the background is found (:class:`~snapsearch.data.transforms.mask.PackshotMask`).
        num_shapes_range: how many clutter shapes, inclusive range.
        ellipse_probability: probability that a shape is an ellipse rather than a rotated rectangle.
        shape_size_range: shape side as a fraction of the image's shorter side.
        shelf_probability: probability that the scene has shelf bands.
        num_shelves_range: how many shelf bands, inclusive range.
        shelf_thickness_range: band thickness as a fraction of the image height.
        saturation_range: colour saturation of the scene, 0..1.
        value_range: colour brightness of the scene, 0..1.
        texture_strength_range: amplitude of the multiplicative brightness texture.
        texture_cells: the texture's coarse grid size (larger = finer texture).
        blur_sigma_range: defocus blur sigma as a fraction of the shorter side.
        edge_softness: sigma of the matte's edge, as a fraction of the shorter side (anti-aliasing).
        render_max_side: the scene's rendering resolution cap, in pixels.
        product_scale_range: the catalog image is shrunk by a factor from this range and placed at a
            random position, so the product can fill less of the frame, as in a photo taken from arm's
            length (catalog packshots fill most of theirs). ``[1, 1]`` keeps the framing.
        p: probability of applying the transform.
    """

    def __init__(
        self,
        white_threshold: int = 245,
        min_background_fraction: float = 0.2,
        max_local_contrast: int = 6,
        fringe_threshold: int = 200,
        fringe_width: float = 0.02,
        num_shapes_range: tuple[int, int] = (6, 24),
        ellipse_probability: float = 0.3,
        shape_size_range: tuple[float, float] = (0.06, 0.4),
        shelf_probability: float = 0.5,
        num_shelves_range: tuple[int, int] = (1, 4),
        shelf_thickness_range: tuple[float, float] = (0.02, 0.08),
        saturation_range: tuple[float, float] = (0.05, 0.55),
        value_range: tuple[float, float] = (0.15, 0.9),
        texture_strength_range: tuple[float, float] = (0.0, 0.25),
        texture_cells: int = 8,
        blur_sigma_range: tuple[float, float] = (0.0, 0.015),
        edge_softness: float = 0.004,
        render_max_side: int = 256,
        product_scale_range: tuple[float, float] = (1.0, 1.0),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.mask = PackshotMask(
            white_threshold, min_background_fraction, max_local_contrast, fringe_threshold, fringe_width
        )
        self.num_shapes_range = tuple(num_shapes_range)
        self.ellipse_probability = ellipse_probability
        self.shape_size_range = tuple(shape_size_range)
        self.shelf_probability = shelf_probability
        self.num_shelves_range = tuple(num_shelves_range)
        self.shelf_thickness_range = tuple(shelf_thickness_range)
        self.saturation_range = tuple(saturation_range)
        self.value_range = tuple(value_range)
        self.texture_strength_range = tuple(texture_strength_range)
        self.texture_cells = texture_cells
        self.blur_sigma_range = tuple(blur_sigma_range)
        self.edge_softness = edge_softness
        self.render_max_side = render_max_side
        self.product_scale_range = tuple(product_scale_range)

    def background_mask(self, img: np.ndarray) -> np.ndarray | None:
        """Boolean mask of the border-connected near-white background, or ``None`` when too small."""
        return self.mask(img)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Sample the scene in resolution-free units, so rendering is a pure function of these params."""
        rng, py = self.random_generator, self.py_random
        n_shapes = py.randint(*self.num_shapes_range)
        n_shelves = py.randint(*self.num_shelves_range) if py.random() < self.shelf_probability else 0
        n_colours = 2 + n_shelves + n_shapes
        return {
            "scene": {
                "colours": _random_colours(rng, n_colours, self.saturation_range, self.value_range),
                "gradient_angle": rng.uniform(0.0, 2.0 * np.pi),
                "shelf_y": rng.uniform(0.0, 1.0, size=n_shelves),
                "shelf_thickness": rng.uniform(*self.shelf_thickness_range, size=n_shelves),
                "shape_is_ellipse": rng.random(n_shapes) < self.ellipse_probability,
                "shape_centre": rng.uniform(0.0, 1.0, size=(n_shapes, 2)),
                "shape_size": rng.uniform(*self.shape_size_range, size=(n_shapes, 2)),
                "shape_angle": rng.uniform(0.0, 180.0, size=n_shapes),
                "texture": rng.standard_normal((self.texture_cells, self.texture_cells)).astype(np.float32),
                "texture_strength": rng.uniform(*self.texture_strength_range),
                "blur_sigma": rng.uniform(*self.blur_sigma_range),
                "product_scale": rng.uniform(*self.product_scale_range),
                "product_offset": rng.uniform(0.0, 1.0, size=2),
            }
        }

    def render_scene(self, scene: Mapping[str, Any], height: int, width: int) -> np.ndarray:
        """Draw the sampled scene at ``height`` x ``width`` (uint8 RGB)."""
        scale = min(1.0, self.render_max_side / max(height, width))
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        short = min(h, w)
        colours = scene["colours"]
        n_shelves = len(scene["shelf_y"])

        # Gradient between the first two colours along a random direction.
        angle = scene["gradient_angle"]
        proj_x = np.arange(w, dtype=np.float32) * np.cos(angle)
        proj_y = np.arange(h, dtype=np.float32) * np.sin(angle)
        t = proj_y[:, None] + proj_x[None, :]
        t -= t.min()
        t /= max(float(t.max()), np.finfo(np.float32).eps)
        canvas = colours[0] + t[..., None] * (colours[1] - colours[0])

        for i in range(n_shelves):
            y0 = round(scene["shelf_y"][i] * h)
            y1 = y0 + max(1, round(scene["shelf_thickness"][i] * h))
            canvas[y0:y1] = colours[2 + i]

        for j, is_ellipse in enumerate(scene["shape_is_ellipse"]):
            colour = tuple(float(c) for c in colours[2 + n_shelves + j])
            cx, cy = scene["shape_centre"][j] * (w, h)
            sx, sy = scene["shape_size"][j] * short
            angle_deg = float(scene["shape_angle"][j])
            if is_ellipse:
                axes = (max(1, round(sx / 2)), max(1, round(sy / 2)))
                cv2.ellipse(canvas, (round(cx), round(cy)), axes, angle_deg, 0, 360, colour, -1, cv2.LINE_AA)
            else:
                corners = cv2.boxPoints(((cx, cy), (sx, sy), angle_deg))
                cv2.fillPoly(canvas, [np.round(corners).astype(np.int32)], colour, cv2.LINE_AA)

        texture = cv2.resize(scene["texture"], (w, h), interpolation=cv2.INTER_CUBIC)
        canvas *= (1.0 + scene["texture_strength"] * texture)[..., None]
        sigma = scene["blur_sigma"] * short
        if sigma > 0:
            canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
        canvas = np.clip(canvas, 0.0, MAX_UINT8).astype(np.uint8)
        if (h, w) != (height, width):
            canvas = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_LINEAR)
        return canvas

    def _zoom_out(
        self, img: np.ndarray, background: np.ndarray, scale: float, offset: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shrink the catalog image onto a same-size canvas; the uncovered area becomes background."""
        height, width = img.shape[:2]
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        left = round(offset[0] * (width - small_w))
        top = round(offset[1] * (height - small_h))
        canvas = np.empty_like(img)
        canvas[:] = np.iinfo(img.dtype).max
        canvas[top : top + small_h, left : left + small_w] = cv2.resize(
            img, (small_w, small_h), interpolation=cv2.INTER_AREA
        )
        full_background = np.ones_like(background)
        full_background[top : top + small_h, left : left + small_w] = (
            cv2.resize(background.astype(np.uint8), (small_w, small_h), interpolation=cv2.INTER_NEAREST) > 0
        )
        return canvas, full_background

    def apply(self, img: np.ndarray, scene: Mapping[str, Any], **params: Any) -> np.ndarray:
        background = self.background_mask(img)
        if background is None:
            return img
        if scene["product_scale"] < 1.0:
            img, background = self._zoom_out(img, background, scene["product_scale"], scene["product_offset"])
        height, width = img.shape[:2]
        alpha = background.astype(np.float32)
        sigma = self.edge_softness * min(height, width)
        if sigma > 0:
            # Soften only towards the product: the background is fully replaced (no white halo).
            alpha = np.maximum(alpha, cv2.GaussianBlur(alpha, (0, 0), sigma))
        clutter = self.render_scene(scene, height, width)
        return cv2.blendLinear(clutter, img, alpha, 1.0 - alpha)
