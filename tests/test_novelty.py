"""The novelty bonus: the ramp set on the validation photos' quantiles, a far photo that lifts an untrained
product over the trained one it lands nearer (and a near one that does not), the reference's file, the same
ranking through the Cascade as a direct computation (a product added live counts as untrained), and a bundle
that ships its reference. The novelty temperature: the calibrated logits divided by 1 + slope x ramp, on
one-trunk runtimes only (the multi-task network's end to end: tests/test_multitask.py)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from snapsearch.retrieval import GlobalSearch, PartitionedIndex, rank
from snapsearch.retrieval.hubness import DENSITY, HubCorrection
from snapsearch.retrieval.novelty import NoveltyBonus, NoveltyError, NoveltyReference, NoveltyTemperature
from snapsearch.runtime.tempered import NoveltyTemperedRuntime
from snapsearch.search.cascade import Cascade
from snapsearch.search.live import LiveCatalog
from snapsearch.search.novelty import NoveltyOptions
from snapsearch.utils.layout import BundleDir
from tests.conftest import run_manifest

OPTIONS = NoveltyOptions(
    weight=0.3, depth=100, neighbours=3, quantiles=(0.1, 0.5), photos_per_product=50, validation_photos=1000, seed=0
)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_the_ramp_rises_from_the_hi_quantile_to_the_lo_quantile_of_the_validation_photos() -> None:
    rng = np.random.default_rng(0)
    photos = _unit(rng.normal(size=(60, 8)))
    validation = _unit(photos[:30] + 0.3 * rng.normal(size=(30, 8)))
    ref = NoveltyReference.calibrate(photos, ["a"] * 30 + ["b"] * 30, validation, k=4, quantiles=(0.1, 0.5))
    novelty = np.sort(validation @ photos.T, axis=1)[:, -4:].mean(axis=1)
    np.testing.assert_allclose(ref.novelty(validation), novelty, rtol=1e-5)
    np.testing.assert_allclose([ref.lo, ref.hi], np.quantile(novelty, [0.1, 0.5]), rtol=1e-5)
    assert ref.products == ("a", "b")
    ramp = ref.ramp(validation)
    np.testing.assert_allclose(ramp, np.clip((ref.hi - novelty) / (ref.hi - ref.lo), 0, 1), atol=1e-5)
    assert (ramp[novelty >= ref.hi] == 0).all() and (ramp[novelty <= ref.lo] == 1).all()
    assert 0.4 <= (ramp == 0).mean() <= 0.6  # half the validation photos are above the median: no bonus
    with pytest.raises(NoveltyError, match="quantiles"):
        NoveltyReference.calibrate(photos, ["a"] * 60, validation, k=4, quantiles=(0.5, 0.5))
    with pytest.raises(NoveltyError, match="no validation photo"):
        NoveltyReference.calibrate(photos, ["a"] * 60, validation[:0], k=4, quantiles=(0.1, 0.5))
    with pytest.raises(NoveltyError, match="does not spread"):
        NoveltyReference.calibrate(photos, ["a"] * 60, validation[:1], k=4, quantiles=(0.1, 0.5))


def test_a_far_photo_lifts_an_untrained_product_and_a_near_one_does_not() -> None:
    """Product 0 was trained with photos around its catalog image; product 1 (untrained) was not. A photo of
    product 1 lands nearer product 0's image but far from every training photo: the bonus gives product 1
    the first rank. A photo of product 0 lies among the training photos and keeps its answer."""
    rng = np.random.default_rng(1)
    e = np.eye(16)
    train = _unit(e[0] + 0.1 * rng.normal(size=(40, 16)))
    validation = _unit(e[0] + 0.1 * rng.normal(size=(40, 16)))
    ref = NoveltyReference.calibrate(train, ["p0"] * 40, validation, k=5, quantiles=(0.1, 0.5))
    catalog = np.stack([e[0], e[1], e[2]])
    index = PartitionedIndex.build(catalog, [0, 0, 0], np.array([0, 1, 2]))
    bonus = NoveltyBonus.for_products(ref, 0.3, 10, ["p0", "p1"])  # position 2: past the table (added live)
    np.testing.assert_array_equal(bonus.untrained(np.array([0, 1, 2])), [False, True, True])
    photo_of_1 = _unit(0.62 * e[0] + 0.58 * e[1] + 0.1 * e[3])
    photo_of_0 = _unit(e[0] + 0.1 * e[1])
    queries, probs = np.stack([photo_of_1, photo_of_0]), np.ones((2, 1))
    ramp = ref.ramp(queries)
    assert ramp[0] == 1.0 and ramp[1] == 0.0
    plain, _ = rank(GlobalSearch(), index, queries, probs, k=3)
    lifted, _ = rank(GlobalSearch(), index, queries, probs, k=3, novelty=bonus)
    assert [r.products[0] for r in plain] == [0, 0]
    assert [r.products[0] for r in lifted] == [1, 0]
    np.testing.assert_allclose(lifted[0].scores[:2], [photo_of_1 @ e[1] + 0.3, photo_of_1 @ e[0]], rtol=1e-5)
    assert lifted[1].scores == plain[1].scores  # no bonus, nothing changes
    # after the hubness correction: the two changes add up
    hub = {DENSITY: np.array([0.5, 0.1, 0.1], np.float32)}
    both, _ = rank(
        GlobalSearch(),
        PartitionedIndex.build(catalog, [0, 0, 0], np.array([0, 1, 2]), metadata=hub),
        queries,
        probs,
        k=3,
        hubness=HubCorrection(0.5, 10),
        novelty=bonus,
    )
    np.testing.assert_allclose(both[0].scores[0], photo_of_1 @ e[1] - 0.05 + 0.3, rtol=1e-5)
    with pytest.raises(NoveltyError, match="weight"):
        NoveltyBonus.for_products(ref, -0.1, 10, ["p0"])


def test_the_reference_file_round_trips_and_refuses_another_embedder(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    photos = _unit(rng.normal(size=(20, 8)))
    ref = NoveltyReference.calibrate(photos, list("ab") * 10, _unit(photos + 0.5), 3, (0.1, 0.5), "emb-1")
    ref.save(tmp_path / "novelty.npz")
    back = NoveltyReference.load(tmp_path / "novelty.npz", "emb-1")
    assert (back.products, back.lo, back.hi, back.photos.k) == (ref.products, ref.lo, ref.hi, 3)
    np.testing.assert_allclose(back.ramp(photos), ref.ramp(photos), atol=1e-2)  # float16 photos
    with pytest.raises(NoveltyError, match="another embedder"):
        NoveltyReference.load(tmp_path / "novelty.npz", "emb-2")


def test_validation_photos_of_trained_products_only_set_the_ramp(caplog: pytest.LogCaptureFixture) -> None:
    """Photos of untrained products never set the ramp; too few of trained ones turn the bonus off (logged),
    and the source still opens."""
    rng = np.random.default_rng(3)
    train, val = _unit(rng.normal(size=(20, 8))), _unit(rng.normal(size=(12, 8)))

    class Photos:  # what NoveltyOptions.reference reads of PhotoEmbeddings
        runtime = SimpleNamespace(embedder_fingerprint="emb")

        def trained(self, manifest: object, per_product: int, seed: int) -> tuple[np.ndarray, list[str]]:
            return train, ["a"] * 10 + ["b"] * 10

        def embed(self, frame: pd.DataFrame, what: str, *, classify: bool = False) -> SimpleNamespace:
            return SimpleNamespace(rows=frame.index.to_numpy(), embeddings=val[frame.index.to_numpy()])

    products = ["a", "b", "x", "x"] * 3
    ref = OPTIONS.reference(Photos(), None, pd.DataFrame({"product_id": products}))
    assert ref is not None and ref.products == ("a", "b")
    trained_val = val[[i for i, p in enumerate(products) if p != "x"]]
    np.testing.assert_allclose([ref.lo, ref.hi], np.quantile(ref.novelty(trained_val), [0.1, 0.5]), rtol=1e-5)
    one = pd.DataFrame({"product_id": ["a", "x", "x"]})
    with caplog.at_level(logging.WARNING):
        assert OPTIONS.reference(Photos(), None, one) is None
    assert "novelty bonus is off" in caplog.text and "does not spread" in caplog.text


def test_the_cascade_ranks_as_the_bonus_says_and_a_live_product_is_untrained(smoke_run: Path, tmp_path: Path) -> None:
    cascade = Cascade.from_run(smoke_run, novelty=OPTIONS)
    bonus = cascade.novelty
    assert bonus is not None
    manifest = run_manifest(smoke_run)
    trained = set(manifest[(manifest["domain"] == "query") & (manifest["split"] == "train")]["product_id"])
    info = cascade.info()["novelty"]
    assert info["weight"] == 0.3 and info["neighbours"] == 3 and info["trained_products"] == len(trained)
    assert info["ramp"][0] < info["ramp"][1]
    test = manifest[(manifest["domain"] == "query") & (manifest["split"] == "test")]
    live = LiveCatalog(cascade, tmp_path / "changes")
    new_photos = test["path"].iloc[:2].tolist()
    live.add("novelty-new", "a new product", cascade.products.categories[0], [Path(p).read_bytes() for p in new_photos])
    new_position = cascade.products.position("novelty-new")
    assert bonus.untrained(np.array([new_position]))[0] and not bonus.untrained(np.array([0]))[0]
    # every item's plain score from the store, lifted and reduced to each product's best item here
    emb = cascade.embed_images(test["path"].iloc[:16].tolist())
    probs = np.full((len(emb), cascade.index.n_partitions), 1.0 / cascade.index.n_partitions)
    ramp = bonus.ramp(emb)
    assert (ramp > 0).sum() >= 2, "no test photo is farther than the median validation photo"
    ranked, _ = cascade.rank(emb, probs, 5, "global")
    index = live.index
    for ranking, hits, r in zip(ranked, index.search_global(emb, index.n_items), ramp, strict=True):
        products = index.item_product[hits.item_ids]
        scores = hits.scores + 0.3 * r * (products == new_position)
        best: dict[int, float] = {}
        for product, score in sorted(zip(products.tolist(), scores.tolist(), strict=True), key=lambda t: -t[1]):
            best.setdefault(int(product), score)
        assert ranking.products == list(best)[:5]
        np.testing.assert_allclose(ranking.scores, list(best.values())[:5], rtol=1e-5, atol=1e-6)
    live.close()


def test_a_bundle_ships_its_reference_and_reads_it_only_for_the_bonus(smoke_bundle: Path) -> None:
    assert BundleDir(smoke_bundle).novelty.is_file()  # export.py ships it at conf/novelty's default weight 0
    cascade = Cascade.from_bundle(smoke_bundle, novelty=OPTIONS)
    assert cascade.novelty is not None
    assert cascade.novelty.reference.photos.k == 5  # export's conf/novelty, not the opener's
    assert cascade.novelty.weight == 0.3  # the opener's weight
    plain = Cascade.from_bundle(smoke_bundle)
    assert plain.novelty is None and plain.info()["novelty"] is None
    off = Cascade.from_bundle(smoke_bundle, novelty=replace(OPTIONS, weight=0.0))  # the default: not applied
    assert off.novelty is None and off.info()["novelty"] is None


def test_the_temperature_divides_the_calibrated_logits_by_one_plus_slope_times_ramp() -> None:
    rng = np.random.default_rng(2)
    photos = _unit(rng.normal(size=(60, 8)))
    validation = _unit(photos[:30] + 0.3 * rng.normal(size=(30, 8)))
    ref = NoveltyReference.calibrate(photos, ["a"] * 30 + ["b"] * 30, validation, k=4, quantiles=(0.1, 0.5))
    queries = np.concatenate([photos[:3], _unit(rng.normal(size=(3, 8)))])  # training photos, then random ones
    logits = rng.normal(scale=3.0, size=(6, 5))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ramp = ref.ramp(queries)
    assert (ramp[:3] == 0).all() and (ramp[3:] > 0).all()
    got = NoveltyTemperature(ref, 1.5).apply(probs.astype(np.float32), queries)
    scaled = logits / (1.0 + 1.5 * ramp)[:, None]
    np.testing.assert_allclose(got, np.exp(scaled) / np.exp(scaled).sum(axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_array_equal(got.argmax(axis=1), probs.argmax(axis=1))
    assert got.dtype == np.float32
    with pytest.raises(NoveltyError, match="must be > 0"):
        NoveltyTemperature(ref, 0.0)
    with pytest.raises(NoveltyError, match="probability rows"):
        NoveltyTemperature(ref, 1.0).apply(probs, queries[:2])


def test_the_temperature_needs_a_one_trunk_runtime(smoke_run: Path) -> None:
    with pytest.raises(NoveltyError, match="one-trunk runtime"):
        Cascade.from_run(smoke_run, novelty=replace(OPTIONS, weight=0.0, temperature_slope=1.0))
    shared = Cascade.from_run(smoke_run, embedder="shared", novelty=replace(OPTIONS, weight=0.0, temperature_slope=1.0))
    assert isinstance(shared.runtime, NoveltyTemperedRuntime) and shared.novelty is None
