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

The custom steps live in :mod:`snapsearch.data.transforms`. One of them, ``SceneComposite``, needs data
rather than configuration (store photos to composite catalog images into): the builders take it as
``scenes``, and leave the step out, with a warning, when a caller has none to give.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import albumentations as A
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from snapsearch.data.transforms import SceneComposite, ScenePhotos

if TYPE_CHECKING:
    from snapsearch.data.preprocess import Preprocess

log = logging.getLogger(__name__)

CROP_STEP = "crop"
_SEED_BITS = 32


class AugmentConfigError(ValueError):
    """An ``augment`` config that cannot be turned into a pipeline; the message says how to fix it."""


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
    scenes: ScenePhotos | None,
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
        if isinstance(step, SceneComposite):
            if scenes is None or len(scenes) == 0:
                log.warning(
                    "augment step %r left out: it needs store photos to composite into (augment.scene_photos, "
                    "given by the datamodule from the training photos)",
                    name,
                )
                continue
            step.scenes = scenes
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
    scenes: ScenePhotos | None = None,
) -> A.Compose:
    """The uint8 -> uint8 augmentation pipeline (no normalisation) of an ``augment`` config node.

    Args:
        augment_cfg: ``cfg.augment``: ``order``, ``transforms`` and, when ``order`` has ``crop``, ``crop``.
        input_size: the model's square input size (from the preprocessing contract).
        eval_geometry: the contract's deterministic resize-and-crop; it ends a pipeline without ``crop``.
        seed: seed for every step's RNG; ``None`` draws one from Python's ``random``.
        scenes: store photos for the ``SceneComposite`` step (without them the step is left out).

    Raises:
        AugmentConfigError: a name in ``order`` has no transform entry, or ``crop`` has no parameters.
    """
    return A.Compose(_augment_steps(augment_cfg, input_size, eval_geometry, scenes), seed=_resolve_seed(seed))


def build_train_transform(
    augment_cfg: DictConfig | Mapping[str, Any],
    contract: Preprocess,
    seed: int | None = None,
    scenes: ScenePhotos | None = None,
) -> A.Compose:
    """Augmentations followed by the contract's normalisation: uint8 HWC in, float CHW tensor out."""
    steps = _augment_steps(augment_cfg, contract.input_size, contract.resize_and_crop(), scenes)
    return A.Compose([*steps, *contract.to_tensor()], seed=_resolve_seed(seed))
