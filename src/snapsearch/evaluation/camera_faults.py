"""Camera faults: the test photos again under phone-camera corruptions (blur, noise, JPEG, exposure, low
resolution; a few severities), built with albumentations, deterministic (each photo's corruption is seeded
by its position), never trained on. For each corruption: every strategy's R@1 kept against the clean photos,
and the gate's accuracy and calibration error: a gate whose confidence does not survive the shift misleads
every probability-aware strategy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate

from snapsearch.data.dataset import LabelMaps
from snapsearch.models.classifier_metrics import classifier_metrics
from snapsearch.retrieval import per_query_metrics
from snapsearch.runtime.batch import BatchIO, Outputs
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import label_indices


def _recall_at_1(
    cascade: Cascade, out: Outputs, part: np.ndarray, prod: np.ndarray, strategies: Sequence[str], k: int
) -> dict[str, float]:
    scores = {}
    for s in strategies:
        rankings, _ = cascade.rank(out.embeddings, out.probs, k, s, part)
        ranked = [[int(p) for p in r.products] for r in rankings]
        scores[s] = float(per_query_metrics(ranked, prod.tolist(), (1,), k)["R@1"].mean())
    return scores


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
) -> dict[str, Any]:
    """R@1 per strategy and the gate's quality, clean and under each corruption (a Hydra node each)."""
    runs = {"clean": None} | {name: instantiate(node) for name, node in corruptions.items()}
    results: dict[str, Any] = {"n_photos": len(photos), "seed": seed, "corruptions": {}}
    clean: dict[str, float] = {}
    for name, transform in runs.items():
        run_io = replace(io, before=transform, seed=seed)
        out = cascade.infer_frame(photos, labels, run_io, classify=True, what=f"photos, {name}")
        part, prod = label_indices(photos.loc[out.rows], labels)
        r1 = _recall_at_1(cascade, out, part, prod, strategies, k)
        if name == "clean":
            clean = r1
        gate = classifier_metrics(out.probs, part)
        results["corruptions"][name] = {
            "R@1": r1,
            "R@1_kept": {s: (v / clean[s] if clean[s] > 0 else float("nan")) for s, v in r1.items()},
            "gate_top1": gate["top1"],
            "gate_ece": gate["ece"],
        }
    return results
