"""What an export bundle ships beside its models, read back by :func:`snapsearch.search.sources.open_bundle`: the
hubness reference, the prototype shift, the novelty reference and the novelty temperature slope its calibration
was made at. A bundle exported before one of them was shipped gets it rebuilt when the source's data is at hand
(else it is off, logged with a hint to re-export)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.retrieval.hubness import HubReference
from snapsearch.retrieval.novelty import NoveltyReference
from snapsearch.retrieval.prototype_shift import PrototypeShift
from snapsearch.search.calibration import ServingRecord
from snapsearch.search.hubness import HubnessOptions
from snapsearch.search.novelty import NoveltyOptions
from snapsearch.search.photo_embeddings import PhotoEmbeddings
from snapsearch.search.prototype_shift import PrototypeShiftOptions
from snapsearch.utils.layout import HUBNESS, NOVELTY, PROTOTYPE_SHIFT, BundleDir

log = logging.getLogger(__name__)


def bundle_hubness(
    bundle: BundleDir, embed: PhotoEmbeddings, hubness: HubnessOptions | None, photos: pd.DataFrame | None
) -> HubReference | None:
    """The bundle's hubness reference (loaded even with the correction off: its shipped index's densities
    then still grow with the live catalog); an older bundle's is embedded from the validation photos when
    they are at hand (else the correction is off, logged)."""
    if bundle.hubness.is_file():
        return HubReference.load(bundle.hubness, embed.runtime.embedder_fingerprint)
    if hubness is None:
        return None
    if photos is None:
        log.warning("bundle %s has no %s (exported before it): re-export it to correct hubness", bundle.root, HUBNESS)
        return None
    return hubness.reference(embed, photos)


def bundle_shift(
    bundle: BundleDir,
    photos: PhotoEmbeddings,
    options: PrototypeShiftOptions | None,
    manifest: pd.DataFrame | None,
    catalog: Callable[[pd.DataFrame, LabelMaps], pd.DataFrame],
) -> PrototypeShift | None:
    """The bundle's prototype shift; for a bundle exported without one, measured on the training photos and the
    ``catalog`` pool of the manifest when asked for and the manifest is read anyway (else none, logged)."""
    if bundle.prototype_shift.is_file():
        return PrototypeShift.load(bundle.prototype_shift, photos.runtime.embedder_fingerprint)
    if options is None:
        return None
    if manifest is None:
        log.warning("bundle %s has no %s: re-export it to shift the catalog's vectors", bundle.root, PROTOTYPE_SHIFT)
        return None
    return options.measure(photos, manifest, catalog(manifest, photos.labels))


def novelty_as_exported(options: NoveltyOptions | None, record: ServingRecord | None) -> NoveltyOptions | None:
    """The novelty options a bundle opens with: an unset temperature slope is the one its calibration was made
    at (:meth:`NoveltyOptions.as_exported`); with the group off, a bundle calibrated tempered is served
    untempered, logged."""
    recorded = record.temperature_slope if record is not None else None
    if options is None:
        if recorded:
            log.warning(
                "the bundle was calibrated with the gate's novelty temperature (slope %g) and novelty=none serves "
                "it untempered: its default strategy and conformal thresholds no longer fit; keep the novelty group",
                recorded,
            )
        return None
    return options.as_exported(recorded)


def bundle_novelty(
    bundle: BundleDir,
    photos: PhotoEmbeddings,
    options: NoveltyOptions | None,
    manifest: pd.DataFrame | None,
    validation: pd.DataFrame | None,
) -> NoveltyReference | None:
    """The bundle's novelty reference when the bonus or the temperature is on; for a bundle exported without one, built
    from the training photos when the manifest is read anyway (else none, logged)."""
    if options is None or not options.applied:
        return None
    if bundle.novelty.is_file():
        return NoveltyReference.load(bundle.novelty, photos.runtime.embedder_fingerprint)
    if manifest is None:
        log.warning("bundle %s has no %s: re-export it for the novelty bonus and temperature", bundle.root, NOVELTY)
        return None
    return options.reference(photos, manifest, validation)
