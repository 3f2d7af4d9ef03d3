"""The paired bootstrap against answers known in closed form, over photos and over products (clusters)."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from snapsearch.evaluation.report import bootstrap_note
from snapsearch.evaluation.uncertainty import describe, paired_bootstrap

from .conftest import CONF_DIR

N = 4000


def _boot(per_query, products, unit, baseline="global", metrics=("R@1",), resamples=1000, seed=0):
    return paired_bootstrap(
        per_query, baseline, list(metrics), products=products, unit=unit, resamples=resamples, seed=seed
    )


def _clustered(n_products: int, photos: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every photo of a product scores the same (found or not), products differ: per-product hits."""
    rng = np.random.default_rng(seed)
    products = np.repeat(rng.permutation(1000)[:n_products], photos)  # arbitrary ids, not 0..n-1
    hit = (rng.random(n_products) < 0.5).astype(float)
    return np.repeat(hit, photos), products


def test_interval_of_a_proportion_matches_the_normal_approximation() -> None:
    hits = (np.random.default_rng(1).random(N) < 0.3).astype(float)
    out = _boot({"global": {"R@1": hits}}, np.zeros(N, dtype=int), "photo")
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
    out = _boot({"global": {"R@1": base}, "top1": {"R@1": better}}, np.arange(N), "photo")
    gain = 60 / base.sum()
    low, high = out["top1"]["relative"]["R@1"]
    assert low < gain < high and low > 0  # a paired bootstrap sees the gain is real
    assert out["top1"]["average_improvement"] == out["top1"]["relative"]["R@1"]
    # unpaired, the two marginal intervals overlap: pairing is what makes the difference significant
    assert out["top1"]["metrics"]["R@1"][0] < out["global"]["metrics"]["R@1"][1]


def test_one_photo_per_product_is_the_photo_bootstrap() -> None:
    """With every photo its own product, drawing products is drawing photos: the same draws, same intervals."""
    rng = np.random.default_rng(3)
    per_query = {"global": {"R@1": rng.random(500)}, "top1": {"R@1": rng.random(500)}}
    by_product = _boot(per_query, np.arange(500), "product")
    by_photo = _boot(per_query, np.zeros(500, dtype=int), "photo")  # photo: the products are not read
    for s in per_query:
        for key in ("metrics", "relative"):
            assert by_product[s][key]["R@1"] == pytest.approx(by_photo[s][key]["R@1"], abs=1e-12)


def test_product_bootstrap_draws_whole_products() -> None:
    """Against the definition, resample by resample: draw products with replacement (the draws of
    rng.integers(0, C, (R, C)) over the sorted product ids), take every photo of each draw, average."""
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 40, size=25)  # products of 1 to 39 photos
    products = rng.permutation(np.repeat(rng.permutation(500)[:25], sizes))  # photos of a product scattered
    values = rng.random(len(products)) + (products % 3)  # products differ, photos of one product too
    ids = np.unique(products)
    draws = np.random.default_rng(7).integers(0, len(ids), size=(400, len(ids)))
    by_hand = np.array([np.concatenate([values[products == ids[d]] for d in row]).mean() for row in draws])
    low, high = _boot({"global": {"MRR": values}}, products, "product", metrics=("MRR",), resamples=400, seed=7)[
        "global"
    ]["metrics"]["MRR"]
    assert low == pytest.approx(np.percentile(by_hand, 2.5), abs=1e-12)
    assert high == pytest.approx(np.percentile(by_hand, 97.5), abs=1e-12)


def test_clustered_photos_widen_the_interval() -> None:
    """81 products of 30 identical photos: the evidence is 81 products, not 2,430 independent photos."""
    hits, products = _clustered(81, 30, seed=5)
    per_query = {"global": {"R@1": hits}}
    low_p, high_p = _boot(per_query, products, "product")["global"]["metrics"]["R@1"]
    low_q, high_q = _boot(per_query, products, "photo")["global"]["metrics"]["R@1"]
    p = hits.mean()
    assert low_p < p < high_p and low_q < p < high_q
    assert (high_p - low_p) > 4 * (high_q - low_q)  # sqrt(30) = 5.5 times wider in closed form
    half = 1.96 * np.sqrt(p * (1 - p) / 81)  # a proportion over 81 products
    assert high_p - low_p == pytest.approx(2 * half, rel=0.15)


def test_a_constant_metric_has_a_zero_width_interval() -> None:
    rng = np.random.default_rng(6)
    products = np.repeat(np.arange(20), rng.integers(1, 9, size=20))  # unequal products
    for unit in ("product", "photo"):
        out = _boot({"global": {"R@1": np.full(len(products), 0.25)}}, products, unit)
        assert out["global"]["metrics"]["R@1"] == [0.25, 0.25]


def test_product_bootstrap_is_paired_across_strategies() -> None:
    """One product draw per resample for every strategy: a copy of the baseline changes nothing in any
    resample, and a gain spread over many products is significant though the marginal intervals overlap."""
    hits, products = _clustered(81, 30, seed=8)
    rng = np.random.default_rng(9)
    ranks = np.where(hits > 0, 1, rng.integers(2, 20, size=len(hits)))
    base = {"R@1": hits, "mAP@10": np.where(ranks <= 10, 1.0 / ranks, 0.0)}
    better = {m: v.copy() for m, v in base.items()}
    missed = np.flatnonzero(hits == 0)
    better["R@1"][missed[::6]] = 1.0  # one photo in six of each missed product is now found
    per_query = {"global": base, "copy": {m: v.copy() for m, v in base.items()}, "top1": better}
    out = _boot(per_query, products, "product", metrics=("R@1", "mAP@10"))
    assert out["copy"]["relative"] == {"R@1": [0.0, 0.0], "mAP@10": [0.0, 0.0]}
    assert out["copy"]["average_improvement"] == [0.0, 0.0]
    assert out["top1"]["relative"]["mAP@10"] == [0.0, 0.0]  # top1 changed R@1 only
    low, high = out["top1"]["relative"]["R@1"]
    assert 0 < low < high
    assert out["top1"]["metrics"]["R@1"][0] < out["global"]["metrics"]["R@1"][1]  # marginals overlap


def test_products_must_match_the_queries_and_the_unit_be_known() -> None:
    per_query = {"global": {"R@1": np.ones(10)}}
    with pytest.raises(ValueError, match="one product per query"):
        _boot(per_query, np.arange(9), "product")
    with pytest.raises(ValueError, match=r"bootstrap\.unit='query'"):
        _boot(per_query, np.arange(10), "query")


def test_the_config_resamples_products_by_default() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate")
        photo = compose(config_name="evaluate", overrides=["bootstrap.unit=photo"])
    assert cfg.bootstrap.unit == "product" and photo.bootstrap.unit == "photo"


def test_the_report_says_what_the_intervals_resample() -> None:
    products = np.repeat(np.arange(81), 30)
    by_product = describe("product", 1000, products)
    assert by_product == {"unit": "product", "resamples": 1000, "level": 0.95, "clusters": 81, "n_queries": 2430}
    assert bootstrap_note({"bootstrap": by_product}).startswith(
        "95% intervals, paired bootstrap over products (81 clusters"
    )
    by_photo = bootstrap_note({"bootstrap": describe("photo", 1000, products)})
    assert by_photo.startswith("95% intervals, paired bootstrap over photos (2430 queries")
    assert bootstrap_note({"bootstrap": describe("product", 0, products)}) == "No intervals (bootstrap.resamples=0)."
