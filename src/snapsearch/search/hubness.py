"""The hubness correction as a cascade option (``conf/hubness/``): the reference photos a source measures its
catalog's densities against, and the correction a ranking applies (:mod:`snapsearch.retrieval.hubness`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from snapsearch.retrieval.hubness import DENSITY, HubCorrection, HubnessError, HubReference
from snapsearch.retrieval.store import VectorStore
from snapsearch.search.photo_embeddings import PhotoEmbeddings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubnessOptions:
    """``conf/hubness``: ``weight`` (0 = off; BENCHMARKS §21 chose 0.25 on a selection fold), ``depth`` (items
    fetched and re-scored at least), and for a reference built here (a run directory, or export.py):
    ``neighbours`` (k of r(g)), ``reference_photos`` (at most this many validation photos, a seeded sample)."""

    weight: float
    depth: int
    neighbours: int
    reference_photos: int
    seed: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> HubnessOptions | None:
        """None when the group is off (``hubness=none``) or absent."""
        if cfg is None or not cfg.get("enabled", False):
            return None
        return cls(
            float(cfg["weight"]),
            int(cfg["depth"]),
            int(cfg["neighbours"]),
            int(cfg["reference_photos"]),
            int(cfg["seed"]),
        )

    @property
    def correction(self) -> HubCorrection | None:
        return HubCorrection(self.weight, self.depth) if self.weight > 0 else None

    def reference(self, embed: PhotoEmbeddings, photos: pd.DataFrame | None) -> HubReference | None:
        """The reference embedded from ``photos`` (validation photos; never test), None (logged) without any."""
        if photos is None or photos.empty:
            log.warning("no validation photos to measure the catalog's hubness against: the correction is off")
            return None
        if len(photos) > self.reference_photos:
            photos = photos.sample(n=self.reference_photos, random_state=self.seed).sort_index()
        out = embed.embed(photos, "validation photos")
        return HubReference.from_photos(out.embeddings, self.neighbours, embed.runtime.embedder_fingerprint)


def correction_for(index: VectorStore, options: HubnessOptions | None, where: str) -> HubCorrection | None:
    """The correction a cascade applies on ``index``: None when off, or (logged) when the index was built
    without densities (an index saved before the correction, or by a backend that keeps no metadata)."""
    if options is None or options.correction is None:
        return None
    if DENSITY not in index.metadata:
        log.warning("the index of %s has no hubness densities: the correction is off (rebuild the index)", where)
        return None
    return options.correction


def hubness_info(correction: HubCorrection | None, reference: HubReference | None) -> dict[str, Any] | None:
    """What a cascade's correction is, JSON-ready (``GET /info``)."""
    if correction is None:
        return None
    return {
        "weight": correction.weight,
        "depth": correction.depth,
        "neighbours": None if reference is None else reference.k,
        "reference_photos": None if reference is None else len(reference.photos),
    }


def item_densities(reference: HubReference | None, embeddings: np.ndarray, n_items: int) -> np.ndarray:
    """The densities of items being added to an index that has the column (a product added live)."""
    if reference is None:
        raise HubnessError(
            f"the index has a {DENSITY!r} column but this cascade has no hubness reference to give new items "
            "theirs: open it with hubness enabled (conf/hubness) or rebuild the index without one"
        )
    if len(embeddings) != n_items:
        raise HubnessError(f"{len(embeddings)} embeddings for {n_items} items")
    return reference.density(embeddings)


def density_column(reference: HubReference | None, embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """The metadata an index built from ``embeddings`` needs for the correction (none without a reference)."""
    return {} if reference is None else {DENSITY: reference.density(embeddings)}


def journalled_densities(event: Mapping[str, Any], column: np.ndarray, n_items: int) -> np.ndarray:
    """The densities a shared catalog's journal event carries for its items; an event journalled before
    they travelled there gets the column's mean (logged: neither favoured nor buried)."""
    if "densities" in event:
        return np.asarray(event["densities"], dtype=np.float32)
    log.warning("a journalled product has no hubness densities (journalled before them): the column's mean")
    return np.full(n_items, float(column.mean()) if len(column) else 0.0, dtype=np.float32)


def added_metadata(
    keys: Iterable[str], image_id: str, n_items: int, densities: Callable[[], np.ndarray]
) -> dict[str, np.ndarray]:
    """The metadata of a product's ``n_items`` items added to a live index: its image id in every field, and
    ``densities()`` (called only then) in the density column when the index has one."""
    keys = list(keys)
    meta = {k: np.full(n_items, image_id) for k in keys if k != DENSITY}
    if DENSITY in keys:
        meta[DENSITY] = np.asarray(densities(), dtype=np.float32)
    return meta
