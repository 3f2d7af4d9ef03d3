"""Product-level retrieval metrics from ranked product lists (each product once, at its best image).

With one relevant product per query, AP@k is 1/rank when the product is within the first k, else 0,
so mAP@k equals MRR truncated at k.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def _rank(ranked: Sequence[Hashable], truth: Hashable) -> int | None:
    """1-based rank of the true product, or None when it was not retrieved."""
    for i, item in enumerate(ranked):
        if item == truth:
            return i + 1
    return None


def retrieval_metrics(
    ranked: Sequence[Sequence[Hashable]], truth: Sequence[Hashable], ks: tuple[int, ...] = (1, 5, 10), map_k: int = 10
) -> dict[str, float]:
    """Recall@k for each k, mAP@map_k and MRR, averaged over queries."""
    if len(ranked) != len(truth) or not ranked:
        raise ValueError(f"need one ranked list per query, got {len(ranked)} lists for {len(truth)} queries")
    ranks = [_rank(r, t) for r, t in zip(ranked, truth, strict=True)]
    out = {f"R@{k}": float(np.mean([r is not None and r <= k for r in ranks])) for k in ks}
    out[f"mAP@{map_k}"] = float(np.mean([1.0 / r if r is not None and r <= map_k else 0.0 for r in ranks]))
    out["MRR"] = float(np.mean([1.0 / r if r is not None else 0.0 for r in ranks]))
    return out
