"""The preprocessing contract: one description of how pixels reach a model.

It is derived from the backbone's pretrained config (timm's ``resolve_model_data_config``) plus any
override of the offline weight source, written into the run directory and the export bundle, and read
back by evaluation and deployment, so that training, export and serving never disagree on it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


@dataclass(frozen=True)
class Preprocess:
    """How an RGB uint8 image becomes a model input tensor.

    Evaluation resizes the shorter side to ``resize_size`` then centre-crops ``input_size``;
    ``crop_pct = input_size / resize_size`` as in timm.
    """

    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation {self.interpolation!r} is not supported; use one of {sorted(_INTERPOLATIONS)}"
            )
        if self.resize_size < self.input_size:
            raise ValueError(f"resize_size {self.resize_size} must be >= input_size {self.input_size}")

    @property
    def cv2_interpolation(self) -> int:
        return _INTERPOLATIONS[self.interpolation]

    @classmethod
    def from_timm_config(
        cls, data_config: dict[str, Any], input_size: int | None = None, **overrides: Any
    ) -> Preprocess:
        """Build from ``timm.data.resolve_model_data_config`` output; ``None`` keeps the model's value."""
        size = int(input_size or data_config["input_size"][-1])
        crop_pct = float(data_config.get("crop_pct", 0.875))
        interpolation = data_config.get("interpolation", "bilinear")
        if interpolation not in _INTERPOLATIONS:
            interpolation = "bicubic" if "cubic" in interpolation else "bilinear"
        fields: dict[str, Any] = {
            "input_size": size,
            "resize_size": math.floor(size / crop_pct),
            "interpolation": interpolation,
            "mean": tuple(float(m) for m in data_config["mean"]),
            "std": tuple(float(s) for s in data_config["std"]),
        }
        fields.update({k: v for k, v in overrides.items() if v is not None})
        fields["mean"], fields["std"] = tuple(fields["mean"]), tuple(fields["std"])
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})

    def save(self, path: str | Path) -> None:
        from snapsearch.utils.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Preprocess:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # --- albumentations pieces -------------------------------------------------------------------
    def resize_and_crop(self) -> list[A.BasicTransform]:
        """Deterministic evaluation geometry: shorter side to ``resize_size``, centre crop."""
        return [
            A.SmallestMaxSize(max_size=self.resize_size, interpolation=self.cv2_interpolation),
            A.CenterCrop(height=self.input_size, width=self.input_size),
        ]

    def to_tensor(self) -> list[A.BasicTransform]:
        """Normalisation with the contract's mean/std (pixel values scaled to [0, 1] first)."""
        return [A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0), ToTensorV2()]

    def eval_transform(self) -> A.Compose:
        return A.Compose([*self.resize_and_crop(), *self.to_tensor()])
