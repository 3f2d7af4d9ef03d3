"""Camera faults: the test photos again under phone-camera corruptions (blur, noise, JPEG, exposure, low
resolution; a few severities), built with albumentations, deterministic (each photo's corruption is seeded
by its position), never trained on. For each corruption: every strategy's R@1 kept against the clean photos,
and the gate's accuracy and calibration error: a gate whose confidence does not survive the shift misleads
every probability-aware strategy. Intervals resample products (with all their photos) by default: a fault
costs some products' photos and not others', so photos are not independent evidence of retention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate

from snapsearch.data.dataset import LabelMaps
from snapsearch.evaluation.uncertainty import LEVEL, clusters_of, describe, paired_bootstrap, resample_counts
from snapsearch.models.classifier_metrics import ECE_BINS, calibration_gaps, classifier_metrics
from snapsearch.retrieval import per_query_metrics
from snapsearch.runtime.batch import BatchIO, Outputs
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import label_indices

# Which photos the study may run on, and how the report names them.
FAULT_PHOTOS = {"test": "test photos", "val": "validation photos (calibration's)"}


def fault_photos(which: str, queries: pd.DataFrame, calib: pd.DataFrame) -> pd.DataFrame:
    """The study's photos: ``test`` (the report's) or ``val``, the validation photos calibration sees (never a
    held-out product's), so a training recipe can be chosen on its fault retention without a test photo."""
    if which not in FAULT_PHOTOS:
        raise ValueError(f"camera_faults.photos={which!r}: use one of {sorted(FAULT_PHOTOS)}")
    if which == "val" and calib.empty:
        raise ValueError("camera_faults.photos=val: this run has no validation photos; use camera_faults.photos=test")
    return calib if which == "val" else queries


def _hits_at_1(
    cascade: Cascade, out: Outputs, part: np.ndarray, prod: np.ndarray, strategies: Sequence[str], k: int
) -> dict[str, np.ndarray]:
    """Per strategy, each photo's R@1 (1.0 when its product ranks first)."""
    hits = {}
    for s in strategies:
        rankings, _ = cascade.rank(out.embeddings, out.probs, k, s, part)
        ranked = [[int(p) for p in r.products] for r in rankings]
        hits[s] = np.asarray(per_query_metrics(ranked, prod.tolist(), (1,), k)["R@1"], dtype=np.float64)
    return hits


def fault_scores(
    hits: Mapping[str, Mapping[str, np.ndarray]],
    gate: Mapping[str, tuple[np.ndarray, np.ndarray]],
    products: np.ndarray,
    *,
    unit: str,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Per corruption (``hits`` and ``gate`` keyed alike, ``"clean"`` among them): each strategy's R@1 and
    the share of the clean R@1 kept, and the gate's top-1 and ECE, with paired bootstrap intervals over
    ``unit`` (products by default: the same draws for every corruption and strategy, so a retention's
    interval reflects that a fault hits some products' photos and not others'). ``resamples=0``: none."""
    point = {
        name: {
            "R@1": {s: float(v.mean()) for s, v in by_strategy.items()},
            **{f"gate_{m}": v for m, v in _gate(*gate[name]).items()},
        }
        for name, by_strategy in hits.items()
    }
    clean = point["clean"]["R@1"]
    for r in point.values():
        r["R@1_kept"] = {s: (v / clean[s] if clean[s] > 0 else float("nan")) for s, v in r["R@1"].items()}
    if resamples <= 0:
        return point
    strategies = list(hits["clean"])
    intervals = paired_bootstrap(
        hits, "clean", strategies, products=products, unit=unit, resamples=resamples, seed=seed
    )
    for name, r in point.items():
        r["R@1_ci"] = intervals[name]["metrics"]
        r["R@1_kept_ci"] = {s: [1.0 + lo, 1.0 + hi] for s, (lo, hi) in intervals[name]["relative"].items()}
        r["gate_ece_ci"] = ece_interval(*gate[name], products, unit=unit, resamples=resamples, seed=seed)
    return point


def ece_interval(
    probs: np.ndarray, part: np.ndarray, products: np.ndarray, *, unit: str, resamples: int, seed: int
) -> list[float]:
    """The gate's ECE over the same resamples as :func:`paired_bootstrap` (same unit, seed and draws): each
    resample's ECE from per-cluster, per-bin sums of the calibration gaps, weighted by the cluster's draws."""
    bins, gaps = calibration_gaps(probs, part)
    cluster = clusters_of(products, unit)
    n_clusters = int(cluster.max(initial=-1) + 1)
    sums = np.zeros((n_clusters, ECE_BINS + 1))  # bucketize puts a confidence of exactly 1 in an extra bin
    np.add.at(sums, (cluster, bins), gaps)
    counts = resample_counts(n_clusters, resamples, seed).astype(np.float64)
    photos = counts @ np.bincount(cluster, minlength=n_clusters)
    ece = np.abs(counts @ sums).sum(axis=1) / photos
    return [float(np.percentile(ece, 100 * (1 - LEVEL) / 2)), float(np.percentile(ece, 100 * (1 + LEVEL) / 2))]


def _gate(probs: np.ndarray, part: np.ndarray) -> dict[str, float]:
    m = classifier_metrics(probs, part)
    return {"top1": m["top1"], "ece": m["ece"]}


def camera_faults_study(
    cascade: Cascade,
    photos: pd.DataFrame,
    labels: LabelMaps,
    io: BatchIO,
    corruptions: Mapping[str, Any],
    *,
    strategies: Sequence[str],
    k: int,
    seed: int,
    bootstrap: Mapping[str, Any],
) -> dict[str, Any]:
    """R@1 per strategy and the gate's quality, clean and under each corruption (a Hydra node each), with
    intervals (``bootstrap``: unit, resamples, seed); under the unseen-products protocol also for the seen
    and the held-out products apart (``by_novelty``)."""
    runs = {"clean": None} | {name: instantiate(node) for name, node in corruptions.items()}
    hits: dict[str, dict[str, np.ndarray]] = {}
    gate: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows: list[Any] | None = None
    prod = np.zeros(0, dtype=np.int64)
    for name, transform in runs.items():
        run_io = replace(io, before=transform, seed=seed)
        out = cascade.infer_frame(photos, labels, run_io, classify=True, what=f"photos, {name}")
        if rows is not None and list(out.rows) != rows:
            raise ValueError(f"camera faults: {name!r} read other photos than the clean run; check the photos' files")
        rows = list(out.rows)
        part, prod = label_indices(photos.loc[out.rows], labels)
        hits[name] = _hits_at_1(cascade, out, part, prod, strategies, k)
        gate[name] = (out.probs, part)
    boot = {"unit": bootstrap["unit"], "resamples": int(bootstrap["resamples"]), "seed": int(bootstrap["seed"])}
    results: dict[str, Any] = {
        "n_photos": len(prod),
        "seed": seed,
        "bootstrap": describe(boot["unit"], boot["resamples"], prod),
        "corruptions": fault_scores(hits, gate, prod, **boot),
    }
    if labels.unseen_products:
        unseen = np.isin(prod, [labels.products.index(p) for p in labels.unseen_products])
        results["by_novelty"] = {
            group: fault_scores(
                {n: {s: v[sel] for s, v in h.items()} for n, h in hits.items()},
                {n: (p[sel], y[sel]) for n, (p, y) in gate.items()},
                prod[sel],
                **boot,
            )
            for group, sel in (("seen", ~unseen), ("unseen", unseen))
            if sel.any()
        }
    return results
