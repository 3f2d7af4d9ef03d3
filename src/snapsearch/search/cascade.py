"""The ``Cascade``: one photo in, ranked products out. Every caller ranks through it (the evaluator, export
verification, ``search.py``, the service), so a photo is never ranked two ways.

A cascade holds a runtime (eager PyTorch, TorchScript or onnxruntime), the partitioned index of the catalog,
the product table the index points into, and the routing strategies it may use. Open one with
:meth:`Cascade.from_run` or :meth:`Cascade.from_bundle`. A search is three stages (:meth:`Cascade.prepare`,
:meth:`Cascade.infer_batch`, :meth:`Cascade.rank_batch`): ``search_batch`` runs them in a row, the service's
batcher on its threads (:mod:`snapsearch.search.stages`).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.preprocess import Preprocess
from snapsearch.retrieval import DEFAULT_OVERFETCH, Oracle, Ranking, Route, Strategy, rank
from snapsearch.retrieval.hubness import DENSITY, HubCorrection, HubnessError, HubReference
from snapsearch.retrieval.novelty import NoveltyBonus
from snapsearch.retrieval.prototype_shift import PrototypeShift
from snapsearch.retrieval.store import VectorStore
from snapsearch.runtime.batch import BatchIO, Outputs, run_inference
from snapsearch.runtime.models import CascadeRuntime
from snapsearch.search.answers import barcode_answer, ranked_answer
from snapsearch.search.barcode import BARCODE_MODES, read_codes
from snapsearch.search.info import describe
from snapsearch.search.products import ProductTable
from snapsearch.search.query_image import QueryImage, to_rgb
from snapsearch.search.query_type import QueryTypeError, QueryTypeHead, check_routes
from snapsearch.search.result import SearchResult, TextRead
from snapsearch.search.stages import BatchOutputs, Inferred, Prepared, Query, stamp
from snapsearch.search.text import OcrText, TextSearch


class SearchError(ValueError):
    """A search the caller asked for wrongly (unknown strategy, k out of range); the message says the fix."""


class Cascade:
    """Runtime + partitioned index + product table + routing strategies.

    Args:
        runtime: the models (category probabilities and embeddings).
        index: the catalog's partitioned index; its items point at positions of ``products``.
        products: the product table (names, categories, catalog images).
        strategies: routing strategies by name (``global``, ``top1``, ``fusion``...).
        default_strategy: the one :meth:`search` uses when none is named.
        max_pixels: larger images are refused before they are decoded.
        draft_decode: let JPEG decoding downscale (as the evaluation data pipeline does), so a photo is
            decoded exactly as the evaluator decodes it.
        overfetch: raw items fetched per wanted product before de-duplication.
        rejection: per strategy, the score below which the answer is "not in our catalog".
        shown_categories: how many of the most probable categories a result lists.
        k_max: the largest k a search may ask for.
        lock: held while a batch reads the index and product table: the live catalog's read side (its
            changes take the write side), so a search sees a change wholly or not at all.
        pool_skipped: catalog images skipped as unreadable when the index was built (reported).
        barcodes: read retail barcodes first; a code found in the catalog (products' ``gtin``) answers the
            query exactly, without the models (their time is then under ``barcode``, not ``decode``).
            ``"auto"`` reads them only while the catalog holds a GTIN (no code could answer otherwise, and
            reading costs about as much CPU as the int8 model pass: BENCHMARKS §24).
        query_types: the head that tells shop photos, catalog-like images and screenshots apart (from the
            gate's pooled features); None treats every query as a photo.
        type_routes: query type -> strategy, for requests that name none (e.g. ``{screenshot: global}``);
            a type without a route takes ``default_strategy``.
        text: OCR + text encoder + fusion: the words on the pack re-score the route's candidates.
        hubness: the hubness correction of every strategy's scores (the index's density column); None: off.
        hub_reference: the photos the densities were measured against: what gives a product added live
            its densities (needed while the index has the column).
        prototype_shift: the offsets the index's vectors were moved by (a product added live is moved alike).
        novelty: the bonus a photo far from the training photos gives the items of untrained products (a
            product added live is one); None: off.
    """

    def __init__(
        self,
        runtime: CascadeRuntime,
        index: VectorStore,
        products: ProductTable,
        strategies: Mapping[str, Strategy],
        default_strategy: str,
        *,
        max_pixels: int,
        draft_decode: bool,
        overfetch: int = DEFAULT_OVERFETCH,
        rejection: Mapping[str, float] | None = None,
        shown_categories: int = 5,
        k_max: int = 100,
        lock: AbstractContextManager[Any] | None = None,
        pool_skipped: int = 0,
        barcodes: bool | str = False,
        query_types: QueryTypeHead | None = None,
        type_routes: Mapping[str, str | None] | None = None,
        text: TextSearch | None = None,
        hubness: HubCorrection | None = None,
        hub_reference: HubReference | None = None,
        prototype_shift: PrototypeShift | None = None,
        novelty: NoveltyBonus | None = None,
    ) -> None:
        if list(runtime.categories) != list(products.categories) or index.n_partitions != len(products.categories):
            raise ValueError(
                f"the runtime's {len(runtime.categories)} categories, the product table's "
                f"{len(products.categories)} and the index's {index.n_partitions} partitions differ: "
                "they come from different runs"
            )
        if default_strategy not in strategies:
            raise SearchError(f"default strategy {default_strategy!r} is not one of {sorted(strategies)}")
        self.runtime = runtime
        self.index = index
        self.products = products
        self.strategies = dict(strategies)
        self.default_strategy = default_strategy
        self.max_pixels = max_pixels
        self.draft_decode = draft_decode
        self.overfetch = overfetch
        self.rejection = dict(rejection or {})
        self.shown_categories = shown_categories
        self.k_max = k_max
        self.lock = lock if lock is not None else nullcontext()
        self.pool_skipped = pool_skipped
        if barcodes not in BARCODE_MODES:
            raise ValueError(f"barcodes={barcodes!r}: use true, false or auto")
        self.barcodes = barcodes
        if query_types is not None and (
            query_types.gate_fingerprint != runtime.gate_fingerprint or not runtime.has_gate_features
        ):
            raise QueryTypeError("the query-type head read another gate's features: retrain it for this one")
        self.query_types = query_types
        self.type_routes = check_routes(type_routes or {}, list(strategies))
        self.text = text
        if hubness is not None and DENSITY not in index.metadata:
            raise HubnessError(f"a hubness correction needs an index with the {DENSITY!r} column: rebuild it")
        self.hubness = hubness
        self.hub_reference = hub_reference
        self.prototype_shift = prototype_shift
        self.novelty = novelty
        self._pre_c = runtime.classifier_preprocess.eval_transform()
        self._pre_e = runtime.embedder_preprocess.eval_transform()
        self._shared_input = runtime.classifier_preprocess == runtime.embedder_preprocess
        self._infer_lock = threading.Lock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def from_run(cls, run_dir: str | Path, **options: Any) -> Cascade:
        """A train run directory's eager models and its catalog (see :func:`snapsearch.search.sources.open_run`
        for the options)."""
        from snapsearch.search.sources import open_run

        return open_run(cls, run_dir, **options)

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, runtime: str = "onnx", **options: Any) -> Cascade:
        """An export bundle's TorchScript or onnxruntime models and its catalog (verified first; see
        :func:`snapsearch.search.sources.open_bundle` for the options)."""
        from snapsearch.search.sources import open_bundle

        return open_bundle(cls, bundle_dir, runtime=runtime, **options)

    # ------------------------------------------------------------------ one photo
    def draft_size(self, contract: Preprocess) -> int | None:
        """The JPEG draft size the batch path decodes with under ``contract`` (None: full decode)."""
        return contract.resize_size if self.draft_decode else None

    def reads_barcodes(self) -> bool:
        """Whether a photo is searched for barcodes now (``auto``: while a live product has a GTIN)."""
        return self.barcodes is True or (self.barcodes == "auto" and self.products.has_gtins)

    def decode(self, image: QueryImage) -> tuple[np.ndarray, np.ndarray]:
        """The photo decoded for the classifier's and the embedder's contracts, exactly as the evaluator's
        batches decode it (with draft decoding, each contract at its own draft size)."""
        if isinstance(image, io.IOBase):
            image = image.read()
        pre_c, pre_e = self.runtime.classifier_preprocess, self.runtime.embedder_preprocess
        rgb_e = to_rgb(image, max_pixels=self.max_pixels, draft_size=self.draft_size(pre_e))
        if self.draft_size(pre_c) == self.draft_size(pre_e):
            return rgb_e, rgb_e
        return to_rgb(image, max_pixels=self.max_pixels, draft_size=self.draft_size(pre_c)), rgb_e

    def check_request(self, k: int, strategy: str | None) -> str:
        """The strategy name to use; SearchError for an unknown one, an evaluation-only one or a bad k."""
        name = self.default_strategy if strategy is None else strategy
        if name not in self.strategies:
            raise SearchError(f"unknown strategy {name!r}; use one of {sorted(self.searchable())}")
        if isinstance(self.strategies[name], Oracle):
            raise SearchError(f"strategy {name!r} routes by the true category: evaluation only")
        if not 1 <= k <= self.k_max:
            raise SearchError(f"k={k}: ask for 1 to {self.k_max} products")
        return name

    def searchable(self) -> list[str]:
        """Strategies a photo can be searched with (the oracle needs the true category)."""
        return [n for n, s in self.strategies.items() if not isinstance(s, Oracle)]

    def search(self, image: QueryImage, k: int = 10, strategy: str | None = None) -> SearchResult:
        """Rank the catalog's products for one photo (a path, its bytes, a PIL image or an RGB array)."""
        return self.search_batch([image], k, strategy)[0]

    def search_batch(
        self, images: Sequence[QueryImage], k: int = 10, strategy: str | None = None
    ) -> list[SearchResult]:
        """Rank for several photos with one batched forward pass: :meth:`prepare` each, then :meth:`answer`
        (what the service's batcher runs, on its threads). A named ``strategy`` is used for every photo;
        None lets each photo's query type choose its route (:meth:`route`)."""
        self.check_request(k, strategy)
        return self.answer([Query(self.prepare(image), k, strategy) for image in images])

    def answer(self, queries: Sequence[Query]) -> list[SearchResult]:
        """The ranked answers of prepared queries (checked requests), one model pass for all of them."""
        return self.rank_batch(queries, self.infer_batch(queries))

    # ------------------------------------------------------------------ the stages a batcher runs
    def prepare(self, image: QueryImage) -> Prepared:
        """Decode, read a barcode and preprocess one photo: no model, no lock held, safe on any thread."""
        t0 = time.perf_counter()
        rgb_c, rgb = self.decode(image)
        t1 = time.perf_counter()
        code = next(iter(read_codes(rgb)), None) if self.reads_barcodes() else None
        t2 = time.perf_counter()
        answered = code is not None and self.products.by_gtin(code.gtin) is not None  # looked at again when ranked
        xc, xe = (None, None) if answered else self._inputs(rgb_c, rgb)
        return Prepared(rgb_c, rgb, code, xc, xe, t1 - t0 + time.perf_counter() - t2, t2 - t1)

    def infer_batch(self, queries: Sequence[Query]) -> BatchOutputs:
        """One model pass for the queries that need the models (stacked), their query types included; the
        classifier runs when any of their requests' routes reads the gate."""
        rows = [i for i, q in enumerate(queries) if q.prepared.xe is not None]
        if not rows:
            empty = np.zeros((0, len(self.products.categories)), np.float32), np.zeros((0, 0), np.float32)
            return BatchOutputs([], *empty, [], {})
        xe = np.stack([queries[i].prepared.xe for i in rows])  # type: ignore[misc]
        # one contract for both models: each photo's inputs are one array, stacked once
        xc = xe if self._shared_input else np.stack([queries[i].prepared.xc for i in rows])  # type: ignore[misc]
        classify = any(self.gate_needed(queries[i].strategy) for i in rows)
        out = self.infer(xc, xe, classify=classify)
        types = self.detect_types(out.features, len(rows))
        return BatchOutputs(rows, out.probs, out.emb, types, {"classify": out.classify_s, "embed": out.embed_s})

    def rank_batch(self, queries: Sequence[Query], outputs: BatchOutputs) -> list[SearchResult]:
        """Answer a batch inside one read section of the catalog: a barcode found in it answers exactly, every
        other query is ranked by its route, grouped by (strategy, k). A catalog change is seen by the whole
        batch or by none of it. (A barcode product removed since :meth:`prepare` sends its photo through the
        models here, still inside the section: rare, and then the answer stays consistent.)"""
        row_of = {i: j for j, i in enumerate(outputs.rows)}
        probs, emb, types = outputs.probs, outputs.emb, list(outputs.types)
        names = [self.route(types[row_of[i]], q.strategy) if i in row_of else "" for i, q in enumerate(queries)]
        t0 = time.perf_counter()
        reads = self.read_text([queries[i].prepared.rgb for i in outputs.rows], probs)
        ocr_s = time.perf_counter() - t0
        results: list[SearchResult | None] = [None] * len(queries)
        with self.lock:
            t1 = time.perf_counter()
            for i, q in enumerate(queries):
                position = self.products.by_gtin(q.prepared.code.gtin) if q.prepared.code is not None else None
                if position is not None:
                    results[i] = barcode_answer(self.products, position)
                elif i not in row_of:  # its barcode product was removed since it was prepared
                    xc, xe = self._inputs(q.prepared.rgb_c, q.prepared.rgb)
                    late = self.infer_batch([replace(q, prepared=replace(q.prepared, xc=xc, xe=xe))])
                    row_of[i] = len(types)
                    probs, emb = np.concatenate([probs, late.probs]), np.concatenate([emb, late.emb])
                    types.append(late.types[0])
                    reads += self.read_text([q.prepared.rgb], late.probs)
                    names[i] = self.route(late.types[0], q.strategy)
            groups: dict[tuple[str, int], list[int]] = {}
            for i, q in enumerate(queries):
                if results[i] is None:
                    groups.setdefault((names[i], q.k), []).append(i)
            for (name, k), members in groups.items():
                rows = [row_of[i] for i in members]
                depth = k if self.text is None else max(k, self.text.depth)
                rankings, routes = self.rank(emb[rows], probs[rows], depth, name)
                for i, j, ranking, route in zip(members, rows, rankings, routes, strict=True):
                    ranking, text = self.with_text(ranking, reads[j], k)
                    results[i] = self.result(ranking, route, probs[j], name, types[j], text)
            rank_s = time.perf_counter() - t1
        shared = outputs.seconds | {"search": rank_s} | ({"ocr": ocr_s} if self.text else {})
        for result, q in zip(results, queries, strict=True):
            assert result is not None
            stamp(result, q.prepared, shared, len(queries), self.barcodes)
        return [r for r in results if r is not None]

    def _inputs(self, rgb_c: np.ndarray, rgb_e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One photo's model inputs (CHW) under each model's preprocessing contract."""
        xe = self._pre_e(image=rgb_e)["image"].numpy()
        return (xe if self._shared_input else self._pre_c(image=rgb_c)["image"].numpy()), xe

    # ------------------------------------------------------------------ query type and text
    def route(self, query_type: str, strategy: str | None = None) -> str:
        """The strategy a query is ranked with: the named one, else its type's route, else the default."""
        return strategy if strategy is not None else self.type_routes.get(query_type, self.default_strategy)

    def gate_needed(self, strategy: str | None) -> bool:
        """Whether any route this request can take (or the text step's OCR filter) reads the gate."""
        names = {strategy} if strategy is not None else {self.default_strategy, *self.type_routes.values()}
        text_reads_gate = self.text is not None and self.text.ocr_categories is not None
        return text_reads_gate or any(self.strategies[n].uses_gate for n in names)

    def detect_types(self, features: np.ndarray | None, n: int) -> list[str]:
        """Each of ``n`` queries' type from the gate's features (``photo`` for all without a query-type head)."""
        if self.query_types is None or features is None:
            return ["photo"] * n
        return self.query_types.predict(features)

    def read_text(self, rgbs: Sequence[np.ndarray], probs: np.ndarray) -> list[OcrText | None]:
        """OCR for the photos whose gate allows it (None: text search is off, or OCR skipped)."""
        if self.text is None:
            return [None] * len(rgbs)
        top = [self.products.categories[int(c)] for c in probs.argmax(axis=1)]
        return [
            self.text.reader.read(rgb) if self.text.wants_ocr(t) else None for rgb, t in zip(rgbs, top, strict=True)
        ]

    def with_text(self, ranking: Ranking, read: OcrText | None, k: int) -> tuple[Ranking, TextRead | None]:
        """The ranking re-scored with what OCR read (when enough was read), cut to ``k``."""
        if read is None or self.text is None:
            return Ranking(ranking.products[:k], ranking.scores[:k], ranking.items[:k]), None
        query = self.text.query_vector(read)
        if query is None:
            return Ranking(ranking.products[:k], ranking.scores[:k], ranking.items[:k]), TextRead(read.text, False)
        return self.text.fuse(ranking, query, k), TextRead(read.text, True)

    # ------------------------------------------------------------------ the stages
    def infer(self, xc: np.ndarray, xe: np.ndarray, *, classify: bool = True) -> Inferred:
        """Probabilities, embeddings, the gate's features (when the query-type head needs them) and the time
        of each model. ``classify=False`` (a strategy that ignores the gate, and no type head) skips the
        classifier: the probabilities are uniform and cost nothing. A one-trunk runtime computes everything in
        one pass, reported under ``embed`` (the heads add no separate stage)."""
        typed = self.query_types is not None
        with self._infer_lock:  # one forward pass at a time: the 2 cores are better used by intra-op threads
            joint = getattr(self.runtime, "classify_and_embed", None)
            t0 = time.perf_counter()
            if joint is not None:
                probs, emb, feats = self.runtime.classify_embed_features(xe) if typed else (*joint(xe), None)
                return Inferred(probs, emb, feats, 0.0, time.perf_counter() - t0)
            feats = None
            if typed:
                probs, feats = self.runtime.classify_features(xc)
            elif classify:
                probs = self.runtime.classify(xc)
            else:  # the classifier does not run: nothing to time
                n_cat = len(self.products.categories)
                probs = np.full((len(xe), n_cat), 1.0 / n_cat, np.float32)
            t1 = time.perf_counter()
            emb = self.runtime.embed(xe)
            classify_s = t1 - t0 if typed or classify else 0.0
            return Inferred(probs, emb, feats, classify_s, time.perf_counter() - t1)

    def embed_images(self, images: Sequence[QueryImage]) -> np.ndarray:
        """Embeddings of catalog images, decoded and preprocessed as the pool's were."""
        xe = np.stack([self._pre_e(image=self.decode(im)[1])["image"].numpy() for im in images])
        with self._infer_lock:
            return self.runtime.embed(xe)

    def infer_frame(
        self, frame: pd.DataFrame, labels: LabelMaps, io: BatchIO, *, classify: bool, what: str, features: bool = False
    ) -> Outputs:
        """Batched :meth:`infer` over manifest rows (the evaluator's queries), with progress; ``features``:
        also the gate's pooled features (what the query-type head reads)."""
        return run_inference(self.runtime, frame, labels, classify=classify, io=io, what=what, features=features)

    def rank(
        self,
        emb: np.ndarray,
        probs: np.ndarray,
        k: int,
        strategy: str,
        true_partition: np.ndarray | None = None,
        index: VectorStore | None = None,
    ) -> tuple[list[Ranking], list[Route]]:
        """Rank products for already computed embeddings and probabilities: what :meth:`search` does after
        the models, and what the evaluator runs for every strategy on the same outputs. ``index``: another
        view of this catalog (e.g. with products held out); None means the cascade's own."""
        pool = self.index if index is None else index
        return rank(
            self.strategies[strategy], pool, emb, probs, k, true_partition, self.overfetch, self.hubness, self.novelty
        )

    def result(
        self,
        ranking: Ranking,
        route: Route,
        probs: np.ndarray,
        strategy: str,
        query_type: str = "photo",
        text: TextRead | None = None,
    ) -> SearchResult:
        """The typed answer for one ranked query (call under :attr:`lock`: it reads the product table)."""
        shown = self.shown_categories if self.strategies[strategy].uses_gate else 0
        return ranked_answer(
            self.products, ranking, route, probs, strategy, shown, self.rejection.get(strategy), query_type, text
        )

    def info(self) -> dict[str, Any]:
        """What this cascade serves, JSON-ready (``GET /info``)."""
        with self.lock:
            return describe(self)
