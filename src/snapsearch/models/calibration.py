"""Temperature scaling (Guo et al., 2017): one scalar that makes the classifier's probabilities honest,
so that they can gate the search (adaptive / conformal routing)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# A temperature outside this range means the model is broken or untrained, not miscalibrated; clamping
# keeps an untrained smoke model from reporting T in the thousands.
T_MIN, T_MAX = 0.05, 20.0


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 100) -> float:
    """The temperature minimising the validation NLL (optimised in log space, so it stays positive)."""
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need N x C logits and N labels, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    logits, labels = logits.detach().double(), labels.detach().long()
    log_t = torch.zeros((), dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.clamp(math.log(T_MIN), math.log(T_MAX)).exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().clamp(math.log(T_MIN), math.log(T_MAX)).exp())
