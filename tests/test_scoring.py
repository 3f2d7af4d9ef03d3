"""The partition-size breakdown on a hand-made pool with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from snapsearch.evaluation.scoring import partition_size_breakdown


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
    out = partition_size_breakdown(
        item_partition,
        item_product,
        true_partition,
        true_product,
        ranked_by,
        ks=(1, 5),
        map_k=5,
        baseline="global",
        improvement_metrics=("R@1",),
    )
    assert set(out) == {"1", "2-5"}  # no partition has 6+ products
    assert out["1"]["n_queries"] == 2 and out["1"]["n_partitions"] == 1
    assert out["1"]["strategies"]["global"]["metrics"]["R@1"] == 0.5
    assert out["1"]["strategies"]["top1"]["average_improvement"] == pytest.approx(1.0)  # 0.5 -> 1.0
    assert out["2-5"]["strategies"]["global"]["metrics"]["R@1"] == 0.5
    assert out["2-5"]["strategies"]["top1"]["metrics"]["R@1"] == 1.0
