"""Retrieval: partitioned FAISS index, cascade routing strategies, product-level metrics (numpy + faiss only)."""

from snapsearch.retrieval.cascade import (
    DEFAULT_OVERFETCH,
    Ranking,
    RoutingDecomposition,
    rank,
    routing_decomposition,
    run_strategy,
)
from snapsearch.retrieval.conformal import lac_sets, lac_threshold
from snapsearch.retrieval.index import PartitionedIndex, SearchHits
from snapsearch.retrieval.index_io import IndexFormatError, IndexMismatchError
from snapsearch.retrieval.metrics import (
    IMPROVEMENT_KEYS,
    average_improvement,
    average_precision_at_k,
    dedupe_by_product,
    per_query_metrics,
    recall_at_k,
    reciprocal_rank,
    relative_change,
    retrieval_metrics,
)
from snapsearch.retrieval.priors import em_prior_correction
from snapsearch.retrieval.strategies import (
    Adaptive,
    Conformal,
    Fusion,
    GlobalSearch,
    Oracle,
    Route,
    Strategy,
    Top1,
    TopK,
    check_probs,
)

__all__ = [
    "DEFAULT_OVERFETCH",
    "IMPROVEMENT_KEYS",
    "Adaptive",
    "Conformal",
    "Fusion",
    "GlobalSearch",
    "IndexFormatError",
    "IndexMismatchError",
    "Oracle",
    "PartitionedIndex",
    "Ranking",
    "Route",
    "RoutingDecomposition",
    "SearchHits",
    "Strategy",
    "Top1",
    "TopK",
    "average_improvement",
    "average_precision_at_k",
    "check_probs",
    "dedupe_by_product",
    "em_prior_correction",
    "lac_sets",
    "lac_threshold",
    "per_query_metrics",
    "rank",
    "recall_at_k",
    "reciprocal_rank",
    "relative_change",
    "retrieval_metrics",
    "routing_decomposition",
    "run_strategy",
]
