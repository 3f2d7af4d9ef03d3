"""The paired bootstrap against answers known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from snapsearch.evaluation.uncertainty import paired_bootstrap

N = 4000


def test_interval_of_a_proportion_matches_the_normal_approximation() -> None:
    hits = (np.random.default_rng(1).random(N) < 0.3).astype(float)
    out = paired_bootstrap({"global": {"R@1": hits}}, "global", ["R@1"], resamples=1000, seed=0)
    low, high = out["global"]["metrics"]["R@1"]
    p = hits.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / N)  # the textbook 95% interval of a proportion
    assert low == pytest.approx(p - half, abs=0.004) and high == pytest.approx(p + half, abs=0.004)
    assert out["global"]["relative"]["R@1"] == [0.0, 0.0]  # the baseline against itself


def test_paired_differences_are_tight_when_rankings_agree() -> None:
    rng = np.random.default_rng(2)
    base = (rng.random(N) < 0.5).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:60]] = 1.0  # 60 more hits than the baseline, every other query equal
    out = paired_bootstrap(
        {"global": {"R@1": base}, "top1": {"R@1": better}}, "global", ["R@1"], resamples=1000, seed=0
    )
    gain = 60 / base.sum()
    low, high = out["top1"]["relative"]["R@1"]
    assert low < gain < high and low > 0  # a paired bootstrap sees the gain is real
    assert out["top1"]["average_improvement"] == out["top1"]["relative"]["R@1"]
    # unpaired, the two marginal intervals overlap: pairing is what makes the difference significant
    assert out["top1"]["metrics"]["R@1"][0] < out["global"]["metrics"]["R@1"][1]
