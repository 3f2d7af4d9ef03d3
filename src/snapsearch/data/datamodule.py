"""LightningDataModule over a manifest: the split protocol, label maps, skip-don't-crash image loading."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, RandomSampler, WeightedRandomSampler

from snapsearch.data.augment import build_train_transform
from snapsearch.data.dataset import LabelMaps, ManifestDataset, collate_skipping_bad
from snapsearch.data.draws import ResumableLoader, SeededDraws
from snapsearch.data.manifest import ManifestError, category_at
from snapsearch.data.preprocess import Preprocess
from snapsearch.data.sources import load_manifest
from snapsearch.data.transforms import ScenePhotos
from snapsearch.data.unseen import choose_selection_fold, choose_unseen_products, held_out_rows

log = logging.getLogger(__name__)


class SnapDataModule(pl.LightningDataModule):
    """Splits (DESIGN.md §3): train = ``split == train`` photos plus catalog images (``train_domains``);
    val / test = the query photos of those splits; ``catalog`` = every catalog image (the search pool). All of
    them without what the unseen-products protocol holds out (``data.unseen_products``): every row of those
    products (``mode=all``) or their photos alone (``mode=photos``); only evaluation sees it."""

    def __init__(self, data_cfg: DictConfig, augment_cfg: DictConfig, seed: int) -> None:
        super().__init__()
        self.cfg = data_cfg
        self.seed = seed
        self.augment_cfg = augment_cfg
        manifest = load_manifest(data_cfg)
        held = data_cfg.unseen_products
        unseen = choose_unseen_products(manifest, data_cfg.partition_depth, held.fraction, held.seed)
        fold = choose_selection_fold(
            manifest,
            data_cfg.partition_depth,
            held.selection_fold,
            held.seed,
            unseen,
            keep_photographed=bool(held.get("fold_keeps_photographed", True)),  # runs saved before the key
        )
        self.labels = LabelMaps.from_manifest(manifest, data_cfg.partition_depth, unseen, held.mode, fold)
        # Nothing held out reaches training, selection (validation) or calibration; the selection fold's
        # training photos are out as well (selection reads its validation photos).
        self.manifest = manifest[~held_out_rows(manifest, unseen, held.mode, fold)]
        self.preprocess: Preprocess | None = None
        self._check_splits()
        self._report_gaps()

    def _check_splits(self) -> None:
        df = self.manifest
        for split in ("train", "val"):
            if not ((df["split"] == split) & (df["domain"] == "query")).any():
                raise ManifestError(f"the manifest has no query photos in split {split!r}; training needs both")
        if len(self.labels.categories) < 2:
            raise ManifestError(
                f"only one partition at depth {self.cfg.partition_depth} ({self.labels.categories}); "
                "a category classifier needs at least two; raise data.partition_depth"
            )

    def _report_gaps(self) -> None:
        """Warn, with counts, about data the training can run with but the cascade will do badly on."""
        df = self.manifest
        cats = category_at(df["category"], self.cfg.partition_depth)
        train_photos = (df["domain"] == "query") & (df["split"] == "train")
        unlearned = sorted(set(cats) - set(cats[train_photos]))
        if unlearned:
            log.warning(
                "%d categories have no training photos, so the classifier never learns to route to them: %s",
                len(unlearned),
                unlearned[:10],
            )
        no_catalog = sorted(set(df["product_id"]) - set(df.loc[df["domain"] == "catalog", "product_id"]))
        if no_catalog:
            log.warning(
                "%d products have no catalog image: they cannot be found in the photo -> catalog protocol "
                "(evaluation drops their queries), e.g. %s",
                len(no_catalog),
                no_catalog[:5],
            )

    def attach_preprocess(self, preprocess: Preprocess) -> None:
        """The model's contract decides the input geometry and normalisation."""
        self.preprocess = preprocess

    def frame(self, name: str) -> pd.DataFrame:
        df = self.manifest
        if name == "train":
            return df[(df["split"] == "train") & df["domain"].isin(list(self.cfg.train_domains))]
        if name in ("val", "test"):
            return df[(df["split"] == name) & (df["domain"] == "query")]
        if name == "catalog":
            return df[df["domain"] == "catalog"]
        raise ValueError(f"unknown subset {name!r}; use train, val, test or catalog")

    def scene_photos(self) -> ScenePhotos | None:
        """The store photos catalog images may be composited into (``augment.scene_photos``; ``None`` for a
        pipeline without them): the training split's photos only, never a validation or test photo, nor a
        held-out product's."""
        options = self.augment_cfg.get("scene_photos")
        if options is None:
            return None
        return ScenePhotos.from_manifest(
            self.frame("train"),
            {p: i for i, p in enumerate(self.labels.products)},
            side=int(options.side),
            max_pixels=int(self.cfg.max_image_pixels),
            cache_size=int(options.cache_size),
        )

    def dataset(self, name: str, *, train_transform: bool = False) -> ManifestDataset:
        return self.dataset_from(self.frame(name), train_transform=train_transform)

    def dataset_from(self, frame: pd.DataFrame, *, train_transform: bool = False) -> ManifestDataset:
        if self.preprocess is None:
            raise RuntimeError("attach_preprocess(model contract) must be called before building datasets")
        transform = (
            build_train_transform(self.augment_cfg, self.preprocess, scenes=self.scene_photos())
            if train_transform
            else self.preprocess.eval_transform()
        )
        return ManifestDataset(
            frame,
            self.labels,
            transform,
            max_pixels=self.cfg.max_image_pixels,
            draft_size=self.preprocess.resize_size if self.cfg.draft_decode else None,
        )

    def _loader(self, dataset: Dataset, batch_size: int, *, sampler: Any = None) -> DataLoader:
        """Training loaders pass a sampler: it is wrapped in :class:`SeededDraws` so the epoch's order and
        every sample's augmentations follow from (seed, epoch, position) and replay exactly on resume, and the
        loader is a :class:`ResumableLoader` so a checkpoint inside an epoch resumes at its batch."""
        workers = int(self.cfg.num_workers)
        options: dict[str, Any] = {
            "batch_size": batch_size,
            "num_workers": workers,
            "persistent_workers": workers > 0,
            "collate_fn": collate_skipping_bad,
        }
        if sampler is None:
            return DataLoader(dataset, **options)
        return ResumableLoader(dataset, sampler=SeededDraws(sampler, self.seed, block=batch_size), **options)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train", train_transform=True)
        if not self.cfg.balanced_sampling:
            return self._loader(ds, self.cfg.batch_size, sampler=RandomSampler(ds))
        counts = np.bincount(ds.targets, minlength=len(self.labels.categories))
        weights = torch.as_tensor(1.0 / counts[ds.targets], dtype=torch.double)
        return self._loader(ds, self.cfg.batch_size, sampler=WeightedRandomSampler(weights, len(ds)))

    def embedder_train_dataloader(self, m_per_class: int, catalog_oversample: int) -> DataLoader:
        """M-per-product batches. Catalog images are repeated ``catalog_oversample`` times so a product's
        samples in a batch hold its catalog image as well as its photos (the cross-domain pairs)."""
        from pytorch_metric_learning.samplers import MPerClassSampler

        frame = self.frame("train")
        catalog = frame[frame["domain"] == "catalog"]
        frame = pd.concat([frame, *([catalog] * (catalog_oversample - 1))])
        ds = self.dataset_from(frame, train_transform=True)
        batch = int(self.cfg.batch_size) // m_per_class * m_per_class
        sampler = MPerClassSampler(ds.products, m_per_class, batch_size=batch, length_before_new_iter=len(ds))
        return self._loader(ds, batch, sampler=sampler)

    def catalog_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("catalog"), self.cfg.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), self.cfg.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"), self.cfg.eval_batch_size)
