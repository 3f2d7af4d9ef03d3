"""Product-level retrieval metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from snapsearch.retrieval import (
    average_improvement,
    average_precision_at_k,
    dedupe_by_product,
    recall_at_k,
    reciprocal_rank,
    relative_change,
    retrieval_metrics,
)


def test_per_query_metrics_by_rank() -> None:
    ranked = ["x", "y", "z"]
    assert recall_at_k(ranked, "y", 1) == 0.0
    assert recall_at_k(ranked, "y", 2) == 1.0
    assert average_precision_at_k(ranked, "y", 10) == 0.5
    assert average_precision_at_k(ranked, "z", 2) == 0.0  # beyond the cutoff
    assert reciprocal_rank(ranked, "z") == pytest.approx(1 / 3)
    assert reciprocal_rank(ranked, "absent") == 0.0
    assert recall_at_k([], "x", 5) == 0.0


def test_retrieval_metrics_hand_computed() -> None:
    ranked = [[7, 1, 2], [3, 4, 5, 6, 8, 9], [1, 2]]
    truth = [7, 9, 5]  # ranks 1, 6, absent
    m = retrieval_metrics(ranked, truth, ks=(1, 5, 10), map_k=5)
    assert m == pytest.approx({"R@1": 1 / 3, "R@5": 1 / 3, "R@10": 2 / 3, "mAP@5": 1 / 3, "MRR": (1 + 1 / 6) / 3})


def test_retrieval_metrics_default_keys_and_errors() -> None:
    m = retrieval_metrics([[1, 2]], [2])
    assert set(m) == {"R@1", "R@5", "R@10", "mAP@10", "MRR"}
    assert m["mAP@10"] == m["MRR"] == 0.5
    with pytest.raises(ValueError, match="one ranked list per query"):
        retrieval_metrics([[1]], [1, 2])
    with pytest.raises(ValueError):
        retrieval_metrics([], [])


def test_relative_change_and_average_improvement() -> None:
    base = {"R@1": 0.2, "R@5": 0.4, "mAP@10": 0.25, "MRR": 0.3}
    new = {"R@1": 0.3, "R@5": 0.5, "mAP@10": 0.5, "MRR": 0.3, "extra": 1.0}
    rel = relative_change(new, base)
    assert rel == pytest.approx({"R@1": 0.5, "R@5": 0.25, "mAP@10": 1.0, "MRR": 0.0})
    assert average_improvement(new, base) == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert average_improvement(new, base, keys=("MRR",)) == 0.0
    with pytest.raises(KeyError, match="R@100"):
        average_improvement(new, base, keys=("R@100",))


def test_relative_change_zero_baseline() -> None:
    rel = relative_change({"a": 0.0, "b": 0.1}, {"a": 0.0, "b": 0.0})
    assert rel["a"] == 0.0
    assert rel["b"] == math.inf


def test_dedupe_keeps_best_image_per_product() -> None:
    item_product = np.array(["a", "b", "a", "c", "b"], dtype=object)
    ids = np.array([2, 4, 0, -1, 3, 1])  # -1: faiss padding
    scores = np.array([0.9, 0.8, 0.7, 0.0, 0.5, 0.4])
    products, best = dedupe_by_product(ids, scores, item_product)
    assert products.tolist() == ["a", "b", "c"]
    assert best.tolist() == [0.9, 0.8, 0.5]


def test_dedupe_numeric_products_and_empty() -> None:
    products, best = dedupe_by_product(np.array([1, 0, 2]), np.array([3.0, 2.0, 1.0]), np.array([5, 5, 6]))
    assert products.tolist() == [5, 6]
    assert best.tolist() == [3.0, 1.0]
    products, best = dedupe_by_product(np.zeros(0, int), np.zeros(0), np.array([1]))
    assert len(products) == len(best) == 0
    with pytest.raises(ValueError):
        dedupe_by_product(np.array([0, 1]), np.array([1.0]), np.array([1, 2]))
