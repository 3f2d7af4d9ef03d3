"""A growing pool: the same queries against the catalog plus more and more distractor items, the regime in
which a cascade is supposed to earn its keep (the published partitions held tens of thousands of products).

Distractors are photos of the pool's products used as catalog items of *other* products (each its own
pseudo-product, in the partition of the product it shows). A query never competes with distractors of its
own product (they would be the right answer under another id): for each query product they are hidden
from the index (a tombstoned view, nothing rebuilt). Pools are nested: each size adds to the previous one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.protocols import known_rows
from snapsearch.retrieval import PartitionedIndex, per_query_metrics
from snapsearch.retrieval.store import excluding
from snapsearch.runtime.batch import BatchIO
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import label_indices
from snapsearch.search.hubness import density_column

CURVE_KS = (1, 5)
CURVE_METRICS = ("R@1", "R@5")


def growing_pool_study(
    cascade: Cascade,
    pool: tuple[np.ndarray, np.ndarray, np.ndarray],
    distractors: tuple[np.ndarray, np.ndarray, np.ndarray],
    queries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    sizes: Sequence[int],
    strategies: Sequence[str],
    k: int,
    factory: str,
    seed: int,
) -> dict[str, Any]:
    """Metrics of every strategy for each number of distractors in ``sizes``.

    Args:
        pool: (embeddings, partitions, products) of the catalog items.
        distractors: (embeddings, partitions, real products) of the distractor images.
        queries: (embeddings, probabilities, true partitions, true products) of the query photos.
    """
    p_emb, p_part, p_prod = pool
    d_emb, d_part, d_real = distractors
    q_emb, q_probs, q_part, q_prod = queries
    order = np.random.default_rng(seed).permutation(len(d_emb))
    first_pseudo = int(max(p_prod.max(), d_real.max())) + 1
    rows: list[dict[str, Any]] = []
    for size in sorted({min(int(s), len(d_emb)) for s in sizes}):
        take = order[:size]
        vectors = np.concatenate([p_emb, d_emb[take]])
        index = PartitionedIndex.build(
            vectors,
            np.concatenate([p_part, d_part[take]]),
            np.concatenate([p_prod, first_pseudo + np.arange(size)]),
            n_partitions=cascade.index.n_partitions,
            factory=factory,
            metadata=density_column(cascade.hub_reference, vectors),  # the cascade's hubness correction applies
        )
        owner = np.concatenate([np.full(len(p_emb), -1), d_real[take]])  # real product behind each item
        ranked: dict[str, list[list[int]]] = {s: [[] for _ in range(len(q_prod))] for s in strategies}
        for product in np.unique(q_prod):
            mine = np.flatnonzero(q_prod == product)
            view = excluding(index, np.flatnonzero(owner == product))
            for s in strategies:
                rankings, _ = cascade.rank(q_emb[mine], q_probs[mine], k, s, q_part[mine], index=view)
                for i, r in zip(mine, rankings, strict=True):
                    ranked[s][i] = [int(p) for p in r.products]
        metrics = {
            s: {m: float(v.mean()) for m, v in per_query_metrics(r, q_prod.tolist(), CURVE_KS, k).items()}
            for s, r in ranked.items()
        }
        rows.append(
            {
                "n_distractors": size,
                "n_items": index.n_items,
                "n_products": len(np.unique(p_prod)) + size,
                "metrics": metrics,
            }
        )
    return {"seed": seed, "factory": factory, "points": rows}


def growing_pool_figure(study: dict[str, Any]) -> Figure:
    """R@1 and R@5 of each strategy against the pool's size (items)."""
    points = study["points"]
    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(11, 4))
    x = [p["n_items"] for p in points]
    for ax, metric in zip(axes, CURVE_METRICS, strict=True):
        for strategy in points[0]["metrics"]:
            ax.plot(x, [p["metrics"][strategy][metric] for p in points], marker="o", label=strategy)
        ax.set_xscale("log")
        ax.set_xlabel("pool size (catalog items)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Same queries, pool grown with distractor products")
    fig.tight_layout()
    return fig


def run_growing_pool(
    cfg: Any, cascade: Cascade, manifest: pd.DataFrame, pool: pd.DataFrame, labels: LabelMaps, io: BatchIO, queries
) -> dict[str, Any]:
    """The study of ``evaluate.py growing_pool.enabled=true``: the train photos are the distractors."""
    photos = known_rows(manifest[(manifest["domain"] == "query") & (manifest["split"] == "train")], labels)
    d_out = cascade.infer_frame(photos, labels, io, classify=False, what="distractor photos")
    p_out = cascade.infer_frame(pool, labels, io, classify=False, what="pool images")
    rows = pool.loc[p_out.rows]
    part, prod = label_indices(rows, labels)
    # the catalog items as the cascade's index holds them (moved by its prototype shift); the distractors are
    # shopper photos, already where photos lie, and stay as they are
    shift = cascade.prototype_shift
    vectors = p_out.embeddings if shift is None else shift.apply(p_out.embeddings, part, rows["product_id"].tolist())
    return growing_pool_study(
        cascade,
        (vectors, part, prod),
        (d_out.embeddings, *label_indices(photos.loc[d_out.rows], labels)),
        queries,
        sizes=cfg.sizes,
        strategies=[s for s in cfg.strategies if s in cascade.strategies],
        k=cfg.k,
        factory=cfg.factory,
        seed=cfg.seed,
    )
