"""Streaming-build helpers of :class:`~snapsearch.retrieval.index.PartitionedIndex`: checked chunks of
embeddings in pool order, and the per-sub-index training samples drawn from them in one pass."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np

from snapsearch.retrieval.faiss_factory import (
    FALLBACK_FACTORY,
    BuiltIndex,
    Metric,
    l2_normalize,
    make_index,
    sized_factory,
    train_index,
)

log = logging.getLogger(__name__)

GLOBAL = "global"


def partition_name(partition: int) -> str:
    """Name of a partition's sub-index (its faiss file, its key in ``fallbacks``)."""
    return f"partition_{partition:04d}"


def members_by_partition(item_partition: np.ndarray, n_partitions: int) -> list[np.ndarray]:
    """Item ids of each partition in pool order (one stable sort, not one scan per partition)."""
    order = np.argsort(item_partition, kind="stable")
    bounds = np.cumsum(np.bincount(item_partition, minlength=n_partitions))[:-1]
    return np.split(order, bounds)


def read_chunks(
    chunks: Callable[[], Iterable[np.ndarray]], n: int, normalize: bool, dim: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(pool position of its first row, checked float32 rows) per non-empty chunk, normalised if asked.

    Raises ValueError unless the chunks hold exactly ``n`` finite rows of one dimension (``dim`` if given).
    """
    start = 0
    for i, chunk in enumerate(chunks()):
        x = np.ascontiguousarray(chunk, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] == 0 or (dim is not None and x.shape[1] != dim):
            want = "(rows, dim)" if dim is None else f"(rows, {dim})"
            raise ValueError(f"embeddings chunk {i} has shape {x.shape}; every chunk must be a {want} array")
        if start + len(x) > n:
            raise ValueError(
                f"embedding chunks hold at least {start + len(x)} rows, but item_partition has {n} items: "
                "the chunks must hold the whole pool, one row per item, in pool order"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"embeddings chunk {i} (pool rows {start}..{start + len(x) - 1}) contains NaN or inf")
        dim = x.shape[1]
        if len(x):
            yield start, l2_normalize(x) if normalize else x
        start += len(x)
    if start != n:
        raise ValueError(
            f"embedding chunks hold {start} rows, but item_partition has {n} items: "
            "the chunks must hold the whole pool, one row per item, in pool order"
        )


def prepend(first: tuple[int, np.ndarray], rest: Iterator[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
    yield first
    yield from rest


def sample_positions(size: int, k: int, rng: np.random.Generator, members: np.ndarray | None) -> np.ndarray:
    """Pool positions (ascending) of up to k of a sub-index's members; all of them when it has at most k."""
    local = np.arange(size) if size <= k else np.sort(rng.choice(size, size=k, replace=False))
    return local if members is None else members[local]


def gather(
    stream: Iterable[tuple[int, np.ndarray]], positions: Mapping[str, np.ndarray], dim: int
) -> dict[str, np.ndarray]:
    """Each sub-index's sample rows, in pool order, read in one pass over the chunks."""
    samples = {name: np.empty((len(pos), dim), np.float32) for name, pos in positions.items()}
    for start, x in stream:
        for name, pos in positions.items():
            lo, hi = np.searchsorted(pos, [start, start + len(x)])
            samples[name][lo:hi] = x[pos[lo:hi] - start]
    return samples


def check_items(
    n: int,
    partitions: np.ndarray,
    products: np.ndarray,
    n_partitions: int,
    metadata: Mapping[str, np.ndarray] | None,
) -> None:
    """Every per-item array has ``n`` entries and partitions are in range (checked before reading chunks)."""
    lengths = {"item_product": len(products)}
    lengths |= {f"metadata[{k!r}]": len(v) for k, v in (metadata or {}).items()}
    wrong = {name: size for name, size in lengths.items() if size != n}
    if wrong:
        raise ValueError(
            f"item_partition has {n} items but {wrong}: every per-item array needs one entry per embedding"
        )
    if partitions.ndim != 1 or partitions.min() < 0 or partitions.max() >= n_partitions:
        got = f"{partitions.min()}..{partitions.max()}"
        raise ValueError(f"item_partition must be 1-D labels in 0..{n_partitions - 1}, got {got}")


def build_subindexes(
    chunks: Callable[[], Iterable[np.ndarray]],
    partitions: np.ndarray,
    n_partitions: int,
    factory: str,
    metric: Metric,
    normalize: bool,
    train_sample: int,
    seed: int,
) -> tuple[dict[str, BuiltIndex], dict[str, str]]:
    """The global and per-partition sub-indexes of a pool read from ``chunks`` (trained on a sample when
    the factory needs training), by sub-index name; and the sub-indexes that fell back to Flat, with why."""
    n = len(partitions)
    # Sub-index name -> its members' pool positions, ascending (None for the global one: all items).
    members: dict[str, np.ndarray | None] = {GLOBAL: None}
    for p, m in enumerate(members_by_partition(partitions, n_partitions)):
        if len(m):
            members[partition_name(p)] = m
    sizes = {name: n if m is None else len(m) for name, m in members.items()}

    stream = read_chunks(chunks, n, normalize)
    first = next(stream)
    dim = first[1].shape[1]
    if make_index(dim, sized_factory(factory, n), metric).is_trained:
        samples = {name: np.zeros((0, dim), np.float32) for name in members}
        to_add: Iterable[tuple[int, np.ndarray]] = prepend(first, stream)
    else:
        rng = np.random.default_rng(seed)
        positions = {name: sample_positions(sizes[name], train_sample, rng, m) for name, m in members.items()}
        samples = gather(prepend(first, stream), positions, dim)
        to_add = read_chunks(chunks, n, normalize, dim)
    built = {name: train_index(samples.pop(name), factory, metric, sizes[name]) for name in members}

    for start, x in to_add:
        built[GLOBAL].index.add(x)
        local = members_by_partition(partitions[start : start + len(x)], n_partitions)
        for p, rows in enumerate(local):
            if len(rows):  # rows ascend and chunks come in pool order: local ids stay in pool order
                built[partition_name(p)].index.add(x[rows])

    fallbacks = {name: b.fallback_reason for name, b in built.items() if b.fallback_reason is not None}
    if fallbacks:
        log.warning(
            "%d of %d sub-indexes fell back to %s (too few vectors to train %r): %s",
            len(fallbacks),
            len(built),
            FALLBACK_FACTORY,
            factory,
            ", ".join(sorted(fallbacks)),
        )
    return built, fallbacks
