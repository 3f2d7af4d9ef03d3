"""Can the gate's temperature be fitted for photo-less products without their photos, on composites?

The gate's temperature is fitted on validation photos of products with training photos, and on a photo-less
product's photos the gate is overconfident (BENCHMARKS §21: ECE 0.19-0.24). A selection fold's photos fix it
(0.055) at the price of the fold's training photos. What a shop does have of a photo-less product is its
catalog image: rendered through the training pipeline's composite step (training-split store scenes of other
products, fresh random draws), it stands in for a shopper photo. This script refits the temperature on the
validation photos plus ``--views`` composites per catalog image (of the photo-less products, or of every
product), and reports the gate's ECE and top-1 on the test photos of seen and photo-less products::

    python bench/gate_calibration.py --run /work/runs/np_s42 --bundle /work/bundles/np_s42 \
        --out bench/results/gate_calibration_s42.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from heldout import HeldOutSplit
from omegaconf import OmegaConf
from torchmetrics.functional.classification import multiclass_calibration_error

from snapsearch.data.augment import build_train_transform
from snapsearch.data.image_io import read_rgb
from snapsearch.data.transforms import ScenePhotos
from snapsearch.models.calibration import fit_temperature
from snapsearch.models.classifier_metrics import ECE_BINS
from snapsearch.search.cascade import Cascade
from snapsearch.utils.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def log_probabilities(cascade: Cascade, batches: list[np.ndarray]) -> torch.Tensor:
    """The exported gate's log-probabilities: its logits divided by the shipped temperature, up to a constant
    per row, so a temperature fitted on them multiplies the shipped one."""
    probs = np.concatenate([cascade.runtime.classify(b) for b in batches])
    return torch.from_numpy(np.log(np.clip(probs, 1e-12, None))).double()


def scores(log_p: torch.Tensor, labels: torch.Tensor, tau: float) -> dict[str, float]:
    p = torch.softmax(log_p / tau, dim=-1)
    return {
        "top1": float((p.argmax(-1) == labels).double().mean()),
        "ece": float(multiclass_calibration_error(p, labels, p.shape[1], n_bins=ECE_BINS, norm="l1")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="a multi-task run trained in mode=photos")
    ap.add_argument("--bundle", required=True, type=Path, help="that run's export bundle")
    ap.add_argument("--views", type=int, default=4, help="composites per catalog image")
    ap.add_argument("--seed", type=int, default=1234, help="the composites' draws (not the training's)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-pixels", type=int, default=40_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gate_calibration.json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    split = HeldOutSplit.load(args.run)
    cfg, held, val, test, train = split.cfg, split.held, split.val, split.test, split.train
    products = split.products
    position = {p: i for i, p in enumerate(products)}
    product_category = dict(zip(products, split.item_category.tolist(), strict=True))

    cascade = Cascade.from_bundle(args.bundle)
    contract = cascade.runtime.classifier_preprocess

    pre = contract.eval_transform()

    def photos(paths: list[str]) -> torch.Tensor:
        batches = [paths[i : i + args.batch] for i in range(0, len(paths), args.batch)]
        return log_probabilities(
            cascade, [np.stack([pre(image=cascade.decode(p)[0])["image"].numpy() for p in b]) for b in batches]
        )

    def category_labels(product_ids: Any) -> torch.Tensor:
        return torch.tensor([product_category[p] for p in product_ids])

    lp_val, y_val = photos(val["path"].tolist()), category_labels(val["product_id"])
    lp_test, y_test = photos(test["path"].tolist()), category_labels(test["product_id"])
    photo_less = torch.tensor(test["product_id"].isin(held).to_numpy())

    # composites: training-split photos of products trained with photos as scenes, as in training
    scenes_cfg = cfg.augment.scene_photos
    scenes = ScenePhotos(
        train["path"].tolist(),
        [position[p] for p in train["product_id"]],
        side=scenes_cfg.side,
        max_pixels=args.max_pixels,
        cache_size=scenes_cfg.cache_size,
    )
    render = build_train_transform(cfg.augment, contract, seed=args.seed, scenes=scenes)
    forced = OmegaConf.merge(cfg.augment, {"transforms": {"composite": {"p": 1.0}}})
    render_always = build_train_transform(forced, contract, seed=args.seed, scenes=scenes)
    images = {
        p: read_rgb(path, max_pixels=args.max_pixels) for p, path in zip(products, split.catalog["path"], strict=True)
    }

    def composites(product_ids: list[str], transform: Any) -> tuple[torch.Tensor, torch.Tensor]:
        views = [(p, v) for p in product_ids for v in range(args.views)]
        batch = np.stack(
            [transform(image=images[p], domain="catalog", product=position[p])["image"].numpy() for p, _ in views]
        )
        lp = log_probabilities(cascade, [batch[i : i + args.batch] for i in range(0, len(batch), args.batch)])
        return lp, category_labels([p for p, _ in views])

    held_list = [p for p in products if p in held]
    sets = {
        "photo-less products' composites (training pipeline)": composites(held_list, render),
        "photo-less products' composites (always composited)": composites(held_list, render_always),
        "every product's composites (training pipeline)": composites(products, render),
    }
    fits: dict[str, float] = {"validation photos (as shipped)": fit_temperature(lp_val, y_val)}
    on_composites: dict[str, dict[str, float]] = {}
    for name, (lp, y) in sets.items():
        on_composites[name] = scores(lp, y, 1.0)
        fits[f"validation photos + {name}"] = fit_temperature(torch.cat([lp_val, lp]), torch.cat([y_val, y]))
    rows = {}
    for name, tau in fits.items():
        rows[name] = {
            "relative_temperature": tau,
            "seen": scores(lp_test[~photo_less], y_test[~photo_less], tau),
            "photo_less": scores(lp_test[photo_less], y_test[photo_less], tau),
            "all": scores(lp_test, y_test, tau),
        }
        r = rows[name]
        print(
            f"{name:80s} tau {tau:5.2f}  ECE seen {r['seen']['ece']:.3f}  photo-less {r['photo_less']['ece']:.3f}"
            f"  all {r['all']['ece']:.3f}  (top-1 {r['seen']['top1']:.3f} / {r['photo_less']['top1']:.3f})"
        )
    for name, s in on_composites.items():
        print(f"gate on {name}: top-1 {s['top1']:.3f}, ECE {s['ece']:.3f} (shipped temperature)")
    result = {
        "run": str(args.run),
        "bundle": str(args.bundle),
        "views": args.views,
        "seed": args.seed,
        "queries": {
            "validation": len(val),
            "test_seen": int((~photo_less).sum()),
            "test_photo_less": int(photo_less.sum()),
        },
        "ece_bins": ECE_BINS,
        "gate_on_composites": on_composites,
        "temperatures": rows,
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
