"""What passes between a :class:`~snapsearch.search.cascade.Cascade`'s stages: a photo made ready for the
models (:meth:`~snapsearch.search.cascade.Cascade.prepare`, any thread), a query (a prepared photo with its
k and strategy), and the model outputs of a batch of queries (one pass). A batcher runs ``prepare`` in a
thread pool and ``infer_batch`` + ``rank_batch`` on one worker; ``search_batch`` runs them in a row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from snapsearch.search.barcode import DecodedCode
from snapsearch.search.result import STAGES, SearchResult

MS = 1e3


@dataclass(frozen=True)
class Prepared:
    """One photo decoded, its barcode read and (unless that barcode's product answers it) preprocessed.

    ``xc``/``xe`` are the classifier's and the embedder's CHW inputs; None when the barcode's product was in
    the catalog at preparation (the ranking looks again under the catalog's read lock and runs the models
    after all if the product was removed in between)."""

    rgb_c: np.ndarray
    rgb: np.ndarray  # the embedder's decode: what OCR reads and what the result reports as the image
    code: DecodedCode | None
    xc: np.ndarray | None
    xe: np.ndarray | None
    decode_s: float  # decoding and preprocessing
    barcode_s: float


@dataclass(frozen=True)
class Query:
    """A prepared photo and what its request asked for (``strategy`` None: its query type's route)."""

    prepared: Prepared
    k: int
    strategy: str | None


class Inferred(NamedTuple):
    """One batch through the models: what the ranking and the query-type head read, and the time taken."""

    probs: np.ndarray
    emb: np.ndarray
    features: np.ndarray | None  # the gate's pooled features, when a query-type head reads them
    classify_s: float
    embed_s: float


@dataclass(frozen=True)
class BatchOutputs:
    """The models' outputs for the queries ``rows`` of a batch (the ones that needed the models), in order."""

    rows: list[int]
    probs: np.ndarray
    emb: np.ndarray
    types: list[str]
    seconds: dict[str, float]  # classify, embed: the batch's model time


def stamp(result: SearchResult, prepared: Prepared, shared: dict[str, float], n: int, barcodes: bool) -> None:
    """Per-stage timings (ms) of one query of a batch of ``n``: its own decoding and barcode reading, and
    its share of the batch's ``shared`` stages (model passes, OCR, the ranking); the image size and code."""
    per = {s: shared.get(s, 0.0) / n for s in STAGES}
    per["decode"] += prepared.decode_s
    if barcodes:
        per["barcode"] = prepared.barcode_s
    if "ocr" in shared:
        per["ocr"] = shared["ocr"] / n
    result.timings_ms = {s: MS * v for s, v in per.items()} | {"total": MS * sum(per.values())}
    result.image = {"width": int(prepared.rgb.shape[1]), "height": int(prepared.rgb.shape[0])}
    result.barcode = None if prepared.code is None else prepared.code.text
