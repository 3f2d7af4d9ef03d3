"""A runtime whose category probabilities are tempered by the photo's novelty
(:class:`snapsearch.retrieval.novelty.NoveltyTemperature`): the gate's temperature is fitted on photos of
trained products and it is overconfident on photos that look new. Wrapping the runtime, not the cascade, makes
every reader of the probabilities (strategies, conformal calibration, the default strategy's choice, the
evaluator's gate metrics, the service's answer) see the same tempered ones. One-trunk runtimes only: the
embedding the novelty is measured on comes from the same pass as the probabilities."""

from __future__ import annotations

import numpy as np

from snapsearch.retrieval.novelty import NoveltyError, NoveltyTemperature
from snapsearch.runtime.models import CascadeRuntime


class NoveltyTemperedRuntime:
    """``inner`` (a multi-task network or its bundle) with its probabilities tempered by ``temperature``."""

    def __init__(self, inner: CascadeRuntime, temperature: NoveltyTemperature) -> None:
        if getattr(inner, "classify_and_embed", None) is None:
            raise NoveltyError(
                f"the novelty temperature needs a one-trunk runtime (a multi-task run or bundle); {inner.name!r} "
                "runs two models: set novelty.temperature_slope=0"
            )
        self.inner = inner
        self.temperature = temperature
        self.name = inner.name
        self.classifier_preprocess = inner.classifier_preprocess
        self.embedder_preprocess = inner.embedder_preprocess
        self.categories = inner.categories
        self.embedding_dim = inner.embedding_dim
        self.embedder_fingerprint = inner.embedder_fingerprint
        self.gate_fingerprint = inner.gate_fingerprint
        self.has_gate_features = inner.has_gate_features

    def classify_and_embed(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, emb = self.inner.classify_and_embed(batch)  # type: ignore[attr-defined]
        return self.temperature.apply(probs, emb), emb

    def classify_embed_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs, emb, feats = self.inner.classify_embed_features(batch)  # type: ignore[attr-defined]
        return self.temperature.apply(probs, emb), emb, feats

    def classify_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, _, feats = self.classify_embed_features(batch)
        return probs, feats

    def classify(self, batch: np.ndarray) -> np.ndarray:
        return self.classify_and_embed(batch)[0]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.embed(batch)
