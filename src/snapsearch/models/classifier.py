"""The category classifier as a plain ``nn.Module``: what gets exported and loaded without Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from snapsearch.data.preprocess import Preprocess
from snapsearch.models.artifact import read_model, save_model
from snapsearch.models.backbone import build_architecture


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

    def probabilities_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated probabilities and the trunk's L2-normalised pooled features (what the head sees), from
        one pass: the features tell a shop photo from a catalog image or a screenshot (query types)."""
        pooled = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        probs = torch.softmax(self.net.get_classifier()(pooled) / self.temperature, dim=-1)
        return probs, F.normalize(pooled, dim=-1)

    def save(self, folder: str | Path, *, backbone: dict[str, Any], preprocess: Preprocess) -> None:
        meta = {
            "kind": "classifier",
            "backbone": backbone,
            "categories": self.categories,
            "temperature": float(self.temperature),
            "preprocess": preprocess.to_dict(),
        }
        save_model(folder, self, meta)

    @classmethod
    def load(cls, folder: str | Path) -> tuple[CategoryClassifier, Preprocess]:
        state, meta = read_model(folder, "classifier")
        spec = meta["backbone"]
        net = build_architecture(spec["name"], num_classes=len(meta["categories"]), drop_rate=spec["drop_rate"])
        model = cls(net, meta["categories"])
        model.load_state_dict(state)
        return model.eval(), Preprocess.from_dict(meta["preprocess"])
