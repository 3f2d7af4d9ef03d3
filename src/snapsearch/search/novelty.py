"""The novelty bonus and the novelty temperature as cascade options (``conf/novelty/``): the reference a source
measures a query's novelty against, the bonus a ranking applies and the tempering of the gate's probabilities
(:mod:`snapsearch.retrieval.novelty`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from snapsearch.retrieval.novelty import NoveltyBonus, NoveltyError, NoveltyReference, NoveltyTemperature
from snapsearch.runtime.models import CascadeRuntime
from snapsearch.runtime.tempered import NoveltyTemperedRuntime
from snapsearch.search.photo_embeddings import PhotoEmbeddings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoveltyOptions:
    """``conf/novelty``: ``weight`` (0 = off), ``depth`` (items fetched and re-scored at least),
    ``temperature_slope`` (the gate's temperature x (1 + slope x ramp); 0 = off; None = as exported: a bundle's
    recorded slope, 0 for a run directory), and for a
    reference built here (a run directory, or export.py): ``neighbours`` (k of the novelty score),
    ``quantiles`` (lo, hi of the trained products' validation photos' novelty: where the bonus is whole, where
    it starts), ``photos_per_product`` (training photos, a seeded sample), ``validation_photos`` (at most)."""

    weight: float
    depth: int
    neighbours: int
    quantiles: tuple[float, float]
    photos_per_product: int
    validation_photos: int
    seed: int
    temperature_slope: float | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> NoveltyOptions | None:
        """None when the group is off (``novelty=none``) or absent."""
        if cfg is None or not cfg.get("enabled", False):
            return None
        lo, hi = (float(q) for q in cfg["quantiles"])
        return cls(
            float(cfg["weight"]),
            int(cfg["depth"]),
            int(cfg["neighbours"]),
            (lo, hi),
            int(cfg["photos_per_product"]),
            int(cfg["validation_photos"]),
            int(cfg["seed"]),
            None if cfg.get("temperature_slope") is None else float(cfg["temperature_slope"]),
        )

    @property
    def slope(self) -> float:
        """The temperature slope applied (0 when none was set)."""
        return self.temperature_slope or 0.0

    def as_exported(self, recorded: float | None) -> NoveltyOptions:
        """These options for a bundle whose export calibrated its default strategy and conformal thresholds at
        the slope ``recorded`` (None: an export before the slope was recorded). An unset slope takes the
        recorded one; a set one that differs is kept, with a warning: the calibration no longer fits it."""
        if self.temperature_slope is None:
            return replace(self, temperature_slope=recorded or 0.0)
        if recorded is not None and not math.isclose(self.temperature_slope, recorded):
            log.warning(
                "novelty.temperature_slope=%g, but the bundle's default strategy and conformal thresholds were "
                "calibrated at %g: leave it unset (null) to serve as exported, or re-export at %g",
                self.temperature_slope,
                recorded,
                self.temperature_slope,
            )
        return self

    @property
    def applied(self) -> bool:
        """Whether searches read the reference: the bonus or the temperature is on (both 0: export.py still
        ships the reference, for later)."""
        return self.weight > 0 or self.slope > 0

    def reference(
        self, photos: PhotoEmbeddings, manifest: pd.DataFrame, validation: pd.DataFrame | None
    ) -> NoveltyReference | None:
        """The training photos' reference, its ramp set on ``validation`` (validation photos; only those of
        trained products are read). None (logged) without training or such validation photos."""
        embeddings, products = photos.trained(manifest, self.photos_per_product, self.seed)
        if not products:
            log.warning("no training photos to measure a query's novelty against: the novelty bonus is off")
            return None
        if validation is not None and len(validation) > self.validation_photos:
            validation = validation.sample(n=self.validation_photos, random_state=self.seed).sort_index()
        # all of them embedded (the hubness reference's photos too, embedded once), trained products' kept
        if validation is None or validation.empty:
            log.warning("no validation photos to set the novelty ramp on: the novelty bonus is off")
            return None
        out = photos.embed(validation, "validation photos", classify=True)  # calibration reads the same pass
        seen = validation.loc[out.rows, "product_id"].isin(products).to_numpy()
        try:
            return NoveltyReference.calibrate(
                embeddings,
                products,
                out.embeddings[seen],
                self.neighbours,
                self.quantiles,
                photos.runtime.embedder_fingerprint,
            )
        except NoveltyError as e:  # too few validation photos: the source still opens, without the bonus
            log.warning("the novelty bonus is off: %s", e)
            return None

    def bonus(self, reference: NoveltyReference | None, product_ids: Sequence[str]) -> NoveltyBonus | None:
        """The bonus a cascade applies over a product table holding ``product_ids`` (None: off)."""
        if reference is None or self.weight <= 0:
            return None
        return NoveltyBonus.for_products(reference, self.weight, self.depth, product_ids)

    def tempered(self, runtime: CascadeRuntime, reference: NoveltyReference | None) -> CascadeRuntime:
        """``runtime`` with its probabilities tempered by the photo's novelty (unchanged when the temperature
        is off or there is no reference: logged where the reference was not built)."""
        if reference is None or self.slope <= 0:
            return runtime
        return NoveltyTemperedRuntime(runtime, NoveltyTemperature(reference, self.slope))


def applied_slope(runtime: CascadeRuntime) -> float:
    """The novelty temperature slope ``runtime`` serves at (0: untempered); what a bundle records."""
    return runtime.temperature.slope if isinstance(runtime, NoveltyTemperedRuntime) else 0.0


def novelty_info(bonus: NoveltyBonus | None, runtime: CascadeRuntime) -> dict[str, Any] | None:
    """What a cascade's novelty bonus and gate temperature are, JSON-ready (``GET /info``, evaluation reports)."""
    tempered = runtime.temperature if isinstance(runtime, NoveltyTemperedRuntime) else None
    if bonus is None and tempered is None:
        return None
    ref = bonus.reference if bonus is not None else tempered.reference  # type: ignore[union-attr]
    return {
        "weight": bonus.weight if bonus is not None else 0.0,
        "depth": bonus.depth if bonus is not None else None,
        "temperature_slope": applied_slope(runtime),
        "neighbours": ref.photos.k,
        "ramp": [ref.lo, ref.hi],
        "training_photos": len(ref.photos.photos),
        "trained_products": len(ref.products),
    }
