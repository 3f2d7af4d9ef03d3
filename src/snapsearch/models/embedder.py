"""The product embedder as a plain ``nn.Module``: timm trunk, GeM pooling, projection, L2 norm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snapsearch.data.preprocess import Preprocess
from snapsearch.models.artifact import read_model, save_model
from snapsearch.models.backbone import build_architecture, create_backbone

GEM_EPS = 1e-6


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al., 2018) with a learnable exponent; p = 1 is average
    pooling. Neither timm nor pytorch-metric-learning ships it."""

    def __init__(self, p: float, learnable: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=GEM_EPS).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


class ProductEmbedder(nn.Module):
    """Maps an image to an L2-normalised embedding. ``embedding_dim=None`` keeps the trunk's pooled features
    (the generic ImageNet embedder, no projection)."""

    def __init__(self, trunk: nn.Module, embedding_dim: int | None, gem_p: float, learn_gem: bool = True) -> None:
        super().__init__()
        self.trunk = trunk
        self.pool = GeM(gem_p, learnable=learn_gem)
        width = int(trunk.num_features)
        self.proj: nn.Module = nn.Linear(width, embedding_dim) if embedding_dim else nn.Identity()
        self.embedding_dim = int(embedding_dim or width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.trunk.forward_features(x)
        # CNN feature maps get GeM; token models (ViT) keep the trunk's own pooling.
        pooled = self.pool(feats) if feats.ndim == 4 else self.trunk.forward_head(feats, pre_logits=True)
        return F.normalize(self.proj(pooled), dim=-1)

    @classmethod
    def build(
        cls, backbone: dict[str, Any], embedding_dim: int | None, gem_p: float
    ) -> tuple[ProductEmbedder, Preprocess]:
        trunk, preprocess = create_backbone(**backbone, num_classes=0)
        return cls(trunk, embedding_dim, gem_p, learn_gem=embedding_dim is not None), preprocess

    def save(self, folder: str | Path, *, backbone: dict[str, Any], preprocess: Preprocess, gem_p: float) -> None:
        meta = {
            "kind": "embedder",
            "backbone": backbone,
            "embedding_dim": self.embedding_dim if isinstance(self.proj, nn.Linear) else None,
            "gem_p": gem_p,
            "preprocess": preprocess.to_dict(),
        }
        save_model(folder, self, meta)

    @classmethod
    def load(cls, folder: str | Path) -> tuple[ProductEmbedder, Preprocess]:
        state, meta = read_model(folder, "embedder")
        trunk = build_architecture(meta["backbone"]["name"], num_classes=0)
        model = cls(trunk, meta["embedding_dim"], meta["gem_p"], learn_gem=meta["embedding_dim"] is not None)
        model.load_state_dict(state)
        return model.eval(), Preprocess.from_dict(meta["preprocess"])
