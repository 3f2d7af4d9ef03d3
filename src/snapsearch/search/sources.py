"""Open a :class:`~snapsearch.search.cascade.Cascade` from a train run directory or an export bundle.

A bundle is verified (every file against its sha256) before anything in it is read. The catalog index is
loaded when one is given or shipped (``include_index=true`` at export), else built by embedding the
catalog images of the source's manifest (with progress: expect minutes per 10k images on a CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.protocols import known_rows, without_unseen
from snapsearch.data.sources import load_manifest
from snapsearch.retrieval import Adaptive, Fusion, GlobalSearch, Strategy, Top1, TopK
from snapsearch.retrieval.hubness import HubReference
from snapsearch.retrieval.novelty import NoveltyReference
from snapsearch.retrieval.prototype_shift import PrototypeShift
from snapsearch.retrieval.store import VectorStore, load_store
from snapsearch.runtime.batch import BatchIO
from snapsearch.runtime.bundle import BundleError, read_bundle
from snapsearch.runtime.factory import run_runtime
from snapsearch.runtime.models import BundleRuntime, CascadeRuntime
from snapsearch.runtime.tempered import NoveltyTemperedRuntime
from snapsearch.search.calibration import ServingRecord, resolve_default, unfitted
from snapsearch.search.catalog_index import IndexSpec, embed_pool, label_indices, shards_index
from snapsearch.search.hubness import HubnessOptions, correction_for
from snapsearch.search.novelty import NoveltyOptions
from snapsearch.search.photo_embeddings import PhotoEmbeddings
from snapsearch.search.products import PRODUCTS_FILE, ProductTable
from snapsearch.search.prototype_shift import PrototypeShiftOptions
from snapsearch.search.query_type import QueryTypeHead
from snapsearch.search.shipped import bundle_hubness, bundle_novelty, bundle_shift, novelty_as_exported
from snapsearch.search.text import TextOptions
from snapsearch.utils.layout import BundleDir, RunDir

log = logging.getLogger(__name__)

C = TypeVar("C")


class SourceError(ValueError):
    """A run directory or bundle that cannot be opened; the message says what is missing and what to do."""


def default_strategies() -> dict[str, Strategy]:
    """Every strategy a photo can be searched with, each with its documented defaults (the conformal one
    joins when calibration photos are at hand)."""
    return {"global": GlobalSearch(), "top1": Top1(), "topk": TopK(), "adaptive": Adaptive(), "fusion": Fusion()}


def catalog_pool(manifest: pd.DataFrame, labels: LabelMaps) -> pd.DataFrame:
    """The catalog images (the search pool a service answers from) of products the models know."""
    return known_rows(manifest[manifest["domain"] == "catalog"], labels)


def calibration_photos(manifest: pd.DataFrame, labels: LabelMaps) -> pd.DataFrame:
    """Validation photos: what conformal sets and rejection thresholds are calibrated on (never test, never
    an unseen product's)."""
    photos = known_rows(manifest[(manifest["domain"] == "query") & (manifest["split"] == "val")], labels)
    return without_unseen(photos, labels)


def calibrate(
    strategies: Mapping[str, Strategy], photos: pd.DataFrame | None, embedded: PhotoEmbeddings
) -> dict[str, Strategy]:
    """Fit the unfitted conformal strategies on ``photos``; without photos they are dropped (logged). Runs
    before the references that embed the same photos, so that one classified pass serves them all."""
    out = dict(strategies)
    pending = unfitted(out)
    if not pending:
        return out
    if photos is None or photos.empty:
        log.warning("no validation photos to calibrate %s: dropped (set their threshold to keep them)", pending)
        return {n: s for n, s in out.items() if n not in pending}
    c_out = embedded.embed(photos, "calibration photos", classify=True)
    truth = label_indices(photos.loc[c_out.rows], embedded.labels)[0]
    for name in pending:
        out[name].fit(c_out.probs, truth)  # type: ignore[union-attr]
    return out


def query_type_head(folder: Path, runtime: CascadeRuntime) -> QueryTypeHead | None:
    """The source's query-type head, when it has one trained on this runtime's gate (else None, logged:
    every query is then searched as a photo)."""
    if not QueryTypeHead.exists(folder):
        return None
    head = QueryTypeHead.load(folder)
    if not runtime.has_gate_features:
        log.warning("the bundle's gate does not output its features (exported before query types): re-export it")
        return None
    if head.gate_fingerprint != runtime.gate_fingerprint:
        log.warning("the query-type head at %s read another gate's features: not used", folder)
        return None
    return head


def _extras(
    products: ProductTable,
    head: QueryTypeHead | None,
    text: TextOptions | None,
    index: VectorStore,
    hubness: HubnessOptions | None,
    reference: HubReference | None,
    shift: PrototypeShift | None,
    novelty: NoveltyOptions | None,
    novelty_reference: NoveltyReference | None,
    where: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The cascade options that depend on the opened source: its query-type head, the text search, the
    hubness correction (the reference is kept for the densities of products added live), the prototype
    shift (kept to move products added live as the index's were) and the novelty bonus."""
    product_ids = [products[i].product_id for i in range(len(products))]
    return options | {
        "query_types": head,
        "text": None if text is None else text.build(products),
        "hubness": correction_for(index, hubness, where),
        "hub_reference": reference,
        "prototype_shift": shift,
        "novelty": None if novelty is None else novelty.bonus(novelty_reference, product_ids),
    }


def _options(
    data_cfg: DictConfig,
    batch_size: int,
    num_workers: int,
) -> BatchIO:
    return BatchIO(batch_size, num_workers, int(data_cfg.max_image_pixels), bool(data_cfg.draft_decode))


def _index(
    runtime: CascadeRuntime,
    index_path: str | Path | None,
    shards: str | Path | None,
    pool: pd.DataFrame | None,
    labels: LabelMaps,
    spec: IndexSpec,
    io: BatchIO,
    hub: HubReference | None,
    shift: PrototypeShift | None,
) -> tuple[VectorStore, int]:
    """(the index, pool images skipped as unreadable while building it); a built index holds the vectors
    moved by ``shift`` and gets the hubness densities of ``hub`` (a loaded one is as it was saved)."""
    if index_path is not None:
        index = load_store(
            index_path, expected_embedder_checksum=runtime.embedder_fingerprint, expected_dim=runtime.embedding_dim
        )
        if pool is not None and index.n_items != len(pool):
            raise SourceError(
                f"index at {index_path} holds {index.n_items} items, the pool has {len(pool)} images; "
                "drop index_path to build the index for this pool"
            )
        return index, 0
    if pool is None or pool.empty:
        raise SourceError("no catalog index was given and the manifest holds no catalog image to build one from")
    if shards is not None:
        return shards_index(spec, runtime, pool, labels, Path(shards), hub, shift)
    return embed_pool(spec, runtime, pool, labels, io, hub, shift)


def open_run(
    cls: type[C],
    run_dir: str | Path,
    *,
    embedder: str = "trained",
    generic_embedder: Mapping[str, Any] | None = None,
    device: str = "cpu",
    data: DictConfig | None = None,
    pool: pd.DataFrame | None = None,
    index_path: str | Path | None = None,
    shards: str | Path | None = None,
    index: IndexSpec | None = None,
    strategies: Mapping[str, Strategy] | None = None,
    default_strategy: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    query_types: bool = True,
    text: TextOptions | None = None,
    hubness: HubnessOptions | None = None,
    prototype_shift: PrototypeShiftOptions | None = None,
    novelty: NoveltyOptions | None = None,
    **cascade_options: Any,
) -> C:
    """A cascade on a run directory's eager models.

    Args:
        embedder, generic_embedder, device: which runtime (see :func:`snapsearch.runtime.factory.run_runtime`).
        data: a data config to read instead of the run's own (another manifest).
        pool: the manifest rows to index; None means the catalog images.
        index_path: a saved index to load instead of building one (refused if another embedder built it).
        shards: build the index from ``python embed.py`` shards of ``pool`` instead of embedding it here.
        index: how to build the index (faiss factory, metric); None means exact (Flat) cosine search.
        strategies: routing strategies by name; None means :func:`default_strategies`. Unfitted conformal
            strategies are calibrated on the run's validation photos.
        default_strategy: the one a request that names none gets; None means ``top1`` (a run has no
            validation choice: a bundle does).
        batch_size, num_workers: batched embedding of the pool and the calibration photos.
        query_types: use the source's query-type head (``stages=[..., query_type]``) when it has one.
        text: search with the words read from the photo too (None: images only).
        hubness: the hubness correction, its reference embedded from the run's validation photos (None: off).
        prototype_shift: move the catalog's vectors by offsets measured on the run's training photos (None:
            off). A loaded ``index_path`` keeps its vectors as they were indexed; products added live move.
        novelty: the novelty bonus and the gate's novelty temperature, their reference embedded from the run's
            training photos and its ramp set on the validation photos of trained products (None or weight and
            slope 0: off, nothing measured).
        cascade_options: passed on to the Cascade (``rejection``, ``overfetch``, ``k_max``, ``type_routes``...).
    """
    run = RunDir(Path(run_dir))
    if not run.exists():
        raise SourceError(f"{run.root} is not a train run directory (no {run.labels.name} / {run.config.name})")
    data_cfg = data if data is not None else OmegaConf.load(run.config).data
    labels = LabelMaps.load(run.labels)
    manifest = load_manifest(data_cfg)
    runtime = run_runtime(run.root, embedder, generic_embedder, device)
    io = _options(data_cfg, batch_size, num_workers)
    pool = catalog_pool(manifest, labels) if pool is None else pool
    photos = calibration_photos(manifest, labels)
    embedded = PhotoEmbeddings(runtime, labels, io)
    novel = novelty.reference(embedded, manifest, photos) if novelty is not None and novelty.applied else None
    runtime, embedded = _tempered(runtime, embedded, novelty, novel)
    chosen = calibrate(strategies or default_strategies(), photos, embedded)
    reference = hubness.reference(embedded, photos) if hubness is not None else None
    shift = None
    if prototype_shift is not None:
        shift = prototype_shift.measure(embedded, manifest, catalog_pool(manifest, labels))
    built, skipped = _index(runtime, index_path, shards, pool, labels, index or IndexSpec(), io, reference, shift)
    products = ProductTable.from_manifest(manifest, labels)
    head = query_type_head(run.query_type, runtime) if query_types else None
    return cls(  # type: ignore[call-arg]
        runtime,
        built,
        products,
        chosen,
        resolve_default(default_strategy, chosen, None),
        max_pixels=io.max_pixels,
        draft_decode=io.draft,
        pool_skipped=skipped,
        **_extras(
            products, head, text, built, hubness, reference, shift, novelty, novel, str(run.root), cascade_options
        ),
    )


def open_bundle(
    cls: type[C],
    bundle_dir: str | Path,
    *,
    runtime: str = "onnx",
    data: DictConfig | None = None,
    pool: pd.DataFrame | None = None,
    index_path: str | Path | None = None,
    shards: str | Path | None = None,
    index: IndexSpec | None = None,
    strategies: Mapping[str, Strategy] | None = None,
    default_strategy: str | None = None,
    rejection: Mapping[str, float] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    query_types: bool = True,
    text: TextOptions | None = None,
    hubness: HubnessOptions | None = None,
    prototype_shift: PrototypeShiftOptions | None = None,
    novelty: NoveltyOptions | None = None,
    **cascade_options: Any,
) -> C:
    """A cascade on an export bundle (verified before anything in it is read).

    The product table is the bundle's ``products.json``; the index is ``index_path``, else the bundle's own
    (``include_index=true`` at export), else built from the catalog images of the bundle's source manifest
    (``data`` overrides which manifest).

    What the export calibrated is used as it is (:class:`~snapsearch.search.calibration.ServingRecord`):
    ``strategies=None`` adds the bundle's calibrated conformal strategies to :func:`default_strategies`, an
    unfitted conformal strategy takes the recorded threshold of its coverage, ``default_strategy=None`` is
    the bundle's validation choice and ``rejection=None`` its rejection thresholds (``{}``: never reject).
    Only what the bundle lacks (an older export, another coverage) is calibrated on the source's validation
    photos, when its manifest is readable. The hubness reference is the bundle's ``hubness.npz`` (else
    embedded from the validation photos when the manifest is read anyway). The prototype shift is the
    bundle's ``prototype_shift.npz`` whenever it has one (export.py decided it; its shipped index was built
    with it); ``prototype_shift`` only measures one for a bundle exported without. The novelty reference is
    the bundle's ``novelty.npz`` (else built as :func:`open_run` does when the manifest is read anyway),
    read only when ``novelty`` asks for the bonus or the temperature; an unset temperature slope is the one the
    bundle was calibrated at (``bundle.json``). Other arguments as in :func:`open_run`.
    """
    bundle = BundleDir(Path(bundle_dir))
    meta = read_bundle(bundle.root)  # integrity first: nothing below reads an unverified file
    if not (bundle.root / PRODUCTS_FILE).is_file():
        raise BundleError(f"bundle {bundle.root} has no {PRODUCTS_FILE} (exported by an older version); re-export it")
    labels = LabelMaps.load(bundle.labels)
    products = ProductTable.load(bundle.root / PRODUCTS_FILE)
    models = BundleRuntime(bundle.root, runtime, meta)
    data_cfg = data if data is not None else OmegaConf.load(bundle.source_config).data
    io = _options(data_cfg, batch_size, num_workers)
    record = ServingRecord.from_meta(meta)
    novelty = novelty_as_exported(novelty, record)
    wanted = dict(strategies) if strategies else default_strategies()
    if not strategies and record is not None:
        wanted |= record.strategies()
    wanted = record.apply(wanted) if record is not None else wanted
    if record is None and (unfitted(wanted) or default_strategy is None):
        log.warning(
            "bundle %s was exported before export.py recorded its calibration (default strategy, conformal "
            "thresholds): calibrating at start on the validation photos, default %r. Re-export it "
            "(python export.py run_dir=...) to start in about a second without the dataset",
            bundle.root,
            default_strategy or "top1",
        )
    # the shipped index is a FAISS one: another backend (index=qdrant) is built from the catalog instead
    faiss = index is None or index.backend == "faiss"
    shipped = bundle.index if bundle.index.is_dir() and pool is None and shards is None and faiss else None
    manifest = None
    if (index_path is None and shipped is None) or unfitted(wanted):
        manifest = load_manifest(data_cfg)
    if pool is None and manifest is not None:
        pool = catalog_pool(manifest, labels)
    photos = calibration_photos(manifest, labels) if manifest is not None else None
    embedded = PhotoEmbeddings(models, labels, io)
    novel = bundle_novelty(bundle, embedded, novelty, manifest, photos)
    searching, embedded = _tempered(models, embedded, novelty, novel)
    chosen = calibrate(wanted, photos, embedded)
    reference = bundle_hubness(bundle, embedded, hubness, photos)
    shift = bundle_shift(bundle, embedded, prototype_shift, manifest, catalog_pool)
    spec = index or IndexSpec()
    built, skipped = _index(models, index_path or shipped, shards, pool, labels, spec, io, reference, shift)
    head = query_type_head(bundle.query_type, models) if query_types else None
    if rejection is None:
        rejection = {n: t for n, t in (record.rejection if record else {}).items() if n in chosen}
    return cls(  # type: ignore[call-arg]
        searching,
        built,
        products,
        chosen,
        resolve_default(default_strategy, chosen, record.default_strategy if record else None),
        max_pixels=io.max_pixels,
        draft_decode=io.draft,
        pool_skipped=skipped,
        rejection=rejection,
        **_extras(
            products, head, text, built, hubness, reference, shift, novelty, novel, str(bundle.root), cascade_options
        ),
    )


def _tempered(
    runtime: CascadeRuntime,
    embedded: PhotoEmbeddings,
    options: NoveltyOptions | None,
    reference: NoveltyReference | None,
) -> tuple[CascadeRuntime, PhotoEmbeddings]:
    """The runtime every later step reads (its probabilities tempered by the novelty when that is on, before
    anything is calibrated on them) and its photo embeddings (those already taken kept, tempered alike)."""
    tempered = runtime if options is None else options.tempered(runtime, reference)
    if not isinstance(tempered, NoveltyTemperedRuntime):
        return runtime, embedded
    return tempered, embedded.tempered(tempered)
