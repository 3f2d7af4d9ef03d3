"""One FAISS index from an ``index_factory`` string, trained when it needs it, with a Flat fallback.

A category partition can hold fewer vectors than the requested index type needs to train (IVF needs at
least one vector per list, PQ at least 2**nbits per sub-quantizer). Exact search over such a small
partition is cheap anyway, so we fall back to "Flat" there and record why, instead of failing the build.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import faiss
import numpy as np

Metric = Literal["ip", "l2"]
METRICS: dict[str, int] = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
FALLBACK_FACTORY = "Flat"
# "{nlist}" in a factory string is replaced per index by NLIST_PER_SQRT * sqrt(n) (FAISS's guideline is
# 4-16 x sqrt(n)), capped so each list keeps MIN_POINTS_PER_LIST training points: partitions of very
# different sizes each get a fitting coarse quantiser from one config string.
NLIST_PER_SQRT = 4
MIN_POINTS_PER_LIST = 39


class BuiltIndex(NamedTuple):
    """A faiss index, the factory string it was really built from, and why it differs (or None)."""

    index: faiss.Index  # type: ignore[assignment]  # shadows tuple.index
    factory: str
    fallback_reason: str | None


def check_metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; use 'ip' (inner product, cosine on normalised vectors) or 'l2'")
    return metric  # type: ignore[return-value]


def make_index(dim: int, factory: str, metric: Metric) -> faiss.Index:
    """An empty index; a clear ValueError when faiss cannot parse the string for this dimension."""
    try:
        return faiss.index_factory(dim, factory, METRICS[metric])
    except RuntimeError as err:
        raise ValueError(
            f"faiss cannot make index_factory({dim}, {factory!r}, metric={metric}): {_faiss_message(err)}"
        ) from err


def sized_factory(factory: str, n: int) -> str:
    """The factory string with ``{nlist}`` filled in for an index of ``n`` vectors."""
    if "{nlist}" not in factory:
        return factory
    nlist = max(1, min(round(NLIST_PER_SQRT * np.sqrt(n)), n // MIN_POINTS_PER_LIST))
    return factory.replace("{nlist}", str(nlist))


def train_index(sample: np.ndarray, factory: str, metric: Metric, n_total: int | None = None) -> BuiltIndex:
    """Make an empty index sized for ``n_total`` vectors (default: the sample's) and train it on ``sample``.

    Sizing by the full count, not the sample, keeps ``{nlist}`` fitting the data the index will hold when
    it is trained on a subsample; too little data to train falls back to Flat.
    """
    factory = sized_factory(factory, len(sample) if n_total is None else n_total)
    index = make_index(sample.shape[1], factory, metric)
    reason = None
    if not index.is_trained:
        try:
            index.train(sample)
        except RuntimeError as err:
            reason = f"{len(sample)} vectors cannot train {factory!r}: {_faiss_message(err)}"
            factory = FALLBACK_FACTORY
            index = make_index(sample.shape[1], factory, metric)
    return BuiltIndex(index, factory, reason)


def build_index(vectors: np.ndarray, factory: str, metric: Metric) -> BuiltIndex:
    """Make, train (if needed) and fill an index from vectors held in memory."""
    built = train_index(vectors, factory, metric)
    built.index.add(vectors)
    return built


def apply_search_params(index: faiss.Index, nprobe: int | None, ef_search: int | None) -> None:
    """Set IVF ``nprobe`` and HNSW ``efSearch`` where the index has them (None keeps faiss's default)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and nprobe is not None:
        ivf.nprobe = int(nprobe)
    if ef_search is None:
        return
    for part in (index, None if ivf is None else ivf.quantizer):
        hnsw = None if part is None else _unwrap(part)
        if hnsw is not None and hasattr(hnsw, "hnsw"):
            hnsw.hnsw.efSearch = int(ef_search)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so inner product is cosine similarity."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _unwrap(index: faiss.Index) -> faiss.Index:
    """The innermost index under pre-transforms (PCA, OPQ...), as its concrete faiss class."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index


def _faiss_message(err: RuntimeError) -> str:
    """The readable tail of a faiss C++ error ("Error: 'nx >= k' failed: ..."), without the source location."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
    marker = "Error: "
    return text[text.rfind(marker) + len(marker) :] if marker in text else text
