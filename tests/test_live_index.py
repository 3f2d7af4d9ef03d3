"""LiveIndex: amortised appends, cached tombstone counts and compaction that keeps search results exact."""

from __future__ import annotations

import numpy as np
import pytest

from snapsearch.retrieval.growable import Growable
from snapsearch.retrieval.index import PartitionedIndex
from snapsearch.retrieval.live_index import GLOBAL_KEY, Compaction, LiveIndex

DIM, PARTS = 16, 4


def _pool(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, DIM)).astype(np.float32), rng.integers(0, PARTS, n)


def _hits(index, q: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per query: (product, rounded score) of the global and the routed-to-2-partitions search."""
    out = []
    routes = [[i % PARTS, (i + 1) % PARTS] for i in range(len(q))]
    for hits in (index.search_global(q, k), index.search_partitions(q, routes, k)):
        for h in hits:
            pairs = zip(h.item_ids, h.scores, strict=True)
            out.append([(int(index.item_product[i]), round(float(s), 5)) for i, s in pairs])
    return out


def test_growable_appends_without_aliasing_and_widens_strings() -> None:
    src = np.array(["a", "b"])
    g = Growable(src)
    g.extend(np.array(["a-much-longer-value"]))
    for i in range(100):
        g.extend(np.array([f"x{i}"]))
    assert list(g.view[:3]) == ["a", "b", "a-much-longer-value"] and len(g) == 103 and g.view[-1] == "x99"
    assert list(src) == ["a", "b"]


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW16"])
def test_search_after_many_deletes_equals_a_fresh_index_of_the_live_items(factory: str) -> None:
    x, parts = _pool(400, 0)

    def build() -> PartitionedIndex:  # twice: live indexes share the FAISS structures they take over
        return PartitionedIndex.build(x, parts, np.arange(400), n_partitions=PARTS, factory=factory, nprobe=4)

    live = LiveIndex.from_index(build(), Compaction(share=0.1, max_removed=16))
    plain = LiveIndex.from_index(build())  # tombstones only, never rebuilt
    x2, parts2 = _pool(600, 1)
    for i in range(0, 600, 3):  # many small adds: amortised appends
        for ix in (live, plain):
            ix.add(x2[i : i + 3], parts2[i : i + 3], np.arange(400 + i, 400 + i + 3))
    rng = np.random.default_rng(2)
    gone = rng.choice(1000, 700, replace=False)
    for chunk in np.array_split(gone, 100):
        for ix in (live, plain):
            ix.remove(chunk)
    live.remove(gone[:10])  # removing again changes nothing
    assert live.n_removed == plain.n_removed == 700 and live.n_live == 300 and live.rebuilt
    bound = {key: min(16, 0.1 * n) for key, n in [(GLOBAL_KEY, 1000), *enumerate(np.bincount(live.item_partition))]}
    assert all(dead <= bound[key] + 1 for key, dead in live.tombstones().items()), live.tombstones()
    assert plain.tombstones()[GLOBAL_KEY] == 700  # the uncompacted view over-fetches all of them
    q = _pool(20, 3)[0]
    if not factory.startswith("HNSW"):  # a rebuilt HNSW graph is another approximation (not a worse one)
        assert _hits(live, q, 10) == _hits(plain, q, 10)  # compaction changes no answer
    if factory == "Flat":  # exact: the same as a catalog built from the live items alone
        keep = np.setdiff1d(np.arange(1000), gone)
        xs, ps = np.concatenate([x, x2])[keep], np.concatenate([parts, parts2])[keep]
        fresh = PartitionedIndex.build(xs, ps, keep, n_partitions=PARTS, factory=factory)
        assert _hits(live, q, 10) == _hits(fresh, q, 10)
    assert set(np.concatenate([h.item_ids for h in live.search_global(q, 50)])).isdisjoint(gone)
    with pytest.raises(ValueError, match="compacted"):
        live.save("/nonexistent")


def test_a_view_of_a_live_index_keeps_its_tombstones_and_leaves_it_alone() -> None:
    x, parts = _pool(100, 4)
    live = LiveIndex.from_index(PartitionedIndex.build(x, parts, np.arange(100), n_partitions=PARTS))
    live.remove(np.arange(10))
    view = LiveIndex.from_index(live)
    view.remove(np.arange(10, 20))
    assert view.n_removed == 20 and live.n_removed == 10 and not live.removed[10:20].any()
