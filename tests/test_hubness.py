"""The hubness correction: densities as the mean of the k nearest reference photos' cosines, a hub that stops
attracting a photo-less product's photo, the same ranking through the Cascade as a direct computation, a
bundle that ships its reference and an index with densities, live additions that get theirs, and an index
without densities that turns the correction off (logged)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import snapsearch.retrieval.hubness as hubness_module
from snapsearch.retrieval import GlobalSearch, PartitionedIndex, rank
from snapsearch.retrieval.hubness import DENSITY, HubCorrection, HubnessError, HubReference
from snapsearch.search.cascade import Cascade
from snapsearch.search.hubness import HubnessOptions
from snapsearch.search.live import LiveCatalog
from snapsearch.search.prototype_shift import catalog_vectors
from snapsearch.utils.layout import BundleDir
from tests.conftest import run_manifest

OPTIONS = HubnessOptions(weight=0.5, depth=100, neighbours=3, reference_photos=1000, seed=0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_density_is_the_mean_cosine_to_the_k_nearest_reference_photos(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    photos = rng.normal(size=(50, 8))
    ref = HubReference.from_photos(photos, k=5)
    items = rng.normal(size=(7, 8))
    expected = np.sort(_unit(items) @ _unit(photos).T, axis=1)[:, -5:].mean(axis=1)
    np.testing.assert_allclose(ref.density(items), expected, rtol=1e-5)
    monkeypatch.setattr(hubness_module, "BLOCK", 3)  # blocks of rows give the same densities
    np.testing.assert_allclose(ref.densities([items[:4], items[4:]]), expected, rtol=1e-5)
    with pytest.raises(HubnessError, match="dimension"):
        ref.density(rng.normal(size=(2, 9)))
    with pytest.raises(HubnessError, match="at least one photo"):
        HubReference.from_photos(np.zeros((0, 8)), k=5)


def test_a_hub_stops_attracting_the_photo_of_a_product_known_from_its_catalog_image_only() -> None:
    """Product 0's catalog image sits among its many training photos; product 1 has none. A photo of product 1
    that lies a little nearer product 0's image goes to product 1 once the densities are discounted, and a
    photo of product 0 still finds product 0."""
    rng = np.random.default_rng(1)
    e = np.eye(16)
    catalog = np.stack([e[0], e[1], e[2]])
    photos = _unit(e[0] + 0.3 * rng.normal(size=(40, 16)))  # product 0's shopper photos only
    ref = HubReference.from_photos(photos, k=10)
    index = PartitionedIndex.build(catalog, [0, 0, 0], np.array([0, 1, 2]), metadata={DENSITY: ref.density(catalog)})
    assert ref.density(catalog)[0] > ref.density(catalog)[1] + 0.4
    photo_of_1 = _unit(0.62 * e[0] + 0.58 * e[1] + 0.1 * e[3])
    photo_of_0 = _unit(e[0] + 0.2 * e[1] + 0.1 * e[4])
    probs = np.ones((2, 1))
    plain, _ = rank(GlobalSearch(), index, np.stack([photo_of_1, photo_of_0]), probs, k=3)
    corrected, _ = rank(
        GlobalSearch(), index, np.stack([photo_of_1, photo_of_0]), probs, k=3, hubness=HubCorrection(0.5, 10)
    )
    assert [r.products[0] for r in plain] == [0, 0]
    assert [r.products[0] for r in corrected] == [1, 0]
    density = ref.density(catalog)
    np.testing.assert_allclose(corrected[0].scores[0], photo_of_1 @ e[1] - 0.5 * density[1], rtol=1e-5)
    with pytest.raises(HubnessError, match="column"):
        rank(
            GlobalSearch(),
            PartitionedIndex.build(catalog, [0, 0, 0], np.arange(3)),
            photo_of_1,
            probs[:1],
            3,
            hubness=HubCorrection(0.5, 10),
        )


def test_the_cascade_ranks_as_the_corrected_scores_say(smoke_run: Path) -> None:
    corrected = Cascade.from_run(smoke_run, hubness=OPTIONS)
    assert DENSITY in corrected.index.metadata and corrected.hubness is not None
    manifest = run_manifest(smoke_run)
    val = manifest[(manifest["domain"] == "query") & (manifest["split"] == "val")]
    assert corrected.info()["hubness"] == {
        "weight": 0.5,
        "depth": 100,
        "neighbours": 3,
        "reference_photos": len(val),
    }
    # every item's plain score from the store, discounted and reduced to each product's best item here
    test = manifest[(manifest["domain"] == "query") & (manifest["split"] == "test")]["path"].iloc[:12].tolist()
    emb = corrected.embed_images(test)
    probs = np.full((len(test), corrected.index.n_partitions), 1.0 / corrected.index.n_partitions)
    ranked, _ = corrected.rank(emb, probs, 5, "global")
    index = corrected.index
    density, products = index.metadata[DENSITY], index.item_product
    changed = 0
    for ranking, hits in zip(ranked, index.search_global(emb, index.n_items), strict=True):
        scores = hits.scores - 0.5 * density[hits.item_ids]
        best: dict[int, float] = {}
        for item, score in sorted(zip(hits.item_ids.tolist(), scores.tolist(), strict=True), key=lambda t: -t[1]):
            best.setdefault(int(products[item]), score)
        assert ranking.products == list(best)[:5]
        np.testing.assert_allclose(ranking.scores, list(best.values())[:5], rtol=1e-5, atol=1e-6)
        plain = list(dict.fromkeys(products[hits.item_ids].tolist()))[:5]
        changed += plain != ranking.products
    assert changed > 0, "the correction reordered none of 12 photos' top 5: it is not applied"


def test_a_bundle_ships_its_reference_and_live_additions_get_densities(
    smoke_bundle: Path, smoke_run: Path, tmp_path: Path
) -> None:
    bundle = BundleDir(smoke_bundle)
    assert bundle.hubness.is_file()
    cascade = Cascade.from_bundle(smoke_bundle, hubness=OPTIONS)
    assert cascade.hubness is not None and DENSITY in cascade.index.metadata
    reference = cascade.hub_reference
    assert reference is not None and reference.k == 10  # export's conf/hubness, not the opener's
    manifest = run_manifest(smoke_run)
    photos = manifest[(manifest["domain"] == "query") & (manifest["split"] == "test")]["path"].iloc[:2]
    images = [Path(p).read_bytes() for p in photos]
    live = LiveCatalog(cascade, tmp_path / "changes")
    live.add("hub-new", "a new product", cascade.products.categories[0], images)
    added = live.index.metadata[DENSITY][-2:]
    indexed = catalog_vectors(cascade.prototype_shift, cascade.embed_images(images), 0, "hub-new")
    np.testing.assert_allclose(added, reference.density(indexed), rtol=1e-4)  # of the vectors as indexed
    live.close()
    # the change log replays the same densities on restart, with the correction off too
    again = LiveCatalog(Cascade.from_bundle(smoke_bundle), tmp_path / "changes")
    np.testing.assert_allclose(again.index.metadata[DENSITY][-2:], added, rtol=1e-6)
    again.close()


def test_an_index_without_densities_turns_the_correction_off(
    smoke_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = Cascade.from_run(smoke_run).index.save(tmp_path / "index")
    with caplog.at_level(logging.WARNING):
        cascade = Cascade.from_run(smoke_run, index_path=saved, hubness=OPTIONS)
    assert cascade.hubness is None and cascade.info()["hubness"] is None
    assert "no hubness densities" in caplog.text
