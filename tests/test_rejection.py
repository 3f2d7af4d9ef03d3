"""The rejection threshold and its measures on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from snapsearch.evaluation.rejection import _measure, held_out_products, youden_threshold


def test_youden_threshold_separates_separable_scores() -> None:
    scores = np.array([0.91, 0.85, 0.72, 0.40, 0.31, 0.12])
    in_catalog = np.array([True, True, True, False, False, False])
    t = youden_threshold(scores, in_catalog)
    assert 0.40 < t <= 0.72
    m = _measure(scores, in_catalog, t)
    assert m["out_of_catalog_rejected"] == 1.0 and m["in_catalog_wrongly_rejected"] == 0.0 and m["auroc"] == 1.0


def test_youden_threshold_on_overlapping_scores() -> None:
    # one in-catalog photo scores below two out-of-catalog ones: the best cut keeps 3 of 4, rejects 2 of 3
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.5, 0.1])
    in_catalog = np.array([True, True, True, True, False, False, False])
    t = youden_threshold(scores, in_catalog)
    m = _measure(scores, in_catalog, t)
    assert t == pytest.approx(0.7)
    assert m["in_catalog_wrongly_rejected"] == pytest.approx(0.25) and m["out_of_catalog_rejected"] == 1.0
    assert m["auroc"] == pytest.approx(10 / 12, rel=1e-6)  # 10 of the 12 (in, out) pairs are ordered right


def test_held_out_products_are_seeded_and_partial() -> None:
    a, b = held_out_products(81, 0.33, seed=0), held_out_products(81, 0.33, seed=0)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 27 and len(set(a.tolist())) == 27
    assert len(held_out_products(2, 0.9, seed=1)) == 1
    with pytest.raises(ValueError, match="holdout_fraction"):
        held_out_products(10, 1.0, seed=0)
