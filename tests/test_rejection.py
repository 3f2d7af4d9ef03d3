"""The "not in our catalog" study's parts: the weighted AUROC its intervals resample, the disjoint halves of
the out-of-catalog products, the measures' product-clustered intervals, and untrained products kept in the pool
(a shop's products added after training) on a real cascade."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from snapsearch.data.dataset import LabelMaps
from snapsearch.evaluation.rejection import (
    Photos,
    _measure,
    kept_in_pool,
    rejection_study,
    split_halves,
    weighted_auroc,
)
from snapsearch.evaluation.studies_report import rejection_section
from snapsearch.runtime.batch import BatchIO
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import label_indices

from .conftest import run_manifest


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


def test_kept_in_pool_is_a_seeded_share_that_leaves_two_out() -> None:
    kept, out = kept_in_pool([3, 9, 4, 12, 7, 20], share=0.34, seed=0)
    assert len(kept) == 2 and len(out) == 4 and sorted([*kept, *out]) == [3, 4, 7, 9, 12, 20]
    assert kept.tolist() == kept_in_pool([3, 9, 4, 12, 7, 20], share=0.34, seed=0)[0].tolist()
    assert len(kept_in_pool([3, 9, 4], share=0.01, seed=0)[0]) == 1  # a share above 0 keeps one at least
    assert len(kept_in_pool([3, 9, 4, 12, 7, 20], share=0.0, seed=0)[0]) == 0
    assert len(kept_in_pool([3, 9, 4], share=0.9, seed=0)[1]) == 2  # two always leave the catalog
    with pytest.raises(ValueError, match="none to keep"):
        kept_in_pool([3, 9], share=0.5, seed=0)
    with pytest.raises(ValueError, match="0 <= share < 1"):
        kept_in_pool([3, 9, 4], share=1.0, seed=0)


def test_untrained_products_kept_in_the_pool_are_queried_and_measured_apart(smoke_run: Path) -> None:
    """One product of each partition plays a fully unseen one: a third of them stays in the pool, the rest
    leave it in two halves. The kept products' test photos are in-catalog queries, measured apart against the
    out-of-catalog ones; their validation photos choose no threshold; the report names them."""
    cascade = Cascade.from_run(smoke_run)
    labels = LabelMaps.load(smoke_run / "labels.json")
    manifest = run_manifest(smoke_run)
    io = BatchIO(32, 0, 40_000_000, True)

    def photos(split: str) -> Photos:
        frame = manifest[(manifest["domain"] == "query") & (manifest["split"] == split)]
        out = cascade.infer_frame(frame, labels, io, classify=True, what=f"{split} photos")
        return Photos(out.embeddings, out.probs, label_indices(frame.loc[out.rows], labels)[1])

    val, test = photos("val"), photos("test")
    partitions = cascade.index.item_partition
    unseen = [int(cascade.index.item_product[np.flatnonzero(partitions == p)[0]]) for p in np.unique(partitions)]
    boot = {"unit": "product", "resamples": 200, "seed": 0}
    common = {"unseen": unseen, "holdout_fraction": 0.33, "seed": 0, "bootstrap": boot}
    study = rejection_study(cascade, ["global", "top1"], val, test, untrained_in_pool=0.34, **common)
    names = [p.product_id for p in cascade.products]
    kept = {names.index(p) for p in study["untrained_in_pool"]}
    out = {names.index(p) for half in study["held_out_products"].values() for p in half}
    assert len(kept) == 2 and len(out) == 4 and kept | out == set(unseen) and not kept & out
    assert study["emptied_partition_queries"] == {"val": 0, "test": 0}
    for r in study["strategies"].values():
        apart = r["test_untrained"]
        assert apart["n_in_catalog"] == np.isin(test.products, list(kept)).sum() > 0
        assert apart["n_out_of_catalog"] == r["test"]["n_out_of_catalog"] > 0
        assert r["test"]["n_in_catalog"] == (~np.isin(test.products, list(out))).sum()  # kept ones included
        assert r["val"]["n_in_catalog"] == (~np.isin(val.products, list(unseen))).sum()  # kept ones choose nothing
        assert set(apart["intervals"]) == {"out_of_catalog_rejected", "in_catalog_wrongly_rejected", "auroc"}
    table = "\n".join(rejection_section(study))
    assert "2 fully unseen products no model trained on" in table and "AUROC, untrained vs out" in table
    plain = rejection_study(cascade, ["global"], val, test, untrained_in_pool=0.0, **common)
    assert plain["untrained_in_pool"] == [] and "test_untrained" not in plain["strategies"]["global"]
    assert "untrained vs out" not in "\n".join(rejection_section(plain))
    with pytest.raises(ValueError, match="mode=all"):
        rejection_study(cascade, ["global"], val, test, untrained_in_pool=0.34, **{**common, "unseen": []})
