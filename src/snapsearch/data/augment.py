"""Augmentations that push clean catalog images towards the look of user photos.

A pipeline is configured as named entries (``augment.transforms``) plus an ``order`` list, so every
transform is overridable from the command line (``augment.transforms.jpeg.p=0.8``) and removable by
dropping it from ``order``. ``crop`` is a reserved step the builder makes itself, because the output
size belongs to the model's preprocessing contract, never to the augmentation config. A pipeline with no
``crop`` step ends with the contract's deterministic evaluation geometry, so its output size still
matches; ``order: []`` is therefore exactly the evaluation transform (``conf/augment/none.yaml``).

Randomness comes from albumentations' per-transform generators (``self.random_generator`` and
``self.py_random`` in albumentations 2.x), which ``A.Compose(seed=...)`` sets for every step. When no
seed is given, the builders draw one from Python's global ``random``, so ``random.seed`` /
``pytorch_lightning.seed_everything`` make a run reproducible. Training goes further: each sample's draw
carries its own seed (:mod:`snapsearch.data.draws`), set on the pipeline before that sample is augmented,
so augmentations do not depend on workers and replay exactly when a run resumes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import albumentations as A
import cv2
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from snapsearch.data.preprocess import Preprocess

CROP_STEP = "crop"
_SEED_BITS = 32
_MAX_UINT8 = 255.0


class AugmentConfigError(ValueError):
    """An ``augment`` config that cannot be turned into a pipeline; the message says how to fix it."""


# --- custom transforms ---------------------------------------------------------------------------


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
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[:, 0, :] * _MAX_UINT8


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
        white_threshold: a pixel is near-white when all its channels are at least this value.
        min_background_fraction: skip images whose border-connected white area is a smaller fraction.
        max_local_contrast: background pixels are flat: the darkest channel varies by at most this
            many grey levels over their 3x3 neighbourhood (edges of white products stop the flood).
        fringe_threshold: light pixels (all channels at least this) within ``fringe_width`` of the
            background also count as background: the anti-aliased, JPEG-smeared rim of a cut-out
            would otherwise leave a pale outline around the product.
        fringe_width: how far the background grows into light rim pixels, as a fraction of the
            shorter side.
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
        self.white_threshold = white_threshold
        self.min_background_fraction = min_background_fraction
        self.max_local_contrast = max_local_contrast
        self.fringe_threshold = fringe_threshold
        self.fringe_width = fringe_width
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
        """Boolean mask of the border-connected near-white background, or ``None`` when too small.

        The background is flooded from the border through near-white *and flat* pixels: the faint
        outline of a white carton (a few grey levels darker than the studio white) stops the flood,
        where a colour threshold alone would leak into the carton.
        """
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
        canvas = np.clip(canvas, 0.0, _MAX_UINT8).astype(np.uint8)
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


# --- builders ------------------------------------------------------------------------------------


def _as_config(augment_cfg: DictConfig | Mapping[str, Any]) -> DictConfig:
    return augment_cfg if isinstance(augment_cfg, DictConfig) else OmegaConf.create(dict(augment_cfg))


def _crop_step(cfg: DictConfig, input_size: int) -> A.BasicTransform:
    crop = cfg.get("crop")
    if crop is None:
        raise AugmentConfigError(
            "augment.order contains 'crop' but augment.crop is not set; add "
            "augment.crop={scale: [lo, hi], ratio: [lo, hi]} or remove 'crop' from augment.order"
        )
    return A.RandomResizedCrop(
        size=(input_size, input_size),
        scale=tuple(crop.scale),
        ratio=tuple(crop.ratio),
    )


def _augment_steps(
    augment_cfg: DictConfig | Mapping[str, Any],
    input_size: int,
    eval_geometry: Sequence[A.BasicTransform],
) -> list[A.BasicTransform]:
    """The uint8 -> uint8 steps in order; the contract's geometry ends any pipeline without a crop."""
    cfg = _as_config(augment_cfg)
    order = list(cfg.get("order") or [])
    entries = cfg.get("transforms") or {}
    valid = [CROP_STEP, *(name for name, entry in entries.items() if entry is not None)]
    unknown = [name for name in order if name not in valid]
    if unknown:
        raise AugmentConfigError(
            f"augment.order names {unknown} with no entry in augment.transforms; valid names are "
            f"{valid}. Define the entry under augment.transforms or remove the name from augment.order."
        )
    steps: list[A.BasicTransform] = []
    for name in order:
        if name == CROP_STEP:
            steps.append(_crop_step(cfg, input_size))
            continue
        step = instantiate(entries[name], _convert_="all")
        if not isinstance(step, A.BasicTransform | A.BaseCompose):
            raise AugmentConfigError(
                f"augment.transforms.{name} made a {type(step).__name__}, not an albumentations transform"
            )
        steps.append(step)
    if CROP_STEP not in order:
        steps.extend(eval_geometry)
    return steps


def _resolve_seed(seed: int | None) -> int:
    """An explicit seed, or one drawn from Python's global RNG so ``random.seed`` governs the run."""
    return random.getrandbits(_SEED_BITS) if seed is None else int(seed)


def build_augment(
    augment_cfg: DictConfig | Mapping[str, Any],
    input_size: int,
    eval_geometry: Sequence[A.BasicTransform],
    seed: int | None = None,
) -> A.Compose:
    """The uint8 -> uint8 augmentation pipeline (no normalisation) of an ``augment`` config node.

    Args:
        augment_cfg: ``cfg.augment``: ``order``, ``transforms`` and, when ``order`` has ``crop``, ``crop``.
        input_size: the model's square input size (from the preprocessing contract).
        eval_geometry: the contract's deterministic resize-and-crop; it ends a pipeline without ``crop``.
        seed: seed for every step's RNG; ``None`` draws one from Python's ``random``.

    Raises:
        AugmentConfigError: a name in ``order`` has no transform entry, or ``crop`` has no parameters.
    """
    return A.Compose(_augment_steps(augment_cfg, input_size, eval_geometry), seed=_resolve_seed(seed))


def build_train_transform(
    augment_cfg: DictConfig | Mapping[str, Any],
    contract: Preprocess,
    seed: int | None = None,
) -> A.Compose:
    """Augmentations followed by the contract's normalisation: uint8 HWC in, float CHW tensor out."""
    steps = _augment_steps(augment_cfg, contract.input_size, contract.resize_and_crop())
    return A.Compose([*steps, *contract.to_tensor()], seed=_resolve_seed(seed))
