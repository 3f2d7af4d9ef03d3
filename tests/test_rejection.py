"""The "not in our catalog" study's parts: the weighted AUROC its intervals resample, the disjoint halves of
the out-of-catalog products, and the measures' product-clustered intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from snapsearch.evaluation.rejection import _measure, split_halves, weighted_auroc


def test_weighted_auroc_is_the_auroc_and_weights_count_as_repeats() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=200), 1)  # rounded: many ties
    positive = rng.random(200) < 0.6
    scores[positive] += 0.5
    want = roc_auc_score(positive, scores)  # scikit-learn's exact AUROC (ties count half)
    assert weighted_auroc(scores, positive, np.ones((1, 200)))[0] == pytest.approx(want, abs=1e-9)
    counts = rng.integers(0, 3, size=200)
    repeated = np.repeat(np.arange(200), counts)
    want = roc_auc_score(positive[repeated], scores[repeated])
    assert weighted_auroc(scores, positive, counts[None].astype(float))[0] == pytest.approx(want, abs=1e-9)


def test_halves_are_disjoint_seeded_and_cover_the_products() -> None:
    val, test = split_halves([3, 9, 4, 12, 7], seed=0)
    assert not set(val) & set(test) and sorted([*val, *test]) == [3, 4, 7, 9, 12] and len(val) == 2
    assert [a.tolist() for a in split_halves([3, 9, 4, 12, 7], seed=0)] == [val.tolist(), test.tolist()]
    with pytest.raises(ValueError, match="at least two"):
        split_halves([3], seed=0)


def test_measures_and_their_product_intervals() -> None:
    # 10 in-catalog products (scores high) and 10 out-of-catalog ones (low), 5 photos each; one product of
    # each kind is on the wrong side of the threshold with all its photos
    products = np.repeat(np.arange(20), 5)
    in_catalog = products < 10
    scores = np.where(in_catalog, 0.9, 0.1)
    scores[products == 0] = 0.05
    scores[products == 19] = 0.95
    boot = {"unit": "product", "resamples": 500, "seed": 0}
    out = _measure(scores, in_catalog, 0.5, products, boot)
    assert out["out_of_catalog_rejected"] == pytest.approx(0.9) and out["in_catalog_wrongly_rejected"] == 0.1
    low, high = out["intervals"]["out_of_catalog_rejected"]
    assert low < 0.9 <= high and high - low > 0.15  # ten clusters: wide
    photo = _measure(scores, in_catalog, 0.5, products, {**boot, "unit": "photo"})["intervals"]
    assert photo["out_of_catalog_rejected"][1] - photo["out_of_catalog_rejected"][0] < high - low  # 50 photos: narrower
