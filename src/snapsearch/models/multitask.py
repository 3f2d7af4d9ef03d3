"""One trunk, two heads: the cascade's gate and its embedder in a single network, so a query costs one forward
pass plus two small heads instead of two networks (the separate models nearly double the per-query cost)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snapsearch.data.preprocess import Preprocess
from snapsearch.models.artifact import read_model, save_model
from snapsearch.models.backbone import build_architecture, create_backbone
from snapsearch.models.embedder import GeM

KIND = "multitask"


class MultiTaskNet(nn.Module):
    """A timm trunk's feature map feeds a category head (the trunk's own pooling, dropout, linear; calibrated by
    the ``temperature`` buffer) and an embedding head (GeM, projection, L2 norm).

    ``forward`` is what deployment runs: ``(calibrated probabilities, embedding)``; training uses :meth:`heads`.
    """

    def __init__(
        self, trunk: nn.Module, categories: list[str], embedding_dim: int, gem_p: float, drop_rate: float
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.categories = list(categories)
        width = int(trunk.num_features)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(width, len(self.categories)))
        self.pool = GeM(gem_p)
        self.proj = nn.Linear(width, embedding_dim)
        self.embedding_dim = int(embedding_dim)
        self.drop_rate = float(drop_rate)
        self.register_buffer("temperature", torch.ones(()))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw category logits and the L2-normalised embedding, from one pass of the trunk."""
        logits, embedding, _ = self.training_outputs(x)
        return logits, embedding

    def training_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw category logits, the embedding and the pooled trunk features the category head reads (what a
        domain critic inspects), from one pass."""
        feats = self.trunk.forward_features(x)
        pooled = self.trunk.forward_head(feats, pre_logits=True)
        return self.classifier(pooled), self._embedding(feats), pooled

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding head alone (what global search needs; the category head is skipped)."""
        return self._embedding(self.trunk.forward_features(x))

    def _embedding(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.pool(feats)), dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.heads(x)
        return torch.softmax(logits / self.temperature, dim=-1), embedding

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Calibrated probabilities, the embedding, and the trunk's L2-normalised pooled features (what the
        category head sees; the query-type head reads them), from one pass."""
        feats = self.trunk.forward_features(x)
        pooled = self.trunk.forward_head(feats, pre_logits=True)
        probs = torch.softmax(self.classifier(pooled) / self.temperature, dim=-1)
        return probs, self._embedding(feats), F.normalize(pooled, dim=-1)

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything but the trunk: what learns at the base rate (and alone while the trunk is frozen)."""
        return [p for n, p in self.named_parameters() if not n.startswith("trunk.")]

    @classmethod
    def build(
        cls, backbone: dict[str, Any], categories: list[str], embedding_dim: int, gem_p: float
    ) -> tuple[MultiTaskNet, Preprocess]:
        # the dropout belongs to the category head alone: the trunk's own (before its pooling output) is off
        trunk, preprocess = create_backbone(**{**backbone, "drop_rate": 0.0}, num_classes=0)
        return cls(trunk, categories, embedding_dim, gem_p, backbone["drop_rate"]), preprocess

    def save(self, folder: str | Path, *, backbone: dict[str, Any], preprocess: Preprocess) -> None:
        meta = {
            "kind": KIND,
            "backbone": backbone,
            "categories": self.categories,
            "temperature": float(self.temperature),
            "embedding_dim": self.embedding_dim,
            "gem_p": float(self.pool.p.detach()),
            "preprocess": preprocess.to_dict(),
        }
        save_model(folder, self, meta)

    @classmethod
    def load(cls, folder: str | Path) -> tuple[MultiTaskNet, Preprocess]:
        state, meta = read_model(folder, KIND)
        spec = meta["backbone"]
        trunk = build_architecture(spec["name"], num_classes=0)
        model = cls(trunk, meta["categories"], meta["embedding_dim"], meta["gem_p"], spec["drop_rate"])
        model.load_state_dict(state)
        return model.eval(), Preprocess.from_dict(meta["preprocess"])
