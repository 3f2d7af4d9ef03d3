"""Index-time composites: does indexing a packshot's composites beside it help photo-less products?

A product known only from its packshot is searched by real photos; the idea tried here renders each catalog
image K times through the training pipeline's composite step (real training-split store scenes of *other*
products, never a held-out product's photo) and scores a product by its clean image, its best view, or their
mean. Global search only, point estimates of product R@1 split into seen and held-out products (BENCHMARKS §21)::

    python bench/pool_views.py --run /work/runs/photos_composite --bundle /work/bundles/photos_composite --views 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from snapsearch.data.augment import build_train_transform
from snapsearch.data.image_io import read_rgb
from snapsearch.data.sources import load_manifest
from snapsearch.data.transforms import ScenePhotos
from snapsearch.search.cascade import Cascade

ROOT = Path(__file__).resolve().parents[1]


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="a multi-task run trained with held-out products")
    ap.add_argument("--bundle", required=True, type=Path, help="that run's export bundle")
    ap.add_argument("--views", type=int, default=16, help="composites per catalog image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pixels", type=int, default=40_000_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pool_views.json"))
    args = ap.parse_args()

    cfg = OmegaConf.load(args.run / "config.yaml")
    held = set(json.loads((args.run / "labels.json").read_text())["unseen_products"])
    manifest = load_manifest(cfg.data)
    cascade = Cascade.from_bundle(args.bundle)
    test = manifest[(manifest["domain"] == "query") & (manifest["split"] == "test")]
    catalog = manifest[manifest["domain"] == "catalog"].drop_duplicates("product_id")
    products = catalog["product_id"].tolist()
    index = {p: i for i, p in enumerate(products)}

    t0 = time.perf_counter()
    paths = test["path"].tolist()
    queries = np.concatenate(
        [cascade.embed_images(paths[i : i + args.batch]) for i in range(0, len(paths), args.batch)]
    )
    truth = np.array([index[p] for p in test["product_id"]])
    clean = cascade.embed_images(catalog["path"].tolist())

    # Backgrounds: training-split photos of products the run trained photos of (as in training).
    scenes_cfg = cfg.augment.scene_photos
    train = manifest[(manifest["domain"] == "query") & (manifest["split"] == "train")]
    train = train[~train["product_id"].isin(held)]
    scenes = ScenePhotos(
        train["path"].tolist(),
        [index[p] for p in train["product_id"]],
        side=scenes_cfg.side,
        max_pixels=args.max_pixels,
        cache_size=scenes_cfg.cache_size,
    )
    transform = build_train_transform(cfg.augment, cascade.runtime.embedder_preprocess, seed=args.seed, scenes=scenes)
    images = [read_rgb(p, max_pixels=args.max_pixels) for p in catalog["path"]]
    views = np.stack(
        [
            cascade.runtime.embed(
                np.stack(
                    [
                        transform(image=im, domain="catalog", product=index[p])["image"].numpy()
                        for im, p in zip(images, products, strict=True)
                    ]
                )
            )
            for _ in range(args.views)
        ],
        axis=1,
    )  # (products, views, d)

    held_query = np.array([products[t] in held for t in truth])
    per_view = np.einsum("qd,pkd->qpk", queries, views)
    scorings = {
        "packshot only (today)": queries @ clean.T,
        "best of the views": per_view.max(axis=2),
        "best of packshot and views": np.maximum(queries @ clean.T, per_view.max(axis=2)),
        "mean of the views": queries @ _normalised(views.mean(axis=1)).T,
        "packshot + mean of the views (one prototype)": queries
        @ _normalised(_normalised(clean) + _normalised(views.mean(axis=1))).T,
    }
    rows = {}
    for name, scores in scorings.items():
        hit = scores.argmax(axis=1) == truth
        rows[name] = {"seen_R@1": float(hit[~held_query].mean()), "held_out_R@1": float(hit[held_query].mean())}
        print(f"{name:48s} seen {rows[name]['seen_R@1']:.3f}  held-out {rows[name]['held_out_R@1']:.3f}")
    result = {
        "run": str(args.run),
        "bundle": str(args.bundle),
        "views": args.views,
        "seed": args.seed,
        "queries": {"seen": int((~held_query).sum()), "held_out": int(held_query.sum())},
        "held_out_products": len(held),
        "strategy": "global",
        "R@1": rows,
        "seconds": time.perf_counter() - t0,
    }
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)


if __name__ == "__main__":
    main()
