"""PartitionedIndex: exact results, partition merging, fallbacks, save/load round trips, refusals."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from snapsearch.retrieval import IndexFormatError, IndexMismatchError, PartitionedIndex
from snapsearch.retrieval.faiss_factory import apply_search_params

DIM = 16
BIG = 120  # items in each of the three large partitions
SMALL = 6  # items in the small partition (too few to train IVF / PQ)
N_PARTITIONS = 5  # partition 4 stays empty
CHECKSUM = "a" * 64


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    """Tiny k-means trainings are dominated by OpenMP start-up with many threads; one keeps tests fast."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered embeddings: one cluster per partition, three images per product."""
    rng = np.random.default_rng(0)
    sizes = [BIG, BIG, BIG, SMALL]
    centers = rng.standard_normal((len(sizes), DIM))
    parts = np.repeat(np.arange(len(sizes)), sizes)
    x = (centers[parts] + 0.6 * rng.standard_normal((len(parts), DIM))).astype(np.float32)
    products = np.array([f"p{i // 3}" for i in range(len(parts))], dtype=object)
    return x, parts, products


@pytest.fixture(scope="module")
def queries(pool: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    x = pool[0]
    return (x[::37] + 0.1 * np.random.default_rng(1).standard_normal((len(x[::37]), DIM))).astype(np.float32)


def _build(pool: tuple[np.ndarray, np.ndarray, np.ndarray], **kwargs: object) -> PartitionedIndex:
    x, parts, products = pool
    return PartitionedIndex.build(x, parts, products, n_partitions=N_PARTITIONS, **kwargs)  # type: ignore[arg-type]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def test_flat_global_is_exact_cosine(pool, queries) -> None:
    index = _build(pool)
    sims = _cosine(queries, pool[0])
    for q, hits in enumerate(index.search_global(queries, 10)):
        assert hits.item_ids.tolist() == np.argsort(-sims[q], kind="stable")[:10].tolist()
        np.testing.assert_allclose(hits.scores, np.sort(sims[q])[::-1][:10], atol=1e-5)


def test_partition_search_merges_listed_partitions_by_score(pool, queries) -> None:
    index = _build(pool)
    parts = pool[1]
    routes = [[0, 2], [3], [4], [1, 3, 4]] * (len(queries) // 4) + [[0]] * (len(queries) % 4)
    sims = _cosine(queries, pool[0])
    for q, (hits, route) in enumerate(zip(index.search_partitions(queries, routes, 8), routes, strict=True)):
        allowed = np.flatnonzero(np.isin(parts, route))
        expected = allowed[np.argsort(-sims[q, allowed], kind="stable")][:8]
        assert hits.item_ids.tolist() == expected.tolist()  # partition 4 is empty: adds nothing
        assert np.all(np.diff(hits.scores) <= 0)
    with pytest.raises(ValueError, match="out of range"):
        index.search_partitions(queries[:1], [[N_PARTITIONS]], 3)


def test_l2_scores_are_negated_squared_distances(pool, queries) -> None:
    index = _build(pool, metric="l2")
    d2 = ((queries[:, None, :] - pool[0][None]) ** 2).sum(-1)
    hits = index.search_global(queries, 5)[0]
    assert hits.item_ids.tolist() == np.argsort(d2[0])[:5].tolist()
    np.testing.assert_allclose(hits.scores, -np.sort(d2[0])[:5], rtol=1e-4)


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF4,PQ4np"])
def test_small_partitions_fall_back_to_flat(pool, queries, factory, caplog, tmp_path) -> None:
    with caplog.at_level(logging.WARNING, logger="snapsearch.retrieval.index"):
        index = _build(pool, factory=factory, nprobe=4)
    fell_back = set(index.fallbacks)
    assert "partition_0003" in fell_back  # 6 items cannot train 32 lists nor 256 PQ centroids
    assert "partition_0004" not in fell_back  # empty: no sub-index at all
    if factory.startswith("IVF32,Flat"):
        assert fell_back == {"partition_0003"}  # 120 items train 32 lists
    assert "fell back to Flat" in caplog.text
    hits = index.search_partitions(queries[:2], [[3], [0, 3]], 4)
    assert set(pool[1][hits[0].item_ids]) == {3}
    assert json.loads((index.save(tmp_path / "ix") / "index.json").read_text())["fallbacks"] == index.fallbacks


def test_nprobe_covering_all_lists_is_exact(pool, queries) -> None:
    flat = _build(pool).search_global(queries, 10)
    ivf = _build(pool, factory="IVF8,Flat", nprobe=8).search_global(queries, 10)
    for a, b in zip(flat, ivf, strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist()


def test_search_params_reach_ivf_and_hnsw_inside_wrappers() -> None:
    x = np.random.default_rng(0).standard_normal((64, DIM)).astype(np.float32)
    hnsw = faiss.index_factory(DIM, "PCA8,HNSW8")
    ivf = faiss.index_factory(DIM, "IVF4_HNSW8,Flat")
    ivf.train(x)
    for index in (hnsw, ivf, faiss.index_factory(DIM, "Flat")):
        apply_search_params(index, nprobe=3, ef_search=77)  # Flat has neither: nothing to set, no error
    pt = faiss.downcast_index(hnsw)
    assert faiss.downcast_index(pt.index).hnsw.efSearch == 77
    assert faiss.extract_index_ivf(ivf).nprobe == 3
    assert faiss.downcast_index(faiss.extract_index_ivf(ivf).quantizer).hnsw.efSearch == 77


@pytest.mark.parametrize(
    ("factory", "params"), [("Flat", {}), ("IVF8,Flat", {"nprobe": 2}), ("HNSW16", {"ef_search": 32})]
)
def test_save_load_round_trip_is_identical(pool, queries, tmp_path: Path, factory: str, params: dict) -> None:
    metadata = {"path": np.array([f"img{i}.jpg" for i in range(len(pool[0]))])}
    index = _build(pool, factory=factory, embedder_checksum=CHECKSUM, metadata=metadata, **params)
    routes = [[int(p) % 4, 3] for p in range(len(queries))]
    before = (index.search_global(queries, 10), index.search_partitions(queries, routes, 10))
    index.save(tmp_path / "ix")
    index.save(tmp_path / "ix")  # overwriting an existing index folder works
    loaded = PartitionedIndex.load(tmp_path / "ix", expected_embedder_checksum=CHECKSUM, expected_dim=DIM)
    after = (loaded.search_global(queries, 10), loaded.search_partitions(queries, routes, 10))
    for old, new in zip([*before[0], *before[1]], [*after[0], *after[1]], strict=True):
        np.testing.assert_array_equal(old.item_ids, new.item_ids)
        np.testing.assert_array_equal(old.scores, new.scores)
    assert loaded.item_product.tolist() == pool[2].tolist()
    assert loaded.metadata["path"].tolist() == metadata["path"].tolist()
    assert loaded.describe() == index.describe()
    info = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert info["factory"] == factory and info["dim"] == DIM and info["embedder_checksum"] == CHECKSUM
    assert info["partition_sizes"] == {"0": BIG, "1": BIG, "2": BIG, "3": SMALL, "4": 0}
    assert not list(tmp_path.glob(".ix*"))  # no temporary folders left behind


def test_load_refuses_other_embedder_and_dim(pool, tmp_path: Path) -> None:
    _build(pool, embedder_checksum=CHECKSUM).save(tmp_path / "ix")
    with pytest.raises(IndexMismatchError, match=rf"{CHECKSUM}.*{'b' * 64}.*evaluate\.py") as err:
        PartitionedIndex.load(tmp_path / "ix", expected_embedder_checksum="b" * 64)
    assert isinstance(err.value, ValueError)
    with pytest.raises(IndexMismatchError, match="16-d"):
        PartitionedIndex.load(tmp_path / "ix", expected_dim=DIM * 2)
    with pytest.raises(IndexMismatchError, match="16-d"):
        PartitionedIndex.load(tmp_path / "ix").search_global(np.zeros((1, DIM + 1), np.float32), 3)


def test_load_missing_or_corrupt_folder(pool, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no index folder"):
        PartitionedIndex.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match=r"index\.json is missing"):
        PartitionedIndex.load(tmp_path / "empty")
    ix = _build(pool).save(tmp_path / "ix")
    (ix / "partition_0001.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(IndexFormatError, match="corrupt"):
        PartitionedIndex.load(ix)
    (ix / "partition_0001.faiss").unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        PartitionedIndex.load(ix)
    (ix / "index.json").write_text("{ truncated")
    with pytest.raises(IndexFormatError, match="corrupt"):
        PartitionedIndex.load(ix)


def test_build_rejects_bad_inputs(pool, tmp_path: Path) -> None:
    x, parts, products = pool
    with pytest.raises(ValueError, match="index_factory"):
        PartitionedIndex.build(x, parts, products, factory="NoSuchIndex")
    with pytest.raises(ValueError, match="metric"):
        PartitionedIndex.build(x, parts, products, metric="cosine")
    with pytest.raises(ValueError, match="one entry per embedding"):
        PartitionedIndex.build(x, parts[:-1], products)
    with pytest.raises(ValueError, match="item_partition"):
        PartitionedIndex.build(x, parts, products, n_partitions=2)
    odd = np.array([(i,) for i in range(len(x))] + [None], dtype=object)[:-1]
    with pytest.raises(TypeError, match="without pickle"):
        PartitionedIndex.build(x, parts, odd).save(tmp_path / "ix")


def test_nlist_placeholder_sizes_each_index() -> None:
    """One config string gives every partition a coarse quantiser that fits its size."""
    from snapsearch.retrieval.faiss_factory import sized_factory

    assert sized_factory("IVF{nlist},Flat", 10_000) == "IVF256,Flat"  # 4 * sqrt(n)
    assert sized_factory("IVF{nlist},PQ8np", 200) == "IVF5,PQ8np"  # >= 39 training points per list
    assert sized_factory("IVF{nlist},Flat", 10) == "IVF1,Flat"
    assert sized_factory("HNSW32", 10) == "HNSW32"
