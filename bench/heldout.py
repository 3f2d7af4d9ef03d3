"""The held-out-products protocol the index-side bench scripts share: a run's photos split as its selection
and evaluation see them, embedded once, and every variant's R@1 by product group with product intervals.

A run trained with ``data.unseen_products`` has *photo-less* products (``labels.json``'s
``unseen_products``: no photo in training, selection or calibration) and, optionally, a *selection fold* (seen
products trained without their photos, whose validation photos stand in for the photo-less ones when a
choice is made). Grocery has one catalog image per product, so a catalog item is a product.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from snapsearch.data.sources import load_manifest
from snapsearch.evaluation.uncertainty import paired_bootstrap
from snapsearch.search.cascade import Cascade
from snapsearch.utils.atomic import atomic_write_text


def embed(cascade: Cascade, paths: list[str], batch: int) -> np.ndarray:
    return np.concatenate([cascade.embed_images(paths[i : i + batch]) for i in range(0, len(paths), batch)])


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


@dataclass(frozen=True)
class HeldOutSplit:
    """The photos of a run with held-out products, split as its selection and evaluation see them."""

    cfg: DictConfig
    held: frozenset[str]  # photo-less products
    fold: frozenset[str]  # the selection fold's products (empty without one)
    train: pd.DataFrame  # training photos of the products trained with photos
    val: pd.DataFrame  # validation photos, no photo-less product's (as in selection)
    test: pd.DataFrame
    catalog: pd.DataFrame  # one catalog image per product, in item order
    item_category: np.ndarray  # each item's category (the gate's label)

    @classmethod
    def load(cls, run: Path) -> HeldOutSplit:
        cfg = OmegaConf.load(run / "config.yaml")
        assert isinstance(cfg, DictConfig)
        labels = json.loads((run / "labels.json").read_text())
        held, fold = frozenset(labels["unseen_products"] or []), frozenset(labels.get("selection_fold") or [])
        manifest = load_manifest(cfg.data)
        queries = manifest[manifest["domain"] == "query"]
        catalog = manifest[manifest["domain"] == "catalog"].drop_duplicates("product_id")
        category = dict(zip(labels["products"], labels["product_category"], strict=True))
        return cls(
            cfg=cfg,
            held=held,
            fold=fold,
            train=queries[(queries["split"] == "train") & ~queries["product_id"].isin(held | fold)],
            val=queries[(queries["split"] == "val") & ~queries["product_id"].isin(held)],
            test=queries[queries["split"] == "test"],
            catalog=catalog,
            item_category=np.array([category[p] for p in catalog["product_id"]]),
        )

    @property
    def products(self) -> list[str]:
        return self.catalog["product_id"].tolist()

    def items(self, photos: pd.DataFrame) -> np.ndarray:
        """Each photo's product as an item index."""
        position = {p: i for i, p in enumerate(self.products)}
        return np.array([position[p] for p in photos["product_id"]])

    @property
    def item_top(self) -> np.ndarray:
        """Each item's top-level group, the first part of its category path (Grocery: Fruit, Packages, ...)."""
        return np.array([c.split("/")[0] for c in self.catalog["category"]])

    @property
    def trained(self) -> np.ndarray:
        """Per item: whether its product was trained with photos."""
        return ~self.catalog["product_id"].isin(self.held | self.fold).to_numpy()

    @property
    def fold_weight(self) -> float:
        """The weight of the fold's validation photos in a choice: the catalog's share of products without
        training photos (0 without a fold)."""
        return len(self.held | self.fold) / len(self.catalog) if self.fold else 0.0

    def test_groups(self) -> dict[str, np.ndarray]:
        """Masks over the test photos: ``seen`` (trained with photos), ``fold``, ``photo_less``."""
        photo_less = self.test["product_id"].isin(self.held).to_numpy()
        fold = self.test["product_id"].isin(self.fold).to_numpy()
        return {"seen": ~photo_less & ~fold, "fold": fold, "photo_less": photo_less}

    def validation_r1(self, scores_val: np.ndarray) -> dict[str, float]:
        """Validation R@1 of the seen products' photos, the fold's, and the two weighted as the catalog's."""
        hit = scores_val.argmax(axis=1) == self.items(self.val)
        in_fold = self.val["product_id"].isin(self.fold).to_numpy()
        parts = {"seen": float(hit[~in_fold].mean()), "fold": float(hit[in_fold].mean()) if self.fold else 0.0}
        return parts | {"weighted": (1 - self.fold_weight) * parts["seen"] + self.fold_weight * parts["fold"]}


def group_rows(
    split: HeldOutSplit, variants: Mapping[str, np.ndarray]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """Per variant (test photos x items scores): global and ``oracle`` (inside the true category) R@1 of each
    product group, and the photo-less photos' hits for :func:`attach_intervals`."""
    truth = split.items(split.test)
    same_category = split.item_category[None, :] == split.item_category[truth][:, None]
    groups = split.test_groups()
    rows: dict[str, dict[str, Any]] = {}
    per_query: dict[str, dict[str, np.ndarray]] = {}
    for name, scores in variants.items():
        hit = scores.argmax(axis=1) == truth
        hit_oracle = np.where(same_category, scores, -np.inf).argmax(axis=1) == truth
        per_query[name] = {"R@1": hit[groups["photo_less"]].astype(np.float64)}
        rows[name] = {
            "seen_R@1": float(hit[groups["seen"]].mean()),
            "photo_less_R@1": float(hit[groups["photo_less"]].mean()),
            "selection_fold_R@1": float(hit[groups["fold"]].mean()) if split.fold else None,
            "seen_oracle_R@1": float(hit_oracle[groups["seen"]].mean()),
            "photo_less_oracle_R@1": float(hit_oracle[groups["photo_less"]].mean()),
        }
    return rows, per_query


def attach_intervals(
    split: HeldOutSplit,
    rows: dict[str, dict[str, Any]],
    per_query: dict[str, dict[str, np.ndarray]],
    baseline: str,
    *,
    resamples: int,
    seed: int,
) -> None:
    """Adds each row's photo-less R@1 interval and its change against ``baseline`` (paired bootstrap over the
    photo-less products), and prints the table."""
    photo_less = split.test_groups()["photo_less"]
    intervals = paired_bootstrap(
        per_query,
        baseline,
        ["R@1"],
        products=split.test["product_id"].to_numpy()[photo_less],
        unit="product",
        resamples=resamples,
        seed=seed,
    )
    print(f"{'variant':36s} {'seen':>6s} {'photo-less [95% CI]':>22s} {'change [95% CI]':>18s}  oracle seen/less")
    for name, row in rows.items():
        ci, change = intervals[name]["metrics"]["R@1"], intervals[name]["relative"]["R@1"]
        row["photo_less_R@1_ci"], row["photo_less_change_ci"] = ci, change
        print(
            f"{name:36s} {row['seen_R@1']:6.3f} {row['photo_less_R@1']:6.3f} [{ci[0]:.3f}, {ci[1]:.3f}] "
            f"[{100 * change[0]:+6.1f}, {100 * change[1]:+6.1f}]%  "
            f"{row['seen_oracle_R@1']:.3f}/{row['photo_less_oracle_R@1']:.3f}"
            + (f"  fold {row['selection_fold_R@1']:.3f}" if split.fold else "")
        )


def open_cascade(run: Path, bundle: Path | None) -> Cascade:
    """The run's eager models, or its export bundle when one is given."""
    return Cascade.from_run(run) if bundle is None else Cascade.from_bundle(bundle)


def embed_split(
    cascade: Cascade, split: HeldOutSplit, batch: int, parts: tuple[str, ...] = ("catalog", "train", "val", "test")
) -> dict[str, np.ndarray]:
    """The cascade's embeddings of the split's image sets named in ``parts`` (``catalog`` in item order)."""
    frames = {"catalog": split.catalog, "train": split.train, "val": split.val, "test": split.test}
    return {part: embed(cascade, frames[part]["path"].tolist(), batch) for part in parts}


def save_result(path: Path, result: dict[str, Any], *, resamples: int, seed: int, started: float) -> None:
    """``result`` with the product bootstrap's description and the wall time since ``started``, written
    atomically."""
    full = result | {
        "bootstrap": {"unit": "product", "resamples": resamples, "seed": seed},
        "seconds": time.perf_counter() - started,
    }
    atomic_write_text(path, json.dumps(full, indent=2))
    print(f"written: {path}")
