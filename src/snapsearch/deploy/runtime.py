"""The inference interface the cascade runs on: calibrated category probabilities and embeddings from
preprocessed image batches. Evaluation depends only on this, so any runtime can stand behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from snapsearch.data.preprocess import Preprocess
from snapsearch.models.classifier import CategoryClassifier
from snapsearch.models.embedder import ProductEmbedder


class CascadeRuntime(Protocol):
    """What a cascade needs from its models. Inputs are NCHW float32 batches made by ``preprocess``."""

    classifier_preprocess: Preprocess
    embedder_preprocess: Preprocess
    categories: list[str]
    embedding_dim: int

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated category probabilities, N x n_categories."""
        ...

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings, N x embedding_dim."""
        ...


class TorchRuntime:
    """Eager PyTorch on the plain ``nn.Module``s (no Lightning)."""

    def __init__(
        self,
        classifier: CategoryClassifier,
        classifier_preprocess: Preprocess,
        embedder: ProductEmbedder,
        embedder_preprocess: Preprocess,
        device: str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.classifier = classifier.eval().to(self.device)
        self.embedder = embedder.eval().to(self.device)
        self.classifier_preprocess = classifier_preprocess
        self.embedder_preprocess = embedder_preprocess
        self.categories = classifier.categories
        self.embedding_dim = embedder.embedding_dim

    @classmethod
    def from_run_dir(
        cls,
        run_dir: str | Path,
        embedder: ProductEmbedder | None = None,
        embedder_preprocess: Preprocess | None = None,
        device: str = "cpu",
    ) -> TorchRuntime:
        """The run's classifier and embedder; pass ``embedder`` to pair the classifier with another one
        (for instance the generic ImageNet embedder baseline)."""
        run_dir = Path(run_dir)
        classifier, cls_pre = CategoryClassifier.load(run_dir / "classifier")
        if embedder is None:
            embedder, embedder_preprocess = ProductEmbedder.load(run_dir / "embedder")
        assert embedder_preprocess is not None
        return cls(classifier, cls_pre, embedder, embedder_preprocess, device)

    @torch.inference_mode()
    def classify(self, batch: np.ndarray) -> np.ndarray:
        return self.classifier.probabilities(torch.from_numpy(batch).to(self.device)).cpu().numpy()

    @torch.inference_mode()
    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.embedder(torch.from_numpy(batch).to(self.device)).cpu().numpy()
