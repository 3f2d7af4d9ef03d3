"""A domain-invariance term (Ganin & Lempitsky, 2015): small critics try to tell a shopper photo from a catalog
image (composited or not) by the features the heads read, and a gradient-reversal layer trains the trunk and
heads to make that impossible.

Why: with products that have catalog images but no shopper photos in training, "looks like a catalog image"
identifies exactly those products (a shortcut, not the product's appearance), and a photo of one of them at
search time lands with the photographed products. Removing the domain from the features removes the shortcut.
The critics are training-only: the deployed network is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-scale`` backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None  # type: ignore[attr-defined]


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    return _ReverseGradient.apply(x, scale)


def reversal_scale(progress: float, gamma: float) -> float:
    """DANN's schedule, 0 at the start of training to ~1 at its end (``progress`` in [0, 1]): the critics
    learn the domains before the features are pushed to hide them."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(progress, 0.0), 1.0))) - 1.0


class DomainCritics(nn.Module):
    """One critic (Linear-ReLU-Linear) per named feature; :meth:`loss` is their mean binary cross-entropy on
    reversed gradients."""

    def __init__(self, widths: Mapping[str, int], hidden: int, gamma: float) -> None:
        super().__init__()
        if not widths:
            raise ValueError("domain invariance needs at least one feature to make domain-free (e.g. [embedding])")
        self.critics = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(w, hidden), nn.ReLU(), nn.Linear(hidden, 1)) for name, w in widths.items()}
        )
        self.gamma = float(gamma)

    def loss(
        self, features: Mapping[str, torch.Tensor], is_photo: torch.Tensor, progress: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The critics' loss on reversed gradients, and their accuracy (0.5 = the domain is hidden). A batch
        of one domain only teaches nothing and gives zero."""
        target = is_photo.float()
        if target.numel() == 0 or bool((target == target[0]).all()):
            zero = next(self.parameters()).sum() * 0.0
            return zero, zero.detach() + 0.5
        scale = reversal_scale(progress, self.gamma)
        losses, correct = [], []
        for name, critic in self.critics.items():
            logit = critic(reverse_gradient(features[name], scale)).squeeze(-1)
            losses.append(F.binary_cross_entropy_with_logits(logit, target))
            correct.append(((logit > 0).float() == target).float().mean())
        return torch.stack(losses).mean(), torch.stack(correct).mean().detach()
