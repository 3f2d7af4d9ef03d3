"""What kind of image arrived: a shop photo, a catalog-like image or a screenshot. A photo-trained gate
misroutes the last two (they look like the catalog, not the shop), so each type gets its own route.

The head is a multinomial logistic regression on the category gate's L2-normalised pooled trunk features,
which the gate computes for every query anyway: telling the types apart costs one matrix product, not
another network. (The product embedding is the wrong input: metric learning makes it blind to the domain,
which is what lets a photo find its catalog image; a head on it got 66% validation accuracy on Grocery,
one on the trunk's features 97%.) It is fitted with scikit-learn and stored as plain arrays (no pickle)
with the fingerprint of the gate whose features it reads, so it is never applied to another gate's.

The fit runs in float64 to a tight tolerance (``FIT_TOL``). The L2-regularised loss has one minimum, but
scikit-learn keeps float32 features in float32 and stops L-BFGS at its default ``tol=1e-4`` wherever its
path got to, and that point followed the features' last bits (which differ between CPUs: the network's
kernels do): on the smoke run, a 1e-7 relative change of the features moved the head's weights by 5e-4
(relative); fitted in float64 to ``FIT_TOL``, by 4e-6.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from snapsearch.data.query_views import QUERY_TYPES
from snapsearch.utils.atomic import atomic_save_arrays, atomic_write_text

HEAD_ARRAYS = "head.npz"
HEAD_META = "head.json"
FIT_TOL = 1e-8  # L-BFGS's stopping tolerance: the minimum itself, not a point on the way that the last bits choose


class QueryTypeError(ValueError):
    """A query-type head or route table that cannot be used; the message says the fix."""


@dataclass(frozen=True)
class QueryTypeHead:
    """Linear softmax over query types, reading the gate's L2-normalised pooled features."""

    weight: np.ndarray  # (n_types, dim)
    bias: np.ndarray  # (n_types,)
    types: tuple[str, ...]
    gate_fingerprint: str | None

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        types: Sequence[str],
        *,
        c: float,
        max_iter: int,
        gate_fingerprint: str | None,
    ) -> QueryTypeHead:
        """Fit on features labelled with their query type (standardised; balanced classes: photos outnumber
        the rest), in float64 to the minimum (``FIT_TOL``; the module's docstring says why)."""
        names = tuple(t for t in QUERY_TYPES if t in set(types))
        if len(names) < 2:
            raise QueryTypeError(f"a query-type head needs at least two types to tell apart, got {names}")
        y = np.array([names.index(t) for t in types])
        features = np.asarray(features, dtype=np.float64)
        scaler = StandardScaler().fit(features)
        model = LogisticRegression(C=c, solver="lbfgs", tol=FIT_TOL, max_iter=max_iter, class_weight="balanced")
        model.fit(scaler.transform(features), y)
        weight, bias = model.coef_, model.intercept_
        if len(names) == 2:  # scikit-learn's binary form: one row for class 1 against class 0
            weight, bias = np.vstack([-weight, weight]) / 2, np.array([-bias[0], bias[0]]) / 2
        # the standardisation folded into the linear map: one matrix product at query time
        weight = weight / scaler.scale_
        bias = bias - weight @ scaler.mean_
        return cls(weight.astype(np.float32), bias.astype(np.float32), names, gate_fingerprint)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = features @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, features: np.ndarray) -> list[str]:
        return [self.types[i] for i in self.probabilities(features).argmax(axis=1)]

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        atomic_save_arrays(folder / HEAD_ARRAYS, {"weight": self.weight, "bias": self.bias})
        meta = {"types": list(self.types), "gate_fingerprint": self.gate_fingerprint}
        atomic_write_text(folder / HEAD_META, json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> QueryTypeHead:
        folder = Path(folder)
        meta = json.loads((folder / HEAD_META).read_text())
        with np.load(folder / HEAD_ARRAYS, allow_pickle=False) as arrays:
            weight, bias = arrays["weight"], arrays["bias"]
        if weight.shape != (len(meta["types"]), weight.shape[1]) or bias.shape != (len(meta["types"]),):
            raise QueryTypeError(f"query-type head at {folder} is inconsistent: {weight.shape} for {meta['types']}")
        return cls(weight, bias, tuple(meta["types"]), meta["gate_fingerprint"])

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / HEAD_META).is_file() and (Path(folder) / HEAD_ARRAYS).is_file()


def check_routes(routes: Mapping[str, str | None], strategies: Sequence[str]) -> dict[str, str]:
    """Query type -> strategy name, without the unset ones (those use the request's or default strategy).
    QueryTypeError names an unknown type or strategy."""
    out = {}
    for query_type, strategy in routes.items():
        if query_type not in QUERY_TYPES:
            raise QueryTypeError(f"route for unknown query type {query_type!r}; types are {list(QUERY_TYPES)}")
        if strategy is None:
            continue
        if strategy not in strategies:
            raise QueryTypeError(
                f"route {query_type} -> {strategy!r}: not a strategy of this cascade {list(strategies)}"
            )
        out[query_type] = str(strategy)
    return out
