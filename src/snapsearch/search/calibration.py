"""What a bundle carries from its export so that a service starts in a second, without the dataset: the
default strategy (the best R@1 on the run's *validation* photos, never a test result), each conformal
strategy's threshold and the rejection thresholds. ``export.py`` records them in ``bundle.json``;
:func:`snapsearch.search.sources.open_bundle` reads them. A bundle exported before they were recorded falls
back to calibrating at start (logged, with a hint to re-export)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.retrieval import Conformal, Oracle, Strategy, per_query_metrics
from snapsearch.runtime.batch import BatchIO
from snapsearch.search.catalog_index import label_indices

if TYPE_CHECKING:
    from snapsearch.search.cascade import Cascade

log = logging.getLogger(__name__)

# The default when nothing chose one (a run directory, or a bundle exported before the choice was recorded).
FALLBACK_DEFAULT = "top1"
CHOSEN_BY = "R@1 on the validation photos (ties: R@5, then the configured order)"
KS = (1, 5)


@dataclass(frozen=True)
class ServingRecord:
    """The calibration a bundle carries (``bundle.json``: ``default_strategy``, ``validation``,
    ``calibration``), and the novelty temperature slope the gate's probabilities had while it was calibrated
    (None: exported before the slope was recorded)."""

    default_strategy: str | None
    conformal: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> coverage, max_set_size, threshold
    rejection: dict[str, float] = field(default_factory=dict)
    temperature_slope: float | None = None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ServingRecord | None:
        """The record of a bundle's ``bundle.json``; None for a bundle exported before it was written."""
        if "calibration" not in meta:
            return None
        calibration = meta["calibration"]
        slope = calibration.get("novelty_temperature_slope")
        return cls(
            meta.get("default_strategy"),
            dict(calibration.get("conformal") or {}),
            {str(k): float(v) for k, v in (calibration.get("rejection") or {}).items()},
            None if slope is None else float(slope),
        )

    def strategies(self) -> dict[str, Strategy]:
        """The calibrated conformal strategies, as exported (they join the default strategies)."""
        return {
            name: Conformal(
                coverage=float(c["coverage"]), max_set_size=int(c["max_set_size"]), threshold=c["threshold"]
            )
            for name, c in self.conformal.items()
            if c.get("threshold") is not None
        }

    def apply(self, strategies: Mapping[str, Strategy]) -> dict[str, Strategy]:
        """``strategies`` with each unfitted conformal one given the recorded threshold of its coverage (a
        threshold depends on the coverage only); those of another coverage stay unfitted."""
        by_coverage = {float(c["coverage"]): c["threshold"] for c in self.conformal.values() if c.get("threshold")}
        out = dict(strategies)
        for name, s in out.items():
            if isinstance(s, Conformal) and s.threshold is None:
                hit = [t for cov, t in by_coverage.items() if math.isclose(cov, s.coverage)]
                if hit:
                    out[name] = dataclasses.replace(s, threshold=float(hit[0]))
        return out


def unfitted(strategies: Mapping[str, Strategy]) -> list[str]:
    """The conformal strategies that still need calibration photos."""
    return [n for n, s in strategies.items() if isinstance(s, Conformal) and s.threshold is None]


def resolve_default(requested: str | None, strategies: Mapping[str, Strategy], recorded: str | None) -> str:
    """The strategy a request that names none gets: the configured one (``cascade.default``), else the
    bundle's validation choice, else ``top1`` (else the first searchable)."""
    if requested is not None:
        return requested
    if recorded is not None and recorded in strategies:
        return recorded
    searchable = [n for n, s in strategies.items() if not isinstance(s, Oracle)]
    fallback = FALLBACK_DEFAULT if FALLBACK_DEFAULT in searchable else (searchable or [FALLBACK_DEFAULT])[0]
    if recorded is not None:
        log.warning(
            "the bundle's default strategy %r is not configured here: %r answers by default", recorded, fallback
        )
    return fallback


def check_validation_photos(photos: pd.DataFrame) -> None:
    """Choosing on anything but validation photos would leak the test result into the deployed default."""
    splits = set(photos["split"].unique())
    if splits - {"val"}:
        raise ValueError(f"the default strategy is chosen on validation photos only, got splits {sorted(splits)}")


def choose_default(scores: Mapping[str, Mapping[str, float]]) -> str:
    """The strategy with the best validation R@1 (ties: the better R@5, then the first in ``scores``)."""
    names = list(scores)
    return max(names, key=lambda n: (scores[n]["R@1"], scores[n]["R@5"], -names.index(n)))


def calibrate_and_score(
    cascade: Cascade, pending: Mapping[str, Conformal], photos: pd.DataFrame, labels: LabelMaps, io: BatchIO
) -> tuple[dict[str, Conformal], dict[str, dict[str, float]], int]:
    """One pass of the models over the validation ``photos``: the ``pending`` conformal strategies fitted on
    them and added to ``cascade``, then every searchable strategy's product R@1/R@5 on them, and how many
    photos were read. (Conformal is scored on the photos it was calibrated on: one threshold, little
    optimism.)"""
    check_validation_photos(photos)
    out = cascade.infer_frame(photos, labels, io, classify=True, what="validation photos")
    assert out.probs is not None
    partition, product = label_indices(photos.loc[out.rows], labels)
    fitted = {name: s.fit(out.probs, partition) for name, s in pending.items()}
    cascade.strategies |= fitted
    scores = {}
    for name in cascade.searchable():
        rankings, _ = cascade.rank(out.embeddings, out.probs, max(KS), name)
        ranked = [[int(p) for p in r.products] for r in rankings]
        metrics = per_query_metrics(ranked, product.tolist(), ks=KS, map_k=max(KS))
        scores[name] = {f"R@{k}": float(np.mean(metrics[f"R@{k}"])) for k in KS}
    return fitted, scores, len(product)


def conformal_record(strategies: Mapping[str, Strategy]) -> dict[str, dict[str, Any]]:
    """The fitted conformal strategies as ``bundle.json`` records them."""
    return {
        name: {
            "coverage": s.coverage,
            "max_set_size": s.max_set_size,
            "threshold": s.threshold,
            "n_calibration": s.n_calibration,
        }
        for name, s in strategies.items()
        if isinstance(s, Conformal) and s.threshold is not None
    }
