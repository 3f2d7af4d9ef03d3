"""The ``Cascade``: one photo in, ranked products out. Every caller ranks through it (the evaluator, export
verification, ``search.py``, the service), so a photo is never ranked two ways.

A cascade holds a runtime (eager PyTorch, TorchScript or onnxruntime), the partitioned index of the catalog,
the product table the index points into, and the routing strategies it may use. Open one with
:meth:`Cascade.from_run` or :meth:`Cascade.from_bundle`.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.preprocess import Preprocess
from snapsearch.retrieval import DEFAULT_OVERFETCH, Oracle, Ranking, Route, Strategy, rank
from snapsearch.retrieval.store import VectorStore
from snapsearch.runtime.batch import BatchIO, Outputs, run_inference
from snapsearch.runtime.models import CascadeRuntime
from snapsearch.search.answers import barcode_answer, ranked_answer
from snapsearch.search.barcode import read_codes
from snapsearch.search.products import ProductTable
from snapsearch.search.query_image import QueryImage, to_rgb
from snapsearch.search.query_type import QueryTypeError, QueryTypeHead, check_routes
from snapsearch.search.result import STAGES, SearchResult, TextRead
from snapsearch.search.text import OcrText, TextSearch

MS = 1e3


class Inferred(NamedTuple):
    """One batch through the models: what the ranking and the query-type head read, and the time taken."""

    probs: np.ndarray
    emb: np.ndarray
    features: np.ndarray | None  # the gate's pooled features, when a query-type head reads them
    classify_s: float
    embed_s: float


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
        lock: guards the index and product table against a concurrent catalog change (the live catalog's).
        pool_skipped: catalog images skipped as unreadable when the index was built (reported).
        barcodes: read retail barcodes first; a code found in the catalog (products' ``gtin``) answers the
            query exactly, without the models (their time is then under ``barcode``, not ``decode``).
        query_types: the head that tells shop photos, catalog-like images and screenshots apart (from the
            gate's pooled features); None treats every query as a photo.
        type_routes: query type -> strategy, for requests that name none (e.g. ``{screenshot: global}``);
            a type without a route takes ``default_strategy``.
        text: OCR + text encoder + fusion: the words on the pack re-score the route's candidates.
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
        barcodes: bool = False,
        query_types: QueryTypeHead | None = None,
        type_routes: Mapping[str, str | None] | None = None,
        text: TextSearch | None = None,
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
        self.barcodes = barcodes
        if query_types is not None and (
            query_types.gate_fingerprint != runtime.gate_fingerprint or not runtime.has_gate_features
        ):
            raise QueryTypeError("the query-type head read another gate's features: retrain it for this one")
        self.query_types = query_types
        self.type_routes = check_routes(type_routes or {}, list(strategies))
        self.text = text
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
        """Rank for several photos with one batched forward pass (timings are the batch's, per photo;
        with one photo, exactly its own). A named ``strategy`` is used for every photo; None lets each
        photo's query type choose its route (:meth:`route`)."""
        self.check_request(k, strategy)
        if not images:
            return []
        t0 = time.perf_counter()
        decoded = [self.decode(im) for im in images]
        rgbs = [e for _, e in decoded]
        tb = time.perf_counter()
        codes = [next(iter(read_codes(rgb)), None) for rgb in rgbs] if self.barcodes else [None] * len(rgbs)
        barcode_s = time.perf_counter() - tb
        exact: list[int | None] = [None] * len(images)
        results: list[SearchResult | None] = [None] * len(images)
        if any(codes):
            with self.lock:  # one read: a removal cannot slip between the lookup and the answer
                exact = [self.products.by_gtin(c.gtin) if c is not None else None for c in codes]
                for i, position in enumerate(exact):
                    if position is not None:
                        results[i] = barcode_answer(self.products, position)
        todo = [i for i, position in enumerate(exact) if position is None]  # the photos that need the models
        classify_s = embed_s = ocr_s = 0.0
        t1 = time.perf_counter()
        if todo:
            xc, xe = self.preprocess([decoded[i][0] for i in todo], [rgbs[i] for i in todo])
            t1 = time.perf_counter()
            probs, emb, feats, classify_s, embed_s = self.infer(xc, xe, classify=self.gate_needed(strategy))
            types = self.detect_types(feats, len(emb))
            names = [self.route(t, strategy) for t in types]
            reads = self.read_text([rgbs[i] for i in todo], probs)
            ocr_s = sum(r.seconds for r in reads if r is not None)
        t2 = time.perf_counter()
        with self.lock:
            if todo:
                depth = k if self.text is None else max(k, self.text.depth)
                for name in dict.fromkeys(names):
                    mine = [j for j, n in enumerate(names) if n == name]
                    rankings, routes = self.rank(emb[mine], probs[mine], depth, name)
                    for j, ranking, route in zip(mine, rankings, routes, strict=True):
                        ranking, text = self.with_text(ranking, reads[j], k)
                        results[todo[j]] = self.result(ranking, route, probs[j], name, types[j], text)
        t3 = time.perf_counter()
        per = dict(zip(STAGES, (t1 - t0 - barcode_s, classify_s, embed_s, t3 - t2), strict=True))
        per |= ({"barcode": barcode_s} if self.barcodes else {}) | ({"ocr": ocr_s} if self.text else {})
        for result, rgb, code in zip(results, rgbs, codes, strict=True):
            assert result is not None
            result.timings_ms = {stage: MS * s / len(images) for stage, s in per.items()} | {
                "total": MS * (t3 - t0) / len(images)
            }
            result.image = {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])}
            result.barcode = None if code is None else code.text
        return [r for r in results if r is not None]

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
    def preprocess(self, rgbs_c: Sequence[np.ndarray], rgbs_e: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs (classifier's, embedder's) under each model's preprocessing contract."""
        xe = np.stack([self._pre_e(image=im)["image"].numpy() for im in rgbs_e])
        xc = xe if self._shared_input else np.stack([self._pre_c(image=im)["image"].numpy() for im in rgbs_c])
        return xc, xe

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
        rgbs = [self.decode(im)[1] for im in images]
        xe = np.stack([self._pre_e(image=im)["image"].numpy() for im in rgbs])
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
        return rank(self.strategies[strategy], pool, emb, probs, k, true_partition, self.overfetch)

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
            sizes = np.bincount(
                self.index.item_partition[~getattr(self.index, "removed", np.zeros(self.index.n_items, bool))],
                minlength=self.index.n_partitions,
            )
            return {
                "runtime": self.runtime.name,
                "strategies": self.searchable(),
                "default_strategy": self.default_strategy,
                "categories": list(self.products.categories),
                "n_products": self.products.n_live,
                "n_items": int(sizes.sum()),
                "partition_sizes": {c: int(n) for c, n in zip(self.products.categories, sizes, strict=True)},
                "index": {"factory": self.index.factory, "metric": self.index.metric},
                "embedding_dim": self.runtime.embedding_dim,
                "rejection": self.rejection,
                "k_max": self.k_max,
                "barcodes": self.barcodes,
                "query_types": None if self.query_types is None else list(self.query_types.types),
                "type_routes": self.type_routes,
                "text": None if self.text is None else {"encoder": self.text.encoder.name, "weight": self.text.weight},
            }
