"""Open the eager runtime a run directory asks for: its trained cascade (separate models or one multi-task
network), a generic ImageNet embedder, or the classifier's own trunk (a bundle's runtime is
:class:`~snapsearch.runtime.models.BundleRuntime`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snapsearch.data.preprocess import Preprocess
from snapsearch.models.embedder import ProductEmbedder
from snapsearch.runtime.models import CascadeRuntime, MultiTaskRuntime, SharedTrunkRuntime, TorchRuntime
from snapsearch.utils.layout import MULTITASK_STAGES, RunDir

EMBEDDERS = ("trained", "generic", "shared", "multitask")


def run_runtime(
    run_dir: str | Path,
    embedder: str = "trained",
    generic: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> CascadeRuntime:
    """Eager PyTorch on a run directory.

    Args:
        embedder: ``trained`` (the run's own cascade: its fine-tuned embedder beside its classifier, or its
            multi-task network when that is what it trained), ``multitask`` (that network, even in a run that
            also has separate models), ``generic`` (an ImageNet trunk's pooled features, described by
            ``generic``: ``backbone``, ``embedding_dim``, ``gem_p``) or ``shared`` (the classifier's pooled
            features: one trunk, no embedding training).
    """
    run = RunDir(Path(run_dir))
    if embedder == "multitask" or (embedder == "trained" and run.cascade_stages() == MULTITASK_STAGES):
        return MultiTaskRuntime.from_run_dir(run.root, device=device)
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
