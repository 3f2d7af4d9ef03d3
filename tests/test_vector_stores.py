"""FAISS and Qdrant behind one interface: the same ranked products for every strategy, the same catalog
changes, and a resumable bulk load (Qdrant's embedded mode: exact search in this process)."""

from __future__ import annotations

import numpy as np
import pytest

from snapsearch.retrieval import (
    Adaptive,
    Conformal,
    Fusion,
    GlobalSearch,
    IndexMismatchError,
    Oracle,
    PartitionedIndex,
    Top1,
    TopK,
    rank,
)
from snapsearch.retrieval.qdrant_index import QdrantIndex, QdrantSpec
from snapsearch.retrieval.store import excluding, load_store, mutable

pytest.importorskip("qdrant_client")

N_PARTITIONS, DIM, N_QUERIES, K = 6, 16, 40, 5
CATEGORIES = [f"group/cat{p}" for p in range(N_PARTITIONS)]
STRATEGIES = {
    "global": GlobalSearch(),
    "top1": Top1(),
    "topk": TopK(2),
    "adaptive": Adaptive(p=0.9, min_confidence=0.3),
    "fusion": Fusion(lam=0.2, candidates=30),
    "conformal": Conformal(coverage=0.9, max_set_size=3, threshold=0.1),
    "oracle": Oracle(),
}


@pytest.fixture(scope="module")
def pool() -> dict[str, np.ndarray]:
    return make_pool()


def make_pool() -> dict[str, np.ndarray]:
    """Clustered vectors with a skewed partition mix; several images per product."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((N_PARTITIONS, DIM))
    partition = rng.choice(N_PARTITIONS, size=500, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    vectors = centres[partition] + 0.9 * rng.standard_normal((500, DIM))
    product = np.arange(500) // 2 + 1000 * partition  # two images per product, products within a partition
    truth = rng.choice(500, size=N_QUERIES)
    queries = vectors[truth] + 0.3 * rng.standard_normal((N_QUERIES, DIM))
    logits = rng.standard_normal((N_QUERIES, N_PARTITIONS)) + 3 * np.eye(N_PARTITIONS)[partition[truth]]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return {
        "vectors": vectors.astype(np.float32),
        "partition": partition,
        "product": product,
        "queries": queries.astype(np.float32),
        "probs": probs,
        "true_partition": partition[truth],
    }


def _faiss(pool) -> PartitionedIndex:
    meta = {"image_id": np.array([f"img{i}" for i in range(len(pool["vectors"]))])}
    return PartitionedIndex.build(pool["vectors"], pool["partition"], pool["product"], N_PARTITIONS, metadata=meta)


def _qdrant(pool, spec: QdrantSpec, checksum: str = "emb-1") -> QdrantIndex:
    meta = {"image_id": np.array([f"img{i}" for i in range(len(pool["vectors"]))])}
    chunks = lambda: np.array_split(pool["vectors"], 4)  # noqa: E731  (several upload rounds)
    return QdrantIndex.build_streaming(
        spec, chunks, pool["partition"], pool["product"], CATEGORIES, embedder_checksum=checksum, metadata=meta
    )


def _rankings(index, pool, name):
    ranked, routed = rank(STRATEGIES[name], index, pool["queries"], pool["probs"], K, pool["true_partition"])
    return [r.products for r in ranked], [r.scores for r in ranked], routed


def test_every_strategy_ranks_the_same_products(pool) -> None:
    faiss_index, qdrant_index = _faiss(pool), _qdrant(pool, QdrantSpec(collection="parity"))
    assert qdrant_index.n_items == faiss_index.n_items and qdrant_index.dim == faiss_index.dim
    for name in STRATEGIES:
        f_products, f_scores, f_routes = _rankings(faiss_index, pool, name)
        q_products, q_scores, q_routes = _rankings(qdrant_index, pool, name)
        assert q_products == f_products, name
        assert q_routes == f_routes, name
        np.testing.assert_allclose(np.concatenate(q_scores), np.concatenate(f_scores), atol=1e-5, err_msg=name)


def test_catalog_changes_and_excluded_views_agree(pool) -> None:
    faiss_index = mutable(_faiss(pool))
    qdrant_index = mutable(_qdrant(pool, QdrantSpec(collection="changes")))
    new = pool["queries"][:3] + 0.01  # three new items right where queries 0..2 look
    for index in (faiss_index, qdrant_index):
        ids = index.add(
            new, pool["true_partition"][:3], np.array([9001, 9002, 9003]), {"image_id": np.array(["n0", "n1", "n2"])}
        )
        assert ids.tolist() == [500, 501, 502]
        index.remove(np.flatnonzero(np.isin(index.item_product, [pool["product"][0], 9002])))
    for name in ("global", "top1", "fusion"):
        f_products = _rankings(faiss_index, pool, name)[0]
        assert f_products == _rankings(qdrant_index, pool, name)[0], name
        assert f_products[0][0] == 9001 and all(9002 not in r for r in f_products)
    hidden = np.flatnonzero(np.isin(faiss_index.item_product, [9001]))
    for index in (faiss_index, qdrant_index):
        view = excluding(index, hidden)
        assert all(9001 not in r for r in _rankings(view, pool, "global")[0])
        assert _rankings(index, pool, "global")[0][0][0] == 9001  # the store itself is unchanged


def test_bulk_load_resumes_and_refuses_another_embedder(pool, tmp_path) -> None:
    spec = QdrantSpec(collection="bulk", location=None, path=str(tmp_path / "qdrant"))
    first = _qdrant(pool, spec)
    assert first.upload_counts == {"written": 500, "already_present": 0}
    pointer = first.save(tmp_path / "pointer")
    first.client.close()
    again = _qdrant(pool, spec)  # a rerun uploads nothing that is already there
    assert again.upload_counts == {"written": 0, "already_present": 500}
    again.client.close()
    reopened = load_store(pointer, expected_embedder_checksum="emb-1")
    assert isinstance(reopened, QdrantIndex) and reopened.n_items == 500
    assert _rankings(reopened, pool, "top1")[0] == _rankings(_faiss(pool), pool, "top1")[0]
    reopened.client.close()
    with pytest.raises(IndexMismatchError, match="another embedder"):
        load_store(pointer, expected_embedder_checksum="emb-2")
    with pytest.raises(IndexMismatchError, match="drop it or use another"):
        _qdrant(pool, spec, checksum="emb-2")


def test_shard_keys_need_a_server_and_memory_cannot_be_saved(pool, tmp_path) -> None:
    with pytest.raises(ValueError, match="needs a Qdrant server"):
        QdrantSpec(shard_key_per_category=True).client()
    with pytest.raises(ValueError, match="cannot be saved"):
        _qdrant(pool, QdrantSpec(collection="mem")).save(tmp_path / "x")
