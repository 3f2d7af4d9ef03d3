"""The prototype shift: offsets measured as a trained product's photo mean minus its catalog image, its
category's mean offset for a product without photos (the global mean for a category without trained
products), a photo-less product's photo that finds its product once the catalog is shifted, and a bundle that
ships the offsets, indexes the shifted vectors and moves a product added live alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snapsearch.data.dataset import LabelMaps
from snapsearch.retrieval import GlobalSearch, PartitionedIndex, rank
from snapsearch.retrieval.prototype_shift import PrototypeShift, PrototypeShiftError
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import label_indices
from snapsearch.search.live import LiveCatalog
from snapsearch.search.prototype_shift import catalog_vectors
from snapsearch.utils.layout import BundleDir
from tests.conftest import run_manifest


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_offsets_and_the_vectors_they_give(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    catalog = _unit(rng.normal(size=(5, 8)))
    ids, parts = ["a", "b", "c", "d", "e"], np.array([0, 0, 0, 1, 2])  # c, e: no photos; partition 2: none trained
    photo_ids = ["a"] * 4 + ["b"] * 3 + ["d"] * 5
    photos = _unit(rng.normal(size=(12, 8)) + 2.0)
    shift = PrototypeShift.from_embeddings(
        catalog, ids, parts, photos, photo_ids, 3, trained_weight=1.0, untrained_weight=0.5, fingerprint="f"
    )
    own = {p: _unit(photos[np.array(photo_ids) == p].mean(0)) - catalog[ids.index(p)] for p in "abd"}
    assert shift.products == ("a", "b", "d")
    np.testing.assert_allclose(shift.category[0], (own["a"] + own["b"]) / 2, rtol=1e-5)
    np.testing.assert_allclose(shift.category[1], own["d"], rtol=1e-5)
    np.testing.assert_allclose(shift.category[2], (own["a"] + own["b"] + own["d"]) / 3, rtol=1e-5)
    vectors = shift.apply(catalog, parts, ids)
    # a trained product at weight 1 lands on its photos' mean; the others move by half their category's offset
    np.testing.assert_allclose(vectors[0], _unit(photos[:4].mean(0)), rtol=1e-5)
    np.testing.assert_allclose(vectors[2], _unit(catalog[2] + 0.5 * shift.category[0]), rtol=1e-5)
    np.testing.assert_allclose(vectors[4], _unit(catalog[4] + 0.5 * shift.category[2]), rtol=1e-5)
    assert shift.info() == {"trained_weight": 1.0, "untrained_weight": 0.5, "trained_products": 3}

    shift.save(tmp_path / "shift.npz")
    again = PrototypeShift.load(tmp_path / "shift.npz", "f")
    np.testing.assert_allclose(again.apply(catalog, parts, ids), vectors, rtol=1e-6)
    with pytest.raises(PrototypeShiftError, match="another embedder"):
        PrototypeShift.load(tmp_path / "shift.npz", "g")
    with pytest.raises(PrototypeShiftError, match="size"):
        shift.apply(np.zeros((1, 9)), np.array([0]), ["a"])
    with pytest.raises(PrototypeShiftError, match="nothing to learn"):
        PrototypeShift.from_embeddings(
            catalog, ids, parts, photos, ["z"] * 12, 3, trained_weight=1.0, untrained_weight=1.0, fingerprint="f"
        )


def test_a_photo_less_products_photo_finds_it_once_the_catalog_is_shifted() -> None:
    """One category: five trained products whose catalog images training pulled part of the way towards the
    shopper-photo domain, one photo-less product whose catalog image stayed in the catalog domain. Its photo
    lies nearer the trained products' images (the hub effect); shifted by the trained products' mean offset,
    its image wins, and the trained products' photos still find theirs."""
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.normal(size=(64, 64)))[0]
    category, domain, identity = basis[0], basis[1], basis[2:8]  # identity[5]: the photo-less product
    catalog = np.stack(
        [_unit(0.8 * category + 0.6 * v + (0.6 * domain if i < 5 else 0)) for i, v in enumerate(identity)]
    )
    photos = _unit(0.8 * category + 0.6 * identity[:, None] + 1.2 * domain + 0.03 * rng.normal(size=(6, 10, 64)))
    train, queries = photos[:, :8], photos[:, 8:].reshape(-1, 64)
    truth = np.repeat(np.arange(6), 2)
    shift = PrototypeShift.from_embeddings(
        catalog,
        [str(i) for i in range(6)],
        np.zeros(6, dtype=np.int64),
        train[:5].reshape(-1, 64),
        [str(i) for i in range(5) for _ in range(8)],
        1,
        trained_weight=0.5,
        untrained_weight=1.0,
        fingerprint="f",
    )
    probs = np.ones((len(queries), 1))

    def top(vectors: np.ndarray) -> np.ndarray:
        index = PartitionedIndex.build(vectors, np.zeros(6, dtype=np.int64), np.arange(6))
        ranked, _ = rank(GlobalSearch(), index, queries, probs, k=1)
        return np.array([r.products[0] for r in ranked])

    before = top(catalog)
    after = top(shift.apply(catalog, np.zeros(6, dtype=np.int64), [str(i) for i in range(6)]))
    assert (before[truth == 5] != 5).all(), "the setting lost its hub: the photo-less photos already find theirs"
    assert (after[truth == 5] == 5).all()
    assert (after[truth < 5] == truth[truth < 5]).all()


def test_a_bundle_ships_the_shift_and_moves_live_additions_alike(
    smoke_bundle: Path, smoke_run: Path, tmp_path: Path
) -> None:
    bundle = BundleDir(smoke_bundle)
    assert bundle.prototype_shift.is_file()  # export.py's conf/prototype_shift is on by default
    cascade = Cascade.from_bundle(smoke_bundle)
    shift = cascade.prototype_shift
    assert shift is not None and cascade.info()["prototype_shift"] == shift.info()
    manifest = run_manifest(smoke_run)
    catalog = manifest[manifest["domain"] == "catalog"].drop_duplicates("image_id")
    # the shipped index holds the shifted vectors: each finds itself at cosine 1
    sample = catalog.iloc[:6]
    partitions, _ = label_indices(sample, LabelMaps.load(bundle.labels))
    raw = cascade.embed_images(sample["path"].tolist())
    expected = shift.apply(raw, partitions, sample["product_id"].tolist())
    assert not np.allclose(expected, raw, atol=1e-3)
    hits = cascade.index.search_global(expected, 1)
    np.testing.assert_allclose([h.scores[0] for h in hits], 1.0, atol=1e-3)

    photos = manifest[(manifest["domain"] == "query") & (manifest["split"] == "test")]["path"].iloc[:2]
    images = [Path(p).read_bytes() for p in photos]
    live = LiveCatalog(cascade, tmp_path / "changes")
    live.add("shift-new", "a new product", cascade.products.categories[0], images)
    moved = catalog_vectors(shift, cascade.embed_images(images), 0, "shift-new")
    assert not np.allclose(moved, cascade.embed_images(images), atol=1e-3)  # a new product is moved
    hits = live.index.search_global(moved, 1)  # and indexed moved: each vector finds itself
    np.testing.assert_allclose([h.scores[0] for h in hits], 1.0, atol=1e-3)
    live.close()
