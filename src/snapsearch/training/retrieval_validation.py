"""Photo -> catalog retrieval on the validation photos at every epoch end: what selects an embedding head.

Two validation loaders: the photos (queries) and the catalog images (the pool). Each rank keeps what it
embedded; at the epoch end both sets are gathered over ranks, each image once, and searched exactly. The
selection fold's photos (seen products trained without photos: ``data.unseen_products.selection_fold``) are
scored apart as ``fold/<metric>``, the rest as ``<metric>``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from snapsearch.retrieval.metrics import retrieval_metrics
from snapsearch.training.distributed import gather_unique

QUERY_LOADER, POOL_LOADER = 0, 1


def products_ranked_by_similarity(query: np.ndarray, pool: np.ndarray, pool_products: np.ndarray) -> list[list[int]]:
    """Exact cosine ranking of pool products per query, each product once at its best image."""
    order = np.argsort(-(query @ pool.T), axis=1)
    return [list(dict.fromkeys(pool_products[row].tolist())) for row in order]


class RetrievalValidation:
    """Collects validation embeddings per loader and scores photo -> catalog retrieval at the epoch end."""

    def __init__(self, embedding_dim: int, ks: tuple[int, ...], fold_products: Sequence[int] = ()) -> None:
        self.embedding_dim = embedding_dim
        self.ks = ks
        self.fold_products = np.asarray(sorted(fold_products), dtype=int)
        self._parts: dict[int, list[tuple[torch.Tensor, ...]]] = {QUERY_LOADER: [], POOL_LOADER: []}

    def add(self, loader: int, embeddings: torch.Tensor, products: torch.Tensor, rows: torch.Tensor) -> None:
        self._parts[loader].append((embeddings.detach().cpu(), products.cpu(), rows.cpu()))

    def _gathered(self, loader: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(embeddings, products) of one validation loader over all ranks, each image once."""
        parts = self._parts[loader]
        if parts:
            emb, prod, rows = (torch.cat(t).numpy() for t in zip(*parts, strict=True))
        else:
            emb, prod, rows = np.zeros((0, self.embedding_dim), np.float32), np.zeros(0, int), np.zeros(0, int)
        emb, prod = gather_unique(rows, emb, prod)
        return (emb, prod) if len(emb) else None

    def compute(self) -> dict[str, float] | None:
        """R@k / mAP@k of the epoch (identical on every rank), then a fresh start; None without both sets."""
        query, pool = self._gathered(QUERY_LOADER), self._gathered(POOL_LOADER)
        self._parts = {QUERY_LOADER: [], POOL_LOADER: []}
        if query is None or pool is None:
            return None
        (q, q_prod), (p, p_prod) = query, pool
        in_fold = np.isin(q_prod, self.fold_products)
        out: dict[str, float] = {}
        for prefix, rows in (("", ~in_fold), ("fold/", in_fold)):
            if rows.any():
                ranked = products_ranked_by_similarity(q[rows], p, p_prod)
                scores = retrieval_metrics(ranked, q_prod[rows].tolist(), ks=self.ks)
                out |= {f"{prefix}{k}": float(v) for k, v in scores.items()}
        return out
