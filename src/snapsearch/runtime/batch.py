"""Batch inference of a runtime over manifest rows: every image decoded and preprocessed once per contract,
with progress shown (a catalog of millions of images takes hours)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import albumentations as A
import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from snapsearch.data.dataset import LabelMaps, ManifestDataset, collate_skipping_bad
from snapsearch.runtime.models import CascadeRuntime
from snapsearch.utils.progress import track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchIO:
    """How images reach a runtime in batches: batch size, loader workers, and the decoding limits of the
    run's data config (``max_image_pixels``, ``draft_decode``), so batches decode exactly as one photo does.
    ``before``: an albumentations transform applied to each decoded image ahead of the preprocessing
    contract (a camera fault), seeded per image from ``seed`` and its position, whatever the workers."""

    batch_size: int
    workers: int
    max_pixels: int
    draft: bool
    before: A.BasicTransform | None = None
    seed: int = 0


@dataclass
class Outputs:
    """Model outputs for the readable rows of a frame (``rows`` indexes the manifest)."""

    rows: np.ndarray
    embeddings: np.ndarray
    probs: np.ndarray | None
    skipped: int
    features: np.ndarray | None = None  # the gate's pooled features (``features=True``)


def _loader(frame: pd.DataFrame, labels: LabelMaps, preprocess, io: BatchIO) -> DataLoader:
    transform = preprocess.eval_transform()
    if io.before is not None:
        transform = A.Compose([io.before, *transform.transforms])
    ds = ManifestDataset(
        frame,
        labels,
        transform,
        max_pixels=io.max_pixels,
        draft_size=preprocess.resize_size if io.draft else None,
    )
    # (position, seed) draws make a random corruption replay exactly, per image
    draws = [(i, io.seed + i) for i in range(len(ds))] if io.before is not None else None
    return DataLoader(
        ds, batch_size=io.batch_size, sampler=draws, num_workers=io.workers, collate_fn=collate_skipping_bad
    )


def _batch_size(batch: dict) -> int:
    """Images a collated batch stood for: the readable ones plus the skipped ones."""
    return int(batch["image"].shape[0]) + int(batch["n_skipped"])


def run_inference(
    runtime: CascadeRuntime,
    frame: pd.DataFrame,
    labels: LabelMaps,
    *,
    classify: bool,
    io: BatchIO,
    what: str,
    features: bool = False,
) -> Outputs:
    """Embed (and optionally classify) every image of ``frame``, showing progress as ``what``. One decode
    serves both models when their preprocessing contracts agree (the common case: one backbone family), and
    one forward pass serves both when the runtime has a single trunk (``classify_and_embed``). ``features``
    (with ``classify``): also the gate's pooled features, from the same pass."""
    if features and not classify:
        raise ValueError("the gate's features come with its probabilities: pass classify=True")
    shared = runtime.classifier_preprocess == runtime.embedder_preprocess
    joint = getattr(runtime, "classify_and_embed", None)  # one pass for both heads (one trunk)
    rows, embs, probs, feats, skipped = [], [], [], [], 0
    batches = _loader(frame, labels, runtime.embedder_preprocess, io)
    for batch in track(batches, len(frame), what, size=_batch_size):
        skipped += batch["n_skipped"]
        if batch["image"].shape[0] == 0:
            continue
        x = batch["image"].numpy()
        rows.append(batch["row"].numpy())
        if classify and joint is not None:
            p, e, *f = runtime.classify_embed_features(x) if features else joint(x)  # type: ignore[attr-defined]
            probs.append(p)
            embs.append(e)
            feats.extend(f)
            continue
        embs.append(runtime.embed(x))
        if classify and shared:
            _gate(runtime, x, features, probs, feats)
    if classify and not shared:
        batches = _loader(frame, labels, runtime.classifier_preprocess, io)
        for batch in track(batches, len(frame), f"{what} (classifier input)", size=_batch_size):
            if batch["image"].shape[0]:
                _gate(runtime, batch["image"].numpy(), features, probs, feats)
    if skipped:
        log.warning("%d unreadable images skipped", skipped)
    if not rows:
        raise ValueError("no readable image in the evaluation set; check the manifest paths")
    return Outputs(
        rows=np.concatenate(rows),
        embeddings=np.concatenate(embs).astype(np.float32),
        probs=np.concatenate(probs) if probs else None,
        skipped=skipped,
        features=np.concatenate(feats) if feats else None,
    )


def _gate(runtime: CascadeRuntime, x: np.ndarray, features: bool, probs: list, feats: list) -> None:
    """The gate on one batch: its probabilities, and its features when asked for."""
    if features:
        p, f = runtime.classify_features(x)
        feats.append(f)
    else:
        p = runtime.classify(x)
    probs.append(p)
