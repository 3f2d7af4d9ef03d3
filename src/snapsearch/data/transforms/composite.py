"""Catalog images turned into shopper photos: the packshot cut out and composited into real store scenes.

A model trained on packshots beside photos learns that "clean packshot" identifies the products it has no
photo of: a shortcut, not their appearance. Procedural clutter does not hide the domain; real scenes do
better. :class:`SceneComposite` cuts the product out of its catalog image (the packshot's plain background,
:class:`~snapsearch.data.transforms.mask.PackshotMask`; the whole image as a card when there is none) and
places it, rotated, scaled and re-lit, with a drop shadow, sometimes as a pile of copies and partly
occluded by store content, into a crop of a training-split store photo of *another* product (hands and
shelves included). Perspective, blur, sensor noise and compression come from the pipeline's later steps.

Loose produce is photographed in bulk: a shopper's photo of apples shows dozens of small apples filling the
frame, the catalog shows one large apple. The *bulk display* mode renders that: many small copies of the
cut-out, each turned and lit a little differently, packed over the whole canvas with dark gaps between them
(upright in rows, now and then, as cartons stand on a shelf).

The scene photos are data, not configuration: the datamodule hands the training split's photos to the
pipeline builder (:class:`ScenePhotos`), so a validation or test photo can never become a background.
Which images are composited: those the dataset marks ``domain="catalog"``; a caller that passes no domain
(a preview of catalog images) gets packshots composited and anything else left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import albumentations as A
import cv2
import numpy as np

from snapsearch.data.transforms.mask import PackshotMask
from snapsearch.data.transforms.scenes import ScenePhotos

CATALOG_DOMAIN = "catalog"


def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The crop of ``image`` at ``box`` = (x0, y0, x1, y1) in fractions of its size."""
    h, w = image.shape[:2]
    x0, x1 = sorted((round(box[0] * w), round(box[2] * w)))
    y0, y1 = sorted((round(box[1] * h), round(box[3] * h)))
    return image[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]


class SceneComposite(A.ImageOnlyTransform):
    """Composite a catalog image's product into a crop of a store photo of another product.

    Args:
        white_threshold, min_background_fraction, max_local_contrast, fringe_threshold, fringe_width:
            how the packshot's background is found (:class:`PackshotMask`).
        canvas_side: the composite's shorter side in pixels (the pipeline's crop then sizes it for the model).
        canvas_aspect_range: width / height of the composite.
        scene_crop_range: the background is a crop of the scene photo covering this fraction of its sides.
        product_scale_range: the product's longer side as a fraction of the canvas's shorter side.
        centre_range: where the product's centre lands, as a fraction of the canvas's width and height.
        rotate_range: the product's in-plane rotation in degrees (a hand holds it at an angle).
        edge_softness: the cut-out's edge blur, as a fraction of the product's size.
        exposure_range: gain on the product (the store's light is not the studio's).
        tint_range: how far the product takes on the scene's colour cast, 0..1.
        light_gradient_range: amplitude of a linear brightness ramp across the product.
        shadow_probability: chance of a drop shadow behind the product.
        shadow_offset_range: the shadow's offset as a fraction of the product's size.
        shadow_strength_range: how much the shadow darkens the scene, 0..1.
        pile_probability: chance of extra copies of the product behind it (loose fruit, a shelf row).
        pile_count_range: how many extra copies, inclusive range.
        occlusion_probability: chance that store content (a crop of another scene photo) covers part of it.
        occlusion_size_range: the occluder's size as a fraction of the product's size.
        bulk_probability: chance of a bulk display instead of one product (and its pile): copies packed over
            the whole canvas.
        bulk_scale_range: a bulk copy's longer side as a fraction of the canvas's shorter side.
        bulk_spacing: the distance between neighbouring copies' centres as a fraction of a copy's size (below
            1, copies overlap).
        bulk_rotate_range: a bulk copy's rotation in degrees (loose fruit lies any way up).
        bulk_upright_probability: chance that a bulk display stands upright in rows (``rotate_range``), as
            cartons on a shelf.
        bulk_gain_jitter: each bulk copy's exposure varies by up to this fraction (one fruit darker than the
            next).
        scenes: the store photos to composite into (set by the pipeline builder from the training split).
        p: probability of applying the transform.
    """

    def __init__(
        self,
        white_threshold: int = 245,
        min_background_fraction: float = 0.2,
        max_local_contrast: int = 6,
        fringe_threshold: int = 200,
        fringe_width: float = 0.02,
        canvas_side: int = 320,
        canvas_aspect_range: tuple[float, float] = (0.75, 1.0),
        scene_crop_range: tuple[float, float] = (0.5, 1.0),
        product_scale_range: tuple[float, float] = (0.45, 0.95),
        centre_range: tuple[float, float] = (0.3, 0.7),
        rotate_range: tuple[float, float] = (-25.0, 25.0),
        edge_softness: float = 0.01,
        exposure_range: tuple[float, float] = (0.7, 1.15),
        tint_range: tuple[float, float] = (0.0, 0.4),
        light_gradient_range: tuple[float, float] = (0.0, 0.25),
        shadow_probability: float = 0.5,
        shadow_offset_range: tuple[float, float] = (0.02, 0.08),
        shadow_strength_range: tuple[float, float] = (0.2, 0.5),
        pile_probability: float = 0.25,
        pile_count_range: tuple[int, int] = (2, 6),
        occlusion_probability: float = 0.3,
        occlusion_size_range: tuple[float, float] = (0.2, 0.45),
        bulk_probability: float = 0.0,
        bulk_scale_range: tuple[float, float] = (0.15, 0.35),
        bulk_spacing: float = 0.75,
        bulk_rotate_range: tuple[float, float] = (-180.0, 180.0),
        bulk_upright_probability: float = 0.3,
        bulk_gain_jitter: float = 0.15,
        scenes: ScenePhotos | None = None,
        p: float = 0.8,
    ) -> None:
        super().__init__(p=p)
        self.mask = PackshotMask(
            white_threshold, min_background_fraction, max_local_contrast, fringe_threshold, fringe_width
        )
        self.canvas_side = canvas_side
        self.canvas_aspect_range = tuple(canvas_aspect_range)
        self.scene_crop_range = tuple(scene_crop_range)
        self.product_scale_range = tuple(product_scale_range)
        self.centre_range = tuple(centre_range)
        self.rotate_range = tuple(rotate_range)
        self.edge_softness = edge_softness
        self.exposure_range = tuple(exposure_range)
        self.tint_range = tuple(tint_range)
        self.light_gradient_range = tuple(light_gradient_range)
        self.shadow_probability = shadow_probability
        self.shadow_offset_range = tuple(shadow_offset_range)
        self.shadow_strength_range = tuple(shadow_strength_range)
        self.pile_probability = pile_probability
        self.pile_count_range = tuple(pile_count_range)
        self.occlusion_probability = occlusion_probability
        self.occlusion_size_range = tuple(occlusion_size_range)
        if bulk_spacing <= 0.0 or bulk_scale_range[0] <= 0.0:
            raise ValueError(f"bulk_spacing and bulk_scale_range must be positive: {bulk_spacing}, {bulk_scale_range}")
        self.bulk_probability = bulk_probability
        self.bulk_scale_range = tuple(bulk_scale_range)
        self.bulk_spacing = bulk_spacing
        self.bulk_rotate_range = tuple(bulk_rotate_range)
        self.bulk_upright_probability = bulk_upright_probability
        self.bulk_gain_jitter = bulk_gain_jitter
        self.scenes = scenes

    # --- sampling: resolution-free, so rendering is a pure function of the params -------------------

    def _placement(self, rng: np.random.Generator, scale: tuple[float, float]) -> dict[str, Any]:
        return {
            "scale": rng.uniform(*scale),
            "centre": rng.uniform(*self.centre_range, size=2),
            "angle": rng.uniform(*self.rotate_range),
        }

    def _bulk(self, rng: np.random.Generator, py: Any, aspect: float, portrait: bool) -> dict[str, Any]:
        """Copies on a jittered grid that covers the canvas (centres in fractions of its width and height),
        drawn in random order so that neighbours overlap either way."""
        scale = rng.uniform(*self.bulk_scale_range)
        step = scale * self.bulk_spacing  # in units of the canvas's shorter side
        step_x, step_y = (step, step * aspect) if portrait else (step * aspect, step)
        xs = np.arange(-0.5 * step_x, 1.0 + step_x, step_x) + rng.uniform(0.0, step_x)
        ys = np.arange(-0.5 * step_y, 1.0 + step_y, step_y) + rng.uniform(0.0, step_y)
        centres = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        centres += rng.uniform(-0.3, 0.3, size=centres.shape) * (step_x, step_y)
        angles = self.rotate_range if py.random() < self.bulk_upright_probability else self.bulk_rotate_range
        n = len(centres)
        return {
            "scale": scale,
            "centres": centres[rng.permutation(n)],
            "sizes": rng.uniform(0.85, 1.15, size=n),
            "angles": rng.uniform(*angles, size=n),
            "gains": 1.0 + rng.uniform(-self.bulk_gain_jitter, self.bulk_gain_jitter, size=n),
        }

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        rng, py = self.random_generator, self.py_random
        product = data.get("product")
        crop = rng.uniform(*self.scene_crop_range, size=2)
        origin = rng.uniform(0.0, 1.0, size=2) * (1.0 - crop)
        aspect, portrait = rng.uniform(*self.canvas_aspect_range), py.random() < 0.5
        bulk = self._bulk(rng, py, aspect, portrait) if py.random() < self.bulk_probability else None
        n_pile = py.randint(*self.pile_count_range) if py.random() < self.pile_probability else 0
        main = self._placement(rng, self.product_scale_range)
        pile = [self._placement(rng, (0.6 * main["scale"], main["scale"])) for _ in range(n_pile)]
        occluder = None
        if py.random() < self.occlusion_probability:
            side = py.randint(0, 3)  # it enters the product's box from this side (a hand, a shelf edge)
            occluder = {
                "scene": rng.uniform(),
                "box": np.concatenate([rng.uniform(0.0, 0.5, size=2), rng.uniform(0.5, 1.0, size=2)]),
                "size": rng.uniform(*self.occlusion_size_range, size=2),
                "side": side,
                "along": rng.uniform(0.2, 0.8),
                "ellipse": py.random() < 0.5,
            }
        shadow = None
        if py.random() < self.shadow_probability:
            shadow = {
                "offset": rng.uniform(*self.shadow_offset_range, size=2) * rng.choice([-1.0, 1.0], size=2),
                "strength": rng.uniform(*self.shadow_strength_range),
            }
        return {
            "composite": {
                "domain": data.get("domain"),
                "product": None if product is None else int(product),
                "scene": rng.uniform(),
                "scene_box": np.concatenate([origin, origin + crop]),
                "aspect": aspect,
                "portrait": portrait,
                "bulk": bulk,
                "main": main,
                "pile": pile,
                "exposure": rng.uniform(*self.exposure_range),
                "tint": rng.uniform(*self.tint_range),
                "gradient": rng.uniform(*self.light_gradient_range),
                "gradient_angle": rng.uniform(0.0, 2.0 * np.pi),
                "shadow": shadow,
                "occluder": occluder,
            }
        }

    # --- rendering -----------------------------------------------------------------------------------

    def cutout(self, img: np.ndarray, domain: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        """(the product's pixels, its alpha in 0..1) cropped to its box; ``None`` for what is not composited:
        an image of another domain, or one without a packshot background that is not marked catalog."""
        if domain is not None and domain != CATALOG_DOMAIN:
            return None
        background = self.mask(img)
        if background is None:
            if domain != CATALOG_DOMAIN:
                return None
            alpha = np.ones(img.shape[:2], dtype=np.float32)  # no plain background: the whole image as a card
        else:
            alpha = (~background).astype(np.float32)
        ys, xs = np.nonzero(alpha > 0)
        if len(ys) == 0:
            return None
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        return img[y0:y1, x0:x1], alpha[y0:y1, x0:x1]

    def _canvas(self, scene: np.ndarray | None, c: Mapping[str, Any]) -> np.ndarray:
        short, long_ = self.canvas_side, round(self.canvas_side / c["aspect"])
        width, height = (short, long_) if c["portrait"] else (long_, short)
        if scene is None:  # no other product's photo to borrow: a flat grey scene
            return np.full((height, width, 3), 128, dtype=np.uint8)
        return cv2.resize(_crop(scene, c["scene_box"]), (width, height), interpolation=cv2.INTER_AREA)

    def _relit(self, rgb: np.ndarray, canvas: np.ndarray, c: Mapping[str, Any]) -> np.ndarray:
        """The product under the scene's light: exposure, the scene's colour cast, a brightness ramp."""
        out = rgb.astype(np.float32)
        cast = canvas.reshape(-1, 3).mean(axis=0) + 1.0
        cast /= cast.mean()
        out *= c["exposure"] * ((1.0 - c["tint"]) + c["tint"] * cast)
        h, w = out.shape[:2]
        ramp = np.cos(c["gradient_angle"]) * np.linspace(-1, 1, w)[None, :]
        ramp = ramp + np.sin(c["gradient_angle"]) * np.linspace(-1, 1, h)[:, None]
        out *= (1.0 + c["gradient"] * ramp / 2.0)[..., None]
        return np.clip(out, 0.0, 255.0)

    def _warp(
        self, rgb: np.ndarray, alpha: np.ndarray, place: Mapping[str, Any], size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """The product rotated, scaled and moved onto a canvas of ``size`` (w, h); its size in pixels."""
        width, height = size
        h, w = alpha.shape
        target = place["scale"] * min(width, height)
        scale = target / max(h, w)
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), place["angle"], scale)
        matrix[:, 2] += (place["centre"][0] * width - w / 2.0, place["centre"][1] * height - h / 2.0)
        warp = {"dsize": (width, height), "flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_CONSTANT}
        soft = self.edge_softness * target
        if soft > 0:
            alpha = cv2.GaussianBlur(alpha, (0, 0), soft / max(scale, 1e-6)) * alpha  # soften inwards only
        return cv2.warpAffine(rgb, matrix, **warp), cv2.warpAffine(alpha, matrix, **warp), target

    def _bulk_display(self, out: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, c: Mapping[str, Any]) -> np.ndarray:
        """Paint the bulk copies into ``out`` (in place); their union alpha. Each copy is warped as a small
        patch, not over the whole canvas: a display holds up to a few hundred of them."""
        height, width = out.shape[:2]
        bulk, shadow = c["bulk"], c["shadow"]
        base = bulk["scale"] * min(width, height) / max(alpha.shape)
        size = (max(1, round(alpha.shape[1] * base)), max(1, round(alpha.shape[0] * base)))
        small_rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        small_alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        h, w = small_alpha.shape
        union = np.zeros((height, width), dtype=np.float32)
        copies = zip(bulk["centres"], bulk["sizes"], bulk["angles"], bulk["gains"], strict=True)
        for centre, k, angle, gain in copies:
            side = int(np.ceil(np.hypot(h, w) * k)) + 2
            matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, k)
            matrix[:, 2] += (side / 2.0 - w / 2.0, side / 2.0 - h / 2.0)
            patch = cv2.warpAffine(small_rgb, matrix, (side, side), flags=cv2.INTER_LINEAR) * gain
            matte = cv2.warpAffine(small_alpha, matrix, (side, side), flags=cv2.INTER_LINEAR)
            x0, y0 = round(centre[0] * width - side / 2.0), round(centre[1] * height - side / 2.0)
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            sub = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
            region = out[cy0:cy1, cx0:cx1]
            a = matte[sub][..., None]
            if shadow is not None:  # the dark gaps between packed copies
                gap = cv2.GaussianBlur(matte, (0, 0), max(0.5, 0.08 * side))[sub][..., None]
                region *= 1.0 - shadow["strength"] * gap
            region[:] = region * (1.0 - a) + patch[sub] * a
            union[cy0:cy1, cx0:cx1] = np.maximum(union[cy0:cy1, cx0:cx1], a[..., 0])
        return union

    def _occluder_mask(self, o: Mapping[str, Any], alpha: np.ndarray) -> np.ndarray:
        """Where store content covers the product: a box or ellipse entering its bounding box from one side."""
        ys, xs = np.nonzero(alpha > 0.5)
        mask = np.zeros_like(alpha)
        if len(ys) == 0:
            return mask
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        bw, bh = (x1 - x0) * o["size"][0], (y1 - y0) * o["size"][1]
        cx = [x0, x1, x0 + o["along"] * (x1 - x0), x0 + o["along"] * (x1 - x0)][o["side"]]
        cy = [y0 + o["along"] * (y1 - y0), y0 + o["along"] * (y1 - y0), y0, y1][o["side"]]
        centre, axes = (round(cx), round(cy)), (max(1, round(bw)), max(1, round(bh)))
        if o["ellipse"]:
            cv2.ellipse(mask, centre, axes, 0.0, 0, 360, 1.0, -1, cv2.LINE_AA)
        else:
            corner = (centre[0] - axes[0], centre[1] - axes[1])
            cv2.rectangle(mask, corner, (centre[0] + axes[0], centre[1] + axes[1]), 1.0, -1)
        return mask

    def apply(self, img: np.ndarray, composite: Mapping[str, Any], **params: Any) -> np.ndarray:
        cut = self.cutout(img, composite["domain"])
        if cut is None:
            return img
        rgb, alpha = cut
        scenes = self.scenes
        pick = scenes.choose(composite["scene"], composite["product"]) if scenes is not None else None
        canvas = self._canvas(None if pick is None else scenes.image(pick), composite)
        size = (canvas.shape[1], canvas.shape[0])
        out = canvas.astype(np.float32)
        lit = self._relit(rgb, canvas, composite)
        if composite["bulk"] is not None:
            matte = self._bulk_display(out, lit, alpha, composite)
        else:
            for place in [*composite["pile"], composite["main"]]:  # the pile behind, the product in front
                product, matte, extent = self._warp(lit, alpha, place, size)
                shadow = composite["shadow"]
                if shadow is not None:
                    dx, dy = shadow["offset"] * extent
                    moved = cv2.warpAffine(matte, np.float32([[1, 0, dx], [0, 1, dy]]), size)
                    moved = cv2.GaussianBlur(moved, (0, 0), max(0.5, 0.04 * extent))
                    out *= (1.0 - shadow["strength"] * moved)[..., None]
                out = out * (1.0 - matte[..., None]) + product * matte[..., None]
        o = composite["occluder"]
        if o is not None and scenes is not None:
            other = scenes.choose(o["scene"], composite["product"])
            source = None if other is None else scenes.image(other)
            if source is not None:
                cover = cv2.resize(_crop(source, o["box"]), size, interpolation=cv2.INTER_AREA).astype(np.float32)
                mask = self._occluder_mask(o, matte)[..., None]
                out = out * (1.0 - mask) + cover * mask
        return np.clip(out, 0.0, 255.0).astype(np.uint8)
