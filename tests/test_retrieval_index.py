"""PartitionedIndex: exact results, partition merging, fallbacks, save/load round trips, refusals."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from snapsearch.retrieval import IndexFormatError, IndexMismatchError, PartitionedIndex
from snapsearch.retrieval.faiss_factory import apply_search_params, build_index, l2_normalize, train_index

DIM = 16
BIG = 120  # items in each of the three large partitions
SMALL = 6  # items in the small partition (too few to train IVF / PQ)
N_PARTITIONS = 5  # partition 4 stays empty
CHECKSUM = "a" * 64
Chunks = Callable[[], Iterator[np.ndarray]]


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


# ---------------------------------------------------------------------------- streaming builds
STREAM_SIZES = [900, 600, 380, 100, 20]  # uneven partitions; 20 items still train IVF1
STREAM_CHUNKS = [1, 0, 333, 700, 500, 466]  # uneven, one empty: 2000 rows


@pytest.fixture(scope="module")
def stream_pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2000 clustered embeddings (product clusters inside category clusters), partitions interleaved."""
    rng = np.random.default_rng(3)
    centers = 2.0 * rng.standard_normal((len(STREAM_SIZES), DIM))
    parts = rng.permutation(np.repeat(np.arange(len(STREAM_SIZES)), STREAM_SIZES))
    product_of = rng.integers(0, 40, len(parts))
    product_centers = centers[:, None] + rng.standard_normal((len(STREAM_SIZES), 40, DIM))
    x = product_centers[parts, product_of] + 0.3 * rng.standard_normal((len(parts), DIM))
    return x.astype(np.float32), parts, parts * 40 + product_of


def _chunked(x: np.ndarray, sizes: list[int] = STREAM_CHUNKS) -> tuple[list[int], Chunks]:
    """A chunks() callable over ``x`` split into ``sizes`` rows, and the list counting its calls."""
    calls: list[int] = []
    bounds = np.cumsum([0, *sizes])

    def chunks() -> Iterator[np.ndarray]:
        calls.append(1)
        return (x[a:b] for a, b in itertools.pairwise(bounds))

    return calls, chunks


def _stream(pool: tuple[np.ndarray, np.ndarray, np.ndarray], chunks: Chunks, **kwargs: object) -> PartitionedIndex:
    _, parts, products = pool
    return PartitionedIndex.build_streaming(chunks, parts, products, n_partitions=6, **kwargs)  # type: ignore[arg-type]


def _all_hits(index: PartitionedIndex, queries: np.ndarray) -> list:
    routes = [[int(i) % 5, (int(i) + 2) % 6] for i in range(len(queries))]
    return [*index.search_global(queries, 10), *index.search_partitions(queries, routes, 10)]


@pytest.mark.parametrize("factory", ["Flat", "IVF{nlist},Flat"])
def test_streaming_equals_in_memory_build(stream_pool, factory: str) -> None:
    x, parts, products = stream_pool
    queries = x[::40] + 0.05
    calls, chunks = _chunked(x)
    streamed = _stream(stream_pool, chunks, factory=factory, nprobe=3)
    whole = PartitionedIndex.build(x, parts, products, n_partitions=6, factory=factory, nprobe=3)
    assert len(calls) == (1 if factory == "Flat" else 2)
    for a, b in zip(_all_hits(streamed, queries), _all_hits(whole, queries), strict=True):
        np.testing.assert_array_equal(a.item_ids, b.item_ids)
        np.testing.assert_array_equal(a.scores, b.scores)
    assert streamed.describe() == whole.describe()
    # ...and both equal a single faiss index trained and filled on the whole array (the pre-streaming build).
    alone = build_index(l2_normalize(x), factory, "ip").index
    apply_search_params(alone, 3, None)
    scores, ids = alone.search(l2_normalize(queries), 10)
    for hits, i, s in zip(whole.search_global(queries, 10), ids, scores, strict=True):
        assert hits.item_ids.tolist() == i.tolist()
        np.testing.assert_allclose(hits.scores, s, rtol=1e-6)


def test_streaming_small_train_sample_still_finds_everything(stream_pool, monkeypatch) -> None:
    x, parts, _ = stream_pool
    trained: dict[int, np.ndarray] = {}

    def spy(sample: np.ndarray, factory: str, metric: str, n_total: int | None = None):
        trained[int(n_total)] = sample  # type: ignore[arg-type]  # sub-index sizes are distinct here
        return train_index(sample, factory, metric, n_total)  # type: ignore[arg-type]

    monkeypatch.setattr("snapsearch.retrieval.index_build.train_index", spy)
    calls, chunks = _chunked(x)
    index = _stream(stream_pool, chunks, factory="IVF{nlist},Flat", nprobe=64, train_sample=200)
    assert len(calls) == 2 and not index.fallbacks
    assert sorted(trained) == sorted([len(x), *STREAM_SIZES])  # the global index and every partition

    # Each sub-index trained on <= 200 of its own members, drawn in pool order, but sized by its full count.
    unit = l2_normalize(x)
    row_of = {row.tobytes(): i for i, row in enumerate(unit)}
    for n_total, sample in trained.items():
        rows = np.array([row_of[r.tobytes()] for r in sample])
        assert len(rows) == min(n_total, 200) and np.all(np.diff(rows) > 0)
        if n_total < len(x):
            assert np.all(parts[rows] == parts[rows[0]]) and np.sum(parts == parts[rows[0]]) == n_total
    assert faiss.extract_index_ivf(index._global).nlist == 51  # sized for 2000 vectors; 200 would give 5
    assert index._global.ntotal == len(x)
    assert [index._partitions[p].ntotal for p in range(5)] == STREAM_SIZES

    # nprobe covers every list: search must find the exact neighbours, through the local -> pool id maps.
    queries = x[::20] + 0.05
    sims = _cosine(queries, x)
    routes = [[int(parts[i])] for i in range(0, len(x), 20)]
    recalls = []
    for q, (g, r) in enumerate(
        zip(index.search_global(queries, 10), index.search_partitions(queries, routes, 10), strict=True)
    ):
        allowed = np.flatnonzero(parts == routes[q][0])
        exact_g = np.argsort(-sims[q])[:10]
        exact_r = allowed[np.argsort(-sims[q, allowed])][:10]
        recalls += [len(set(g.item_ids) & set(exact_g)) / 10, len(set(r.item_ids) & set(exact_r)) / 10]
    assert np.mean(recalls) >= 0.99


def test_streaming_sample_depends_on_seed_only(stream_pool) -> None:
    x = stream_pool[0]
    queries = x[::40] + 0.05
    kw = {"factory": "IVF{nlist},Flat", "nprobe": 2, "train_sample": 300}
    a, b, c = (_stream(stream_pool, _chunked(x)[1], seed=s, **kw) for s in (0, 0, 1))
    ids = [[h.item_ids.tolist() for h in _all_hits(ix, queries)] for ix in (a, b, c)]
    assert ids[0] == ids[1]
    centroids = [faiss.extract_index_ivf(ix._global).quantizer.reconstruct_n(0, 51) for ix in (a, c)]
    assert not np.array_equal(*centroids)  # another seed draws another training sample


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF{nlist},Flat"])
def test_streaming_reads_chunks_once_unless_training(stream_pool, factory: str) -> None:
    calls, chunks = _chunked(stream_pool[0])
    index = _stream(stream_pool, chunks, factory=factory)
    assert len(calls) == (2 if factory.startswith("IVF") else 1)
    assert index.n_items == index._global.ntotal == len(stream_pool[0])


@pytest.mark.parametrize("factory", ["Flat", "IVF{nlist},Flat"])
def test_streaming_rejects_wrong_row_counts_and_bad_chunks(stream_pool, factory: str) -> None:
    x = stream_pool[0]
    with pytest.raises(ValueError, match=r"hold 1534 rows, but item_partition has 2000 items"):
        _stream(stream_pool, _chunked(x, STREAM_CHUNKS[:-1])[1], factory=factory)
    more = np.concatenate([x, x[:10]])
    with pytest.raises(ValueError, match=r"at least 2010 rows, but item_partition has 2000 items"):
        _stream(stream_pool, _chunked(more, [*STREAM_CHUNKS, 10])[1], factory=factory)
    bad = x.copy()
    bad[1500, 3] = np.nan
    with pytest.raises(ValueError, match=r"chunk 4 \(pool rows 1034..1533\) contains NaN"):
        _stream(stream_pool, _chunked(bad)[1], factory=factory)
    with pytest.raises(ValueError, match=r"chunk 1 has shape \(3, 8\)"):
        _stream(stream_pool, lambda: [x[:5], x[5:8, :8], x[8:]], factory=factory)
    with pytest.raises(ValueError, match="one entry per embedding"):
        PartitionedIndex.build_streaming(_chunked(x)[1], stream_pool[1], stream_pool[2][:-1])
