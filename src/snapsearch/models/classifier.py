"""The category classifier as a plain ``nn.Module``: what gets exported and loaded without Lightning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from snapsearch.models.backbone import create_backbone
from torch import nn

from snapsearch.data.preprocess import Preprocess
from snapsearch.utils.atomic import atomic_save, atomic_write_text

WEIGHTS_FILE = "model.pt"
META_FILE = "model.json"


class CategoryClassifier(nn.Module):
    """A timm network with a category head; ``temperature`` (a buffer, saved with the weights) calibrates it."""

    def __init__(self, net: nn.Module, categories: list[str]) -> None:
        super().__init__()
        self.net = net
        self.categories = list(categories)
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw logits (training and losses)."""
        return self.net(x)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated category probabilities (routing)."""
        return torch.softmax(self(x) / self.temperature, dim=-1)

    def save(self, folder: str | Path, *, backbone: dict[str, Any], preprocess: Preprocess) -> None:
        """Weights (state dict, loadable with ``weights_only=True``) plus the description to rebuild them."""
        folder = Path(folder)
        atomic_save(folder / WEIGHTS_FILE, lambda p: torch.save(self.state_dict(), p))
        meta = {
            "backbone": backbone,
            "categories": self.categories,
            "temperature": float(self.temperature),
            "preprocess": preprocess.to_dict(),
        }
        atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> tuple[CategoryClassifier, Preprocess]:
        folder = Path(folder)
        if not (folder / META_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} holds no saved classifier ({META_FILE} + {WEIGHTS_FILE}); "
                "pass the stage folder of a finished train run"
            )
        meta = json.loads((folder / META_FILE).read_text())
        spec = {**meta["backbone"], "pretrained": False, "weights": None, "checkpoint": None}
        net, _ = create_backbone(**spec, num_classes=len(meta["categories"]))
        model = cls(net, meta["categories"])
        model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return model.eval(), Preprocess.from_dict(meta["preprocess"])
