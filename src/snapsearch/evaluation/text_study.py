"""The words on the pack (``text_study.enabled=true``): OCR reads every (strided) test photo and every
validation photo once (cached in ``ocr.json``: a later evaluation can reuse it); for each text encoder the
fusion weight is chosen on the validation photos; the test photos are scored with and without text, per top
group, for each strategy, with paired intervals; and OCR's cost is reported, on every query and when only
the gate's packaged-goods calls are read (``ocr_categories``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from snapsearch.data.image_io import read_rgb
from snapsearch.evaluation.scoring import subset_scores
from snapsearch.retrieval import per_query_metrics
from snapsearch.search.cascade import Cascade
from snapsearch.search.text import OcrReader, OcrText, TextSearch, product_text
from snapsearch.utils.atomic import atomic_write_text
from snapsearch.utils.progress import track

log = logging.getLogger(__name__)
OCR_CACHE = "ocr.json"


def read_all(paths: Sequence[str], reader: OcrReader, cache: Path, max_pixels: int, reuse: Path | None) -> dict:
    """path -> {text, seconds} for every path, read once: from ``reuse`` (an earlier evaluation's cache) or
    by OCR, saved to ``cache`` every 100 photos (an interrupted study loses little)."""
    known: dict[str, dict[str, Any]] = json.loads(reuse.read_text()) if reuse is not None else {}
    todo = [p for p in dict.fromkeys(paths) if p not in known]
    for n, path in enumerate(track(todo, len(todo), "OCR"), start=1):
        read = reader.read(read_rgb(path, max_pixels=max_pixels))
        known[path] = {"text": read.text, "seconds": read.seconds}
        if n % 100 == 0 or n == len(todo):
            atomic_write_text(cache, json.dumps(known))
    return known


def _vector(text: TextSearch, read: OcrText) -> np.ndarray | None:
    """The read text's vector, encoded once per text and encoder: every weight and strategy reuses it."""
    cache = text.__dict__.setdefault("_study_vectors", {})
    if read.text not in cache:
        cache[read.text] = text.query_vector(read)
    return cache[read.text]


def _ranked(
    cascade: Cascade, text: TextSearch, strategy: str, emb, probs, part, reads: list[OcrText | None], w: float
) -> list[list[int]]:
    """Product rankings (``text.depth`` deep) of a strategy, re-scored with the read text at weight ``w``."""
    rankings, _ = cascade.rank(emb, probs, text.depth, strategy, true_partition=part)
    out = []
    for ranking, read in zip(rankings, reads, strict=True):
        query = None if read is None or w == 0 else _vector(text, read)
        fused = ranking if query is None else text.fuse(ranking, query, text.depth, weight=w)
        out.append([int(p) for p in fused.products])
    return out


Queries = tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _per_query(
    cascade: Cascade, text: TextSearch, strategies: list[str], data: Queries, runs: dict[str, tuple[list, float]]
) -> dict[str, dict[str, np.ndarray]]:
    """Every strategy's per-query metrics on ``data``, for each run (suffix -> (what was read, weight))."""
    emb, probs, part, prod = data[1:]
    return {
        s + suffix: per_query_metrics(_ranked(cascade, text, s, emb, probs, part, reads, w), prod.tolist())
        for s in strategies
        for suffix, (reads, w) in runs.items()
    }


def text_study(
    cfg: DictConfig,
    cascade: Cascade,
    val: Queries,
    test: Queries,
    out_dir: Path,
    *,
    max_pixels: int,
    scoring: dict[str, Any],
    extra: dict[str, Queries] | None = None,
) -> dict[str, Any]:
    """``val`` / ``test``: (paths, embeddings, probabilities, true partitions, true products) of the
    validation and test photos; ``extra``: other query sets scored the same way (e.g. the query-type
    study's screenshots, whose pages print the product's name), each reported as a column of its own."""
    extra = extra or {}
    reader = OcrReader(cfg.min_confidence)
    reuse = Path(cfg.ocr_cache) if cfg.ocr_cache else None
    every = [*val[0], *test[0], *(p for data in extra.values() for p in data[0])]
    reads = read_all(every, reader, out_dir / OCR_CACHE, max_pixels, reuse)
    products = cascade.products
    texts = [product_text(products[i].name, products[i].description) for i in range(len(products))]
    categories = products.categories

    def gate_allows(probs: np.ndarray) -> np.ndarray:
        return np.array([categories[int(c)].startswith(tuple(cfg.ocr_categories)) for c in probs.argmax(axis=1)])

    gate_ok = [gate_allows(p) for p in (val[2], test[2])]
    strategies = [s for s in cfg.strategies if s in cascade.strategies]
    groups = np.array([categories[int(c)].split("/")[0] for c in test[3]])
    seconds = np.array([reads[p]["seconds"] for p in test[0]])
    out: dict[str, Any] = {
        "n_test": len(test[0]),
        "n_val": len(val[0]),
        "read_share": float(np.mean([len(reads[p]["text"]) > 0 for p in test[0]])),
        "ocr_ms": {
            "mean": float(1e3 * seconds.mean()),
            "p50": float(1e3 * np.median(seconds)),
            "p95": float(1e3 * np.percentile(seconds, 95)),
        },
        "gated_share": float(gate_ok[1].mean()),
        "gated_ocr_ms_mean": float(1e3 * (seconds * gate_ok[1]).mean()),
        "ocr_categories": list(cfg.ocr_categories),
        "encoders": {},
    }
    for name, enc_cfg in cfg.encoders.items():
        text = TextSearch(reader, instantiate(enc_cfg), texts, weight=0.0, depth=cfg.depth, min_chars=cfg.min_chars)
        as_read = [[OcrText(reads[p]["text"], reads[p]["seconds"]) for p in paths] for paths in (val[0], test[0])]
        used = [np.array([_vector(text, r) is not None for r in rs]) for rs in as_read]
        # the weight: best validation R@1 of the selection strategy (ties: the smaller weight)
        v_emb, v_probs, v_part, v_prod = val[1:]
        val_r1 = {
            float(w): float(
                per_query_metrics(
                    _ranked(cascade, text, cfg.select_on, v_emb, v_probs, v_part, as_read[0], w), v_prod.tolist()
                )["R@1"].mean()
            )
            for w in cfg.weights
        }
        weight = max(val_r1, key=lambda w: (val_r1[w], -w))
        gated = [r if ok else None for r, ok in zip(as_read[1], gate_ok[1], strict=True)]
        runs = {"": (as_read[1], 0.0), "+text": (as_read[1], weight), "+text@gate": (gated, weight)}
        per_query = _per_query(cascade, text, strategies, test, runs)
        subsets = {g: np.flatnonzero(groups == g) for g in sorted(set(groups))} | {"all": np.arange(len(groups))}
        table = {  # each strategy against itself without text: the intervals are of what the text adds
            g: {
                s: subset_scores(
                    {s + x: per_query[s + x] for x in runs}, rows, products=test[4], **(scoring | {"baseline": s})
                )
                for s in strategies
            }
            for g, rows in subsets.items()
        }
        used_by = {g: float(used[1][groups == g].mean()) for g in sorted(set(groups))}
        for set_name, data in extra.items():
            read = [OcrText(reads[p]["text"], reads[p]["seconds"]) for p in data[0]]
            allowed = [r if ok else None for r, ok in zip(read, gate_allows(data[2]), strict=True)]
            extra_runs = {"": (read, 0.0), "+text": (read, weight), "+text@gate": (allowed, weight)}
            scored = _per_query(cascade, text, strategies, data, extra_runs)
            rows = np.arange(len(data[0]))
            table[set_name] = {
                s: subset_scores(
                    {s + x: scored[s + x] for x in runs}, rows, products=data[4], **(scoring | {"baseline": s})
                )
                for s in strategies
            }
            used_by[set_name] = float(np.mean([_vector(text, r) is not None for r in read]))
        out["encoders"][name] = {
            "encoder": text.encoder.name,
            "weight": weight,
            "val_R@1_by_weight": val_r1,
            "text_used_share": float(used[1].mean()),
            "text_used_share_by_group": used_by,
            "by_group": table,
        }
        log.info("text (%s): weight %.2f chosen on validation photos", name, weight)
    return out
