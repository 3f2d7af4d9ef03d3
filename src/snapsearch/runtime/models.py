"""The inference interface the cascade runs on: calibrated category probabilities and embeddings from
preprocessed image batches. Evaluation depends only on this, so any runtime can stand behind it:
eager PyTorch on a run directory, or TorchScript / onnxruntime on an export bundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from snapsearch.data.preprocess import Preprocess
from snapsearch.models.artifact import fingerprint
from snapsearch.models.classifier import CategoryClassifier
from snapsearch.models.embedder import ProductEmbedder
from snapsearch.models.multitask import MultiTaskNet
from snapsearch.runtime import threads
from snapsearch.runtime.bundle import BundleError, read_bundle
from snapsearch.utils.layout import RunDir

BUNDLE_RUNTIMES = ("onnx", "onnx_int8", "torchscript")


class CascadeRuntime(Protocol):
    """What a cascade needs from its models. Inputs are NCHW float32 batches made by the preprocessing."""

    name: str
    classifier_preprocess: Preprocess
    embedder_preprocess: Preprocess
    categories: list[str]
    embedding_dim: int
    embedder_fingerprint: str
    gate_fingerprint: str  # the category gate's weights: what a query-type head reading its features needs
    has_gate_features: bool  # False for bundles exported before the gate's features became an output

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated category probabilities, N x n_categories."""
        ...

    def classify_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and the gate trunk's L2-normalised pooled features, from one pass."""
        ...

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings, N x embedding_dim."""
        ...


class TorchRuntime:
    """Eager PyTorch on the plain ``nn.Module``s (no Lightning)."""

    name = "torch"

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
        self.embedder_fingerprint = fingerprint(embedder)
        self.gate_fingerprint = fingerprint(classifier)
        self.has_gate_features = True

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
        run = RunDir(Path(run_dir))
        classifier, cls_pre = CategoryClassifier.load(run.stage("classifier"))
        if embedder is None or embedder_preprocess is None:
            embedder, embedder_preprocess = ProductEmbedder.load(run.stage("embedder"))
        return cls(classifier, cls_pre, embedder, embedder_preprocess, device)

    @torch.inference_mode()
    def classify(self, batch: np.ndarray) -> np.ndarray:
        return self.classifier.probabilities(torch.from_numpy(batch).to(self.device)).cpu().numpy()

    @torch.inference_mode()
    def classify_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, feats = self.classifier.probabilities_and_features(torch.from_numpy(batch).to(self.device))
        return probs.cpu().numpy(), feats.cpu().numpy()

    @torch.inference_mode()
    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.embedder(torch.from_numpy(batch).to(self.device)).cpu().numpy()


class SharedTrunkHeads(torch.nn.Module):
    """The classifier's calibrated probabilities and its L2-normalised pooled features, from one pass: the
    shared-trunk cascade as one module (what the runtime runs, and what can be exported)."""

    def __init__(self, classifier: CategoryClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier.probabilities_and_features(x)


class SharedTrunkRuntime(TorchRuntime):
    """One trunk serves both stages: the in-domain classifier's pooled features are the embedding, so the
    cascade costs one forward pass plus a linear head (the route to a near-zero latency overhead)."""

    name = "torch-shared"

    def __init__(self, classifier: CategoryClassifier, preprocess: Preprocess, device: str = "cpu") -> None:
        embedder = ProductEmbedder(classifier.net, embedding_dim=None, gem_p=1.0, learn_gem=False)
        super().__init__(classifier, preprocess, embedder, preprocess, device)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, device: str = "cpu") -> SharedTrunkRuntime:  # type: ignore[override]
        classifier, preprocess = CategoryClassifier.load(RunDir(Path(run_dir)).stage("classifier"))
        return cls(classifier, preprocess, device)

    def _pooled(self, batch: np.ndarray) -> torch.Tensor:
        net = self.classifier.net
        return net.forward_head(net.forward_features(torch.from_numpy(batch).to(self.device)), pre_logits=True)

    @torch.inference_mode()
    def embed(self, batch: np.ndarray) -> np.ndarray:
        """The trunk's pooled features (exactly what the classifier head sees), L2-normalised."""
        return torch.nn.functional.normalize(self._pooled(batch), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def classify_and_embed(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings from one forward pass of the shared trunk."""
        probs, emb = SharedTrunkHeads(self.classifier)(torch.from_numpy(batch).to(self.device))
        return probs.cpu().numpy(), emb.cpu().numpy()

    def classify_embed_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`classify_and_embed`, plus the gate's features: here the embedding itself."""
        probs, emb = self.classify_and_embed(batch)
        return probs, emb, emb


class MultiTaskRuntime:
    """Eager PyTorch on a multi-task network: one trunk, both heads, one preprocessing contract."""

    name = "torch-multitask"

    def __init__(self, model: MultiTaskNet, preprocess: Preprocess, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.classifier_preprocess = self.embedder_preprocess = preprocess
        self.categories = model.categories
        self.embedding_dim = model.embedding_dim
        self.embedder_fingerprint = self.gate_fingerprint = fingerprint(model)
        self.has_gate_features = True

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, device: str = "cpu") -> MultiTaskRuntime:
        model, preprocess = MultiTaskNet.load(RunDir(Path(run_dir)).stage("multitask"))
        return cls(model, preprocess, device)

    @torch.inference_mode()
    def classify_and_embed(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and embeddings from one forward pass."""
        probs, emb = self.model(torch.from_numpy(batch).to(self.device))
        return probs.cpu().numpy(), emb.cpu().numpy()

    @torch.inference_mode()
    def classify_embed_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities, embeddings and the trunk's pooled features (the query-type head's input)."""
        probs, emb, feats = self.model.outputs(torch.from_numpy(batch).to(self.device))
        return probs.cpu().numpy(), emb.cpu().numpy(), feats.cpu().numpy()

    def classify_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, _, feats = self.classify_embed_features(batch)
        return probs, feats

    @torch.inference_mode()
    def classify(self, batch: np.ndarray) -> np.ndarray:
        return self.classify_and_embed(batch)[0]

    @torch.inference_mode()
    def embed(self, batch: np.ndarray) -> np.ndarray:
        """The embedding head alone (the category head's cost is skipped, not the trunk's)."""
        return self.model.embed(torch.from_numpy(batch).to(self.device)).cpu().numpy()


def load_runner(path: Path, input_name: str) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """A batch -> outputs function for an exported file (every output, in order): onnxruntime for .onnx
    (threads as :func:`snapsearch.runtime.threads.apply` set them), torch.jit for .ts."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = threads.session_options()
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        return lambda batch: tuple(session.run(None, {input_name: batch}))
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(batch: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            out = module(torch.from_numpy(batch))
        return tuple(o.numpy() for o in out) if isinstance(out, tuple) else (out.numpy(),)

    return run


class BundleRuntime:
    """TorchScript or onnxruntime on an export bundle: no Lightning, no training code, no timm.

    A bundle holds either two models (``classifier``, ``embedder``) or one ``multitask`` model with both
    outputs; then :meth:`classify_and_embed` runs it once per batch."""

    def __init__(self, bundle_dir: str | Path, runtime: str, meta: dict[str, Any] | None = None) -> None:
        """``meta``: the bundle's already verified ``bundle.json``; None verifies the bundle here."""
        if runtime not in BUNDLE_RUNTIMES:
            raise ValueError(f"runtime={runtime!r} cannot run a bundle; use one of {BUNDLE_RUNTIMES}")
        bundle_dir = Path(bundle_dir)
        meta = read_bundle(bundle_dir) if meta is None else meta
        models = meta["models"]
        joint = "multitask" in models
        cls_meta, emb_meta = (models["multitask"],) * 2 if joint else (models["classifier"], models["embedder"])
        for kind, m in {"classifier": cls_meta, "embedder": emb_meta}.items():
            if runtime not in m["files"]:
                raise BundleError(f"bundle {bundle_dir} has no {runtime} {kind} (it has {sorted(m['files'])})")
        self.name = runtime
        self.classifier_preprocess = Preprocess.from_dict(cls_meta["preprocess"])
        self.embedder_preprocess = Preprocess.from_dict(emb_meta["preprocess"])
        self.categories = list(cls_meta["categories"])
        self.embedding_dim = int(emb_meta["embedding_dim"])
        self.embedder_fingerprint = emb_meta["fingerprint"]
        self.gate_fingerprint = cls_meta.get("fingerprint", "")  # bundles before query types lack it
        outputs = list(cls_meta.get("outputs", []))
        self._features_output = outputs.index("features") if "features" in outputs else None
        self.has_gate_features = self._features_output is not None
        self._classify = load_runner(bundle_dir / cls_meta["files"][runtime], meta["input_name"])
        self._classify_output = 0
        if joint:  # one file whose outputs are (probabilities, embedding[, features])
            self._embed, self._embed_output = self._classify, 1
            self.classify_and_embed = self._classify_and_embed  # the Cascade and batch inference use it
            self.classify_embed_features = self._classify_embed_features
        else:
            self._embed = load_runner(bundle_dir / emb_meta["files"][runtime], meta["input_name"])
            self._embed_output = 0

    def _run_gate(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return self._classify(np.ascontiguousarray(batch, dtype=np.float32))

    def _classify_and_embed(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._run_gate(batch)
        return out[0], out[1]

    def _gate_features(self, out: tuple[np.ndarray, ...]) -> np.ndarray:
        if self._features_output is None:
            raise BundleError("this bundle's gate has no features output: re-export it (python export.py)")
        return out[self._features_output]

    def _classify_embed_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self._run_gate(batch)
        return out[0], out[1], self._gate_features(out)

    def classify_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._run_gate(batch)
        return out[0], self._gate_features(out)

    def classify(self, batch: np.ndarray) -> np.ndarray:
        return self._classify(np.ascontiguousarray(batch, dtype=np.float32))[self._classify_output]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self._embed(np.ascontiguousarray(batch, dtype=np.float32))[self._embed_output]
