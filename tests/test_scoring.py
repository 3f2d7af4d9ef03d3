"""The partition-size breakdown on a hand-made pool with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from snapsearch.evaluation.scoring import novelty_breakdown, partition_size_breakdown
from snapsearch.retrieval import per_query_metrics


def test_breakdown_by_products_per_partition() -> None:
    # partition 0: one product (7); partition 1: three products (1, 2, 3), two images of product 1
    item_partition = np.array([0, 1, 1, 1, 1])
    item_product = np.array([7, 1, 1, 2, 3])
    true_partition = np.array([0, 0, 1, 1])
    true_product = np.array([7, 7, 2, 3])
    ranked_by = {
        "global": [[1, 7], [7, 1], [1, 2], [3, 2]],  # R@1: 0, 1, 0, 1
        "top1": [[7], [7], [2, 1], [3, 1]],  # R@1: 1, 1, 1, 1
    }
    per_query = {s: per_query_metrics(r, true_product.tolist(), ks=(1, 5), map_k=5) for s, r in ranked_by.items()}
    scoring = {"baseline": "global", "improvement_metrics": ("R@1",), "bootstrap_resamples": 0, "seed": 0}
    scoring["bootstrap_unit"] = "product"
    out = partition_size_breakdown(item_partition, item_product, true_partition, true_product, per_query, **scoring)
    assert set(out) == {"1", "2-5"}  # no partition has 6+ products
    assert out["1"]["n_queries"] == 2 and out["1"]["n_partitions"] == 1
    assert out["1"]["strategies"]["global"]["metrics"]["R@1"] == 0.5
    assert out["1"]["strategies"]["top1"]["average_improvement"] == pytest.approx(1.0)  # 0.5 -> 1.0
    assert out["2-5"]["strategies"]["global"]["metrics"]["R@1"] == 0.5
    assert out["2-5"]["strategies"]["top1"]["metrics"]["R@1"] == 1.0


def test_seen_and_unseen_products_are_scored_apart() -> None:
    true_product = np.array([7, 7, 2, 3])
    ranked_by = {"global": [[1, 7], [7, 1], [1, 2], [3, 2]], "top1": [[7], [7], [2, 1], [3, 1]]}
    per_query = {s: per_query_metrics(r, true_product.tolist(), ks=(1,), map_k=5) for s, r in ranked_by.items()}
    scoring = {"baseline": "global", "improvement_metrics": ("R@1",), "bootstrap_resamples": 200, "seed": 0}
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # the gate: right, right, right, wrong
    gate = {"probs": probs, "true_partition": np.array([0, 0, 1, 1])}
    out = novelty_breakdown(true_product, [2, 3], per_query, bootstrap_unit="photo", **gate, **scoring)
    assert out["seen"]["gate"]["top1"] == 1.0 and out["unseen"]["gate"]["top1"] == 0.5  # per group
    assert out["seen"]["n_queries"] == 2 and out["seen"]["n_products"] == 1
    assert out["unseen"]["n_queries"] == 2 and out["unseen"]["n_products"] == 2
    assert out["unseen"]["strategies"]["global"]["metrics"]["R@1"] == 0.5
    assert out["unseen"]["strategies"]["top1"]["metrics"]["R@1"] == 1.0
    low, high = out["unseen"]["strategies"]["global"]["intervals"]["metrics"]["R@1"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    assert out["seen"]["strategies"]["global"]["intervals"]["metrics"]["R@1"] == [0.0, 1.0]  # 2 photos: 0 and 1


def test_subsets_resample_their_own_products() -> None:
    """The seen subset is one product (7) of two photos, one found by global search, one not: drawing
    products always draws both photos (R@1 0.5 in every resample), drawing photos does not."""
    true_product = np.array([7, 7, 2, 3])
    ranked_by = {"global": [[1, 7], [7, 1], [1, 2], [3, 2]], "top1": [[7], [7], [2, 1], [3, 1]]}
    per_query = {s: per_query_metrics(r, true_product.tolist(), ks=(1,), map_k=5) for s, r in ranked_by.items()}
    scoring = {"baseline": "global", "improvement_metrics": ("R@1",), "bootstrap_resamples": 200, "seed": 0}
    gate = {"probs": np.full((4, 2), 0.5), "true_partition": np.zeros(4, dtype=np.int64)}
    out = novelty_breakdown(true_product, [2, 3], per_query, bootstrap_unit="product", **gate, **scoring)
    seen = out["seen"]["strategies"]
    assert seen["global"]["intervals"]["metrics"]["R@1"] == [0.5, 0.5]
    assert seen["top1"]["intervals"]["relative"]["R@1"] == [1.0, 1.0]  # 0.5 -> 1.0 in every resample
    unseen = out["unseen"]["strategies"]["global"]["intervals"]["metrics"]["R@1"]  # products 2 (missed), 3 (found)
    assert unseen[0] == 0.0 and unseen[1] == 1.0


def test_full_mrr_is_not_cut_at_k() -> None:
    """The true product at rank 20: 1/20 in the full MRR, 0 in mAP@10 (the old MRR on top-10 lists)."""
    ranked = [[*range(100, 119), 5]]
    m = per_query_metrics(ranked, [5], ks=(1,), map_k=10)
    assert m["MRR"][0] == pytest.approx(1 / 20) and m["mAP@10"][0] == 0.0
