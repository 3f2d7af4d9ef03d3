"""A feature-preservation term: a frozen copy of the trunk as it was before fine-tuning is a teacher, and the
fine-tuned network is kept close to what it saw.

Why: fine-tuning on a few dozen products teaches categories and erases what separates a new product from its
trained neighbours. Inside its category, the untouched ImageNet trunk ranks the photos of products trained
from their catalog images alone better than the fine-tuned embedding does (BENCHMARKS §21, "generic
features"). The teacher is training-only: the exported network is unchanged and a query still costs one pass.
Measured (BENCHMARKS §21, stops 30-31, one seed): neither target lifted those products; the term is off by
default.

Targets (``multitask.feature_preservation.targets``):
- ``similarities``: the embedding's in-batch similarities stay correlated (row by row, Pearson) with the
  teacher's, so the embedding keeps the pretrained order of neighbours. Being scale- and shift-free, the term
  leaves the metric loss its margins. ``within_domain`` compares a shopper photo's neighbours among shopper
  photos only, and a catalog image's (composited or not) among catalog images: across domains the teacher
  files every catalog image beside the other catalog images, the very shortcut the domain critics remove
  (BENCHMARKS §21, stop 30: across domains the term did not help photo-less products and cost seen ones).
- ``features``: the pooled trunk features the gate reads stay close (cosine) to the teacher's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

TARGETS = ("similarities", "features")


def similarity_disagreement(
    embedding: torch.Tensor, reference: torch.Tensor, domains: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - the mean row-wise Pearson correlation between two batches' cosine-similarity matrices, diagonal out:
    0 when the embedding orders every image's neighbours as the reference does. With ``domains`` (one id per
    image), a row compares only the images of its own domain. A row needs two such neighbours to have an
    order; a batch without one gives zero."""
    n = embedding.shape[0]
    valid = ~torch.eye(n, dtype=torch.bool, device=embedding.device)
    if domains is not None:
        valid &= domains[:, None] == domains[None, :]
    rows = valid.sum(dim=1) >= 2
    if not bool(rows.any()):
        return embedding.sum() * 0.0
    weight = valid[rows].to(embedding.dtype)
    centred = []
    for x in (embedding, reference):
        x = F.normalize(x, dim=-1)
        sims = (x @ x.T)[rows]
        mean = (sims * weight).sum(dim=1, keepdim=True) / weight.sum(dim=1, keepdim=True)
        centred.append(F.normalize((sims - mean) * weight, dim=1))
    return 1.0 - (centred[0] * centred[1]).sum(dim=1).mean()


class FeaturePreservation(nn.Module):
    """The frozen teacher and :meth:`loss`, the mean of the configured targets' disagreements."""

    def __init__(self, trunk: nn.Module, targets: Sequence[str], within_domain: bool) -> None:
        super().__init__()
        unknown = sorted(set(targets) - set(TARGETS))
        if unknown or not targets:
            raise ValueError(
                f"multitask.feature_preservation.targets={list(targets)}: choose one or more of {list(TARGETS)}"
            )
        self.targets = tuple(targets)
        self.within_domain = bool(within_domain)
        self.teacher = copy.deepcopy(trunk).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FeaturePreservation:
        """The teacher stays in eval mode (its BatchNorm statistics and dropout are the pretrained ones)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def loss(
        self, images: torch.Tensor, pooled: torch.Tensor, embedding: torch.Tensor, is_photo: torch.Tensor
    ) -> torch.Tensor:
        """``pooled``: the student trunk's pooled features (what the gate reads); ``embedding``: its embedding;
        ``is_photo``: 1 for a shopper photo, 0 for a catalog image (composited or not)."""
        with torch.no_grad():
            reference = self.teacher.forward_head(self.teacher.forward_features(images), pre_logits=True)
        parts = []
        if "similarities" in self.targets:
            domains = is_photo if self.within_domain else None
            parts.append(similarity_disagreement(embedding, reference, domains))
        if "features" in self.targets:
            parts.append((1.0 - F.cosine_similarity(pooled, reference, dim=-1)).mean())
        return torch.stack(parts).mean()
