"""Hubness correction: do the catalog images of products trained on attract the photos of products that were not?

A product whose shopper photos were trained on has its catalog image in a dense neighbourhood of photos; a
photo-less product's catalog image does not, so a photo of it lands nearer a trained product (a *hub*). The
correction tried here is CSLS's (Conneau et al., 2018, for cross-lingual retrieval): score(q, g) = cos(q, g)
- beta * r(g), where r(g) is the mean cosine of catalog image g to its k nearest photos of a reference set
(beta = 0.5 ranks as CSLS does: 2 cos - r(q) - r(g), r(q) being constant per query). Reference sets:

- ``stream``: the photos being searched, as a service would use its log of recent queries (transductive: no
  labels are read, but the queries' own photos shape the correction);
- ``validation``: the validation photos (seen products only: the photo-less products' photos never reach
  selection), fixed before the test photos arrive.

beta is chosen on the validation photos as the stream (best R@1, ties to the smaller beta). Without a
selection fold they are seen products' photos only, so the choice reads the correction's cost, not its gain.
With one (``data.unseen_products.selection_fold``: seen products trained without their photos) the R@1 of
the fold's photos and of the other seen products' photos are weighted by the catalog's share of products
without and with training photos. Then global search and the search inside the true category (``oracle``)
on the test photos, product R@1 per group (products with training photos, the fold's, photo-less), with the
photo-less change against no correction in a paired bootstrap over products::

    python bench/hub_correction.py --run /work/runs/photos_dann5_10ep_s2 --bundle /work/bundles/photos_dann5_10ep_s2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from snapsearch.data.sources import load_manifest
from snapsearch.evaluation.uncertainty import paired_bootstrap
from snapsearch.retrieval.hubness import HubReference
from snapsearch.search.cascade import Cascade
from snapsearch.utils.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def embed(cascade: Cascade, paths: list[str], batch: int) -> np.ndarray:
    return np.concatenate([cascade.embed_images(paths[i : i + batch]) for i in range(0, len(paths), batch)])


def hits(scores: np.ndarray, truth: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Per query: whether the true product ranks first (among ``allowed`` products where given)."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    return scores.argmax(axis=1) == truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="a multi-task run trained with held-out products")
    ap.add_argument("--bundle", required=True, type=Path, help="that run's export bundle")
    ap.add_argument("--k", type=int, default=10, help="nearest reference photos per catalog image")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hub_correction.json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    cfg = OmegaConf.load(args.run / "config.yaml")
    labels = json.loads((args.run / "labels.json").read_text())
    held, fold = set(labels["unseen_products"] or []), set(labels.get("selection_fold") or [])
    manifest = load_manifest(cfg.data)
    queries = manifest[manifest["domain"] == "query"]
    test, val = queries[queries["split"] == "test"], queries[queries["split"] == "val"]
    val = val[~val["product_id"].isin(held)]  # as in selection: no photo-less product's photo
    catalog = manifest[manifest["domain"] == "catalog"].drop_duplicates("product_id")  # Grocery: one each
    products = catalog["product_id"].tolist()
    position = {p: i for i, p in enumerate(products)}
    category = dict(zip(labels["products"], labels["product_category"], strict=True))
    product_category = np.array([category[p] for p in products])

    cascade = Cascade.from_bundle(args.bundle)
    gallery = embed(cascade, catalog["path"].tolist(), args.batch)
    q_test = embed(cascade, test["path"].tolist(), args.batch)
    q_val = embed(cascade, val["path"].tolist(), args.batch)
    truth = np.array([position[p] for p in test["product_id"]])
    truth_val = np.array([position[p] for p in val["product_id"]])
    photo_less = np.array([p in held for p in test["product_id"]])
    in_fold, val_fold = test["product_id"].isin(fold).to_numpy(), val["product_id"].isin(fold).to_numpy()
    photographed = ~photo_less & ~in_fold
    fold_weight = (len(held) + len(fold)) / len(products) if fold else 0.0
    same_category = product_category[None, :] == product_category[truth][:, None]

    r_stream, r_val = (HubReference.from_photos(q, args.k).density(gallery) for q in (q_test, q_val))
    betas = [0.0, *args.betas]
    cosine, cosine_val = q_test @ gallery.T, q_val @ gallery.T  # every variant shifts these

    def validation_r1(beta: float) -> dict[str, float]:
        hit = hits(cosine_val - beta * r_val, truth_val)
        parts = {"seen": float(hit[~val_fold].mean()), "fold": float(hit[val_fold].mean()) if fold else 0.0}
        return parts | {"weighted": (1 - fold_weight) * parts["seen"] + fold_weight * parts["fold"]}

    validation = {beta: validation_r1(beta) for beta in betas}
    chosen = max(betas, key=lambda beta: (validation[beta]["weighted"], -beta))
    variants = {"none": cosine} | {
        f"{name}, beta {beta:g}": cosine - beta * r
        for name, r in (("stream", r_stream), ("validation", r_val))
        for beta in args.betas
    }
    rows: dict[str, Any] = {}
    per_query: dict[str, dict[str, np.ndarray]] = {}
    for name, scores in variants.items():
        hit, hit_oracle = hits(scores, truth), hits(scores, truth, same_category)
        per_query[name] = {"R@1": hit[photo_less].astype(np.float64)}
        rows[name] = {
            "seen_R@1": float(hit[photographed].mean()),
            "photo_less_R@1": float(hit[photo_less].mean()),
            "selection_fold_R@1": float(hit[in_fold].mean()) if fold else None,
            "seen_oracle_R@1": float(hit_oracle[photographed].mean()),
            "photo_less_oracle_R@1": float(hit_oracle[photo_less].mean()),
        }
    intervals = paired_bootstrap(
        per_query,
        "none",
        ["R@1"],
        products=test["product_id"].to_numpy()[photo_less],
        unit="product",
        resamples=args.resamples,
        seed=args.seed,
    )
    for beta, v in validation.items():
        print(f"validation, beta {beta:g}: R@1 {v['weighted']:.3f} (seen {v['seen']:.3f}, fold {v['fold']:.3f})")
    print(f"chosen on validation: beta {chosen:g}")
    print(f"{'correction':22s} {'seen':>6s} {'photo-less [95% CI]':>22s} {'change [95% CI]':>18s}  oracle seen/less")
    for name, row in rows.items():
        ci, change = intervals[name]["metrics"]["R@1"], intervals[name]["relative"]["R@1"]
        row["photo_less_R@1_ci"], row["photo_less_change_ci"] = ci, change
        print(
            f"{name:22s} {row['seen_R@1']:6.3f} {row['photo_less_R@1']:6.3f} [{ci[0]:.3f}, {ci[1]:.3f}] "
            f"[{100 * change[0]:+6.1f}, {100 * change[1]:+6.1f}]%  "
            f"{row['seen_oracle_R@1']:.3f}/{row['photo_less_oracle_R@1']:.3f}"
            + (f"  fold {row['selection_fold_R@1']:.3f}" if fold else "")
        )
    result = {
        "run": str(args.run),
        "bundle": str(args.bundle),
        "k": args.k,
        "strategy": "global (and oracle: inside the true category)",
        "queries": {
            "seen": int(photographed.sum()),
            "selection_fold": int(in_fold.sum()),
            "photo_less": int(photo_less.sum()),
            "validation": len(val),
            "validation_selection_fold": int(val_fold.sum()),
        },
        "selection_fold_weight": fold_weight,
        "bootstrap": {"unit": "product", "resamples": args.resamples, "seed": args.seed},
        "validation_R@1": {f"{beta:g}": v for beta, v in validation.items()},
        "chosen_beta": chosen,
        "R@1": rows,
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
