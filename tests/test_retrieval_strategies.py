"""Cascade strategies on hand-built indexes with known answers, plus property tests and EM priors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapsearch.retrieval import (
    Adaptive,
    Conformal,
    Fusion,
    GlobalSearch,
    Oracle,
    PartitionedIndex,
    Top1,
    TopK,
    em_prior_correction,
    routing_decomposition,
    run_strategy,
)

# Three partitions of 2-D unit vectors at known angles (degrees): product -> (partition, angle).
CATALOG = {"a": (0, 0), "b": (0, 40), "c": (1, 10), "d": (1, 90), "e": (2, 180), "f": (2, 200)}
QUERY_ANGLE = 8  # nearest overall is "c" (2 deg, partition 1); the true product is "a" (8 deg, partition 0)
GLOBAL_ORDER = ["c", "a", "b", "d", "f", "e"]
CONFIDENT = np.array([[0.8, 0.15, 0.05]])
UNSURE = np.array([[0.4, 0.35, 0.25]])
PROPERTY_RUNS = 40


def _unit(deg: float) -> np.ndarray:
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))], dtype=np.float32)


@pytest.fixture(scope="module")
def tiny() -> PartitionedIndex:
    names = list(CATALOG)
    vectors = np.stack([_unit(CATALOG[n][1]) for n in names])
    return PartitionedIndex.build(vectors, [CATALOG[n][0] for n in names], np.array(names, dtype=object))


def _run(strategy, index, probs=CONFIDENT, k=6, **kwargs):
    ranked, routed = run_strategy(strategy, index, _unit(QUERY_ANGLE)[None], probs, k, **kwargs)
    return ranked[0], routed[0]


def test_global_ranks_by_similarity(tiny) -> None:
    assert _run(GlobalSearch(), tiny) == (GLOBAL_ORDER, None)


def test_top1_fixes_a_wrong_category_neighbour(tiny) -> None:
    assert _run(Top1(), tiny) == (["a", "b"], [0])


def test_topk_over_all_partitions_equals_global(tiny) -> None:
    ranked, routed = _run(TopK(3), tiny)
    assert ranked == GLOBAL_ORDER and routed == [0, 1, 2]
    assert _run(TopK(10), tiny)[0] == GLOBAL_ORDER  # k beyond the partition count is capped
    assert _run(TopK(2), tiny) == (["c", "a", "b", "d"], [0, 1])


def test_adaptive_takes_fewest_partitions_or_falls_back(tiny) -> None:
    assert _run(Adaptive(p=0.9, min_confidence=0.5), tiny)[1] == [0, 1]  # 0.8 < 0.9 <= 0.95
    assert _run(Adaptive(p=0.5, min_confidence=0.5), tiny) == (["a", "b"], [0])
    assert _run(Adaptive(p=0.9, min_confidence=0.5), tiny, probs=UNSURE) == (GLOBAL_ORDER, None)


def test_fusion_reranks_global_candidates_by_category_probability(tiny) -> None:
    ranked, routed = _run(Fusion(lam=0.1, candidates=4), tiny)
    assert routed is None
    assert ranked[:3] == ["a", "b", "c"]  # "c" loses 0.1 * log(0.15 / 0.8) against "a"
    assert _run(Fusion(lam=0.0), tiny)[0] == GLOBAL_ORDER


def test_oracle_searches_only_the_true_partition(tiny) -> None:
    assert _run(Oracle(), tiny, true_partition=np.array([0])) == (["a", "b"], [0])
    assert _run(Oracle(), tiny, true_partition=np.array([2])) == (["f", "e"], [2])
    with pytest.raises(ValueError, match="true_partition"):
        _run(Oracle(), tiny)


def test_conformal_routes_set_or_global(tiny) -> None:
    strategy = Conformal(coverage=0.9, max_set_size=2, threshold=0.5)  # admits p >= 0.5
    assert _run(strategy, tiny) == (["a", "b"], [0])
    assert _run(strategy, tiny, probs=UNSURE)[1] is None  # empty set: nothing plausible
    wide = Conformal(coverage=0.9, max_set_size=2, threshold=0.96)  # admits all three > max_set_size
    assert _run(wide, tiny)[1] is None
    with pytest.raises(RuntimeError, match="fit"):
        _run(Conformal(), tiny)


def _calibrated(rng: np.random.Generator, n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities with labels drawn from them: a perfectly calibrated classifier."""
    probs = rng.dirichlet(np.full(n_classes, 0.3), size=n)
    labels = np.array([rng.choice(n_classes, p=p) for p in probs])
    return probs, labels


@pytest.mark.parametrize("coverage", [0.8, 0.95])
def test_conformal_coverage_matches_target(coverage: float) -> None:
    rng = np.random.default_rng(0)
    strategy = Conformal(coverage=coverage).fit(*_calibrated(rng, 2000, 8))
    probs, labels = _calibrated(rng, 4000, 8)
    sets = strategy.prediction_sets(probs)
    covered = np.mean([y in s for y, s in zip(labels, sets, strict=True)])
    assert covered == pytest.approx(coverage, abs=0.025)
    assert np.mean([len(s) for s in sets]) < 8


def test_conformal_with_too_few_calibration_photos_admits_everything() -> None:
    strategy = Conformal(coverage=0.95).fit(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1]))
    assert strategy.prediction_sets(np.array([[0.99, 0.01]])) == [[0, 1]]


def test_results_are_k_distinct_products_even_with_many_images_each() -> None:
    rng = np.random.default_rng(3)
    n_products, per_product = 12, 10
    centers = rng.standard_normal((n_products, 8))
    x = np.repeat(centers, per_product, axis=0) + 0.01 * rng.standard_normal((n_products * per_product, 8))
    products = np.repeat(np.arange(n_products), per_product)
    index = PartitionedIndex.build(x, products % 2, products)
    ranked, _ = run_strategy(GlobalSearch(), index, centers[:3], np.full((3, 2), 0.5), k=5, overfetch=1)
    assert all(len(r) == len(set(r)) == 5 for r in ranked)
    assert [r[0] for r in ranked] == [0, 1, 2]
    ranked, _ = run_strategy(Top1(), index, centers[:1], np.array([[1.0, 0.0]]), k=10)
    assert sorted(ranked[0]) == list(range(0, n_products, 2))  # the partition holds only 6 products


def test_run_strategy_checks_probs(tiny) -> None:
    with pytest.raises(ValueError, match="n_partitions=3"):
        _run(Top1(), tiny, probs=np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="non-negative"):
        _run(Top1(), tiny, probs=np.array([[1.2, -0.1, -0.1]]))


def test_routing_decomposition_multiplies_to_recall() -> None:
    routed = [[0], [1], None, [0, 2]]
    true = np.array([0, 0, 1, 2])
    found = np.array([True, False, True, False])
    parts = routing_decomposition(routed, true, found)
    assert parts.routed_right == 0.75
    assert parts.found_within == pytest.approx(2 / 3)
    assert parts.routed_right * parts.found_within == pytest.approx(found.mean())


def test_em_prior_correction_moves_toward_the_shifted_mix() -> None:
    rng = np.random.default_rng(0)
    means, train_prior, true_prior = np.array([-2.0, 0.0, 2.0]), np.full(3, 1 / 3), np.array([0.7, 0.2, 0.1])
    labels = rng.choice(3, size=3000, p=true_prior)
    x = means[labels] + rng.standard_normal(len(labels))
    loglik = -0.5 * (x[:, None] - means[None]) ** 2
    probs = np.exp(loglik) * train_prior
    probs /= probs.sum(axis=1, keepdims=True)  # exact posteriors under the training mix
    adjusted, estimated = em_prior_correction(probs, train_prior)
    assert np.abs(estimated - true_prior).max() < 0.05
    assert np.abs(probs.mean(axis=0) - true_prior).max() > np.abs(estimated - true_prior).max()
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0)
    assert (adjusted.argmax(1) == labels).mean() > (probs.argmax(1) == labels).mean()


# ---------------------------------------------------------------------------------------- properties
@st.composite
def _pools(draw: st.DrawFn) -> tuple[PartitionedIndex, np.ndarray, np.ndarray, np.ndarray, int]:
    """A random Flat index (each product in one partition), queries, their probs and true partitions."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_partitions = draw(st.integers(1, 5))
    n_items, n_queries = draw(st.integers(1, 40)), draw(st.integers(1, 4))
    products = rng.integers(0, draw(st.integers(1, 15)), n_items)
    index = PartitionedIndex.build(
        rng.standard_normal((n_items, 6)), products % n_partitions, products, n_partitions=n_partitions
    )
    probs = rng.dirichlet(np.ones(n_partitions), n_queries)
    true = rng.integers(0, n_partitions, n_queries)
    return index, rng.standard_normal((n_queries, 6)), probs, true, draw(st.integers(1, 10))


@settings(max_examples=PROPERTY_RUNS, deadline=None)
@given(_pools())
def test_topk_over_all_partitions_ranks_like_global(case) -> None:
    index, queries, probs, _, k = case
    assert (
        run_strategy(TopK(index.n_partitions), index, queries, probs, k)[0]
        == run_strategy(GlobalSearch(), index, queries, probs, k)[0]
    )


@settings(max_examples=PROPERTY_RUNS, deadline=None)
@given(_pools())
def test_oracle_results_stay_in_the_true_partition(case) -> None:
    index, queries, probs, true, k = case
    ranked, _ = run_strategy(Oracle(), index, queries, probs, k, true_partition=true)
    for products, t in zip(ranked, true, strict=True):
        assert all(p % index.n_partitions == t for p in products)


_prob_rows = st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=1, max_size=8).filter(
    lambda row: sum(row) > 0
)


@settings(max_examples=PROPERTY_RUNS * 2, deadline=None)
@given(st.lists(_prob_rows, min_size=1, max_size=4).filter(lambda rows: len({len(r) for r in rows}) == 1))
def test_adaptive_full_mass_searches_every_possible_partition(rows) -> None:
    probs = np.array(rows)
    probs /= probs.sum(axis=1, keepdims=True)
    routes = Adaptive(p=1.0, min_confidence=0.0).route(probs)
    for row, route in zip(probs, routes, strict=True):
        assert route is not None and sorted(route) == np.flatnonzero(row > 0).tolist()
