"""Open the eager runtime a run directory asks for: its fine-tuned embedder, a generic ImageNet one, or the
classifier's own trunk (a bundle's runtime is :class:`~snapsearch.runtime.models.BundleRuntime`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snapsearch.data.preprocess import Preprocess
from snapsearch.models.embedder import ProductEmbedder
from snapsearch.runtime.models import CascadeRuntime, SharedTrunkRuntime, TorchRuntime
from snapsearch.utils.layout import RunDir

EMBEDDERS = ("trained", "generic", "shared")


def run_runtime(
    run_dir: str | Path,
    embedder: str = "trained",
    generic: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> CascadeRuntime:
    """Eager PyTorch on a run directory.

    Args:
        embedder: ``trained`` (the run's fine-tuned embedder), ``generic`` (an ImageNet trunk's pooled
            features, described by ``generic``: ``backbone``, ``embedding_dim``, ``gem_p``) or ``shared``
            (the classifier's pooled features: one trunk for both stages).
    """
    run = RunDir(Path(run_dir))
    if embedder == "shared":
        return SharedTrunkRuntime.from_run_dir(run.root, device=device)
    model, pre = eager_embedder(run.root, embedder, generic)
    return TorchRuntime.from_run_dir(run.root, embedder=model, embedder_preprocess=pre, device=device)


def eager_embedder(
    run_dir: str | Path, embedder: str = "trained", generic: Mapping[str, Any] | None = None
) -> tuple[ProductEmbedder, Preprocess]:
    """The eager embedder ``embedder=`` names (``trained`` or ``generic``) and its preprocessing."""
    if embedder == "generic":
        if generic is None:
            raise ValueError("embedder=generic needs the generic embedder's description (generic_embedder=...)")
        return ProductEmbedder.build(dict(generic["backbone"]), generic["embedding_dim"], generic["gem_p"])
    if embedder != "trained":
        raise ValueError(f"embedder={embedder!r}: use one of {EMBEDDERS}")
    return ProductEmbedder.load(RunDir(Path(run_dir)).stage("embedder"))
