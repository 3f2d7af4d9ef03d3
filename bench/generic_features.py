"""Does fine-tuning erase what tells an untrained product apart? The run's embedding beside ImageNet features.

A multi-task run's embedder, fine-tuned on the seen products' photos, finds a photo-less fruit at rank 1 about
once in twenty (BENCHMARKS §21). This probe embeds the catalog and the test photos with the run's network and
with the ImageNet trunk it started from (``conf/generic_embedder``, no fine-tuning), and searches with each and
with their concatenation ``[fine-tuned, a x generic]`` (each part L2-normalised): global and ``oracle`` (inside
the true category) R@1 per product group and top-level group, and the photo-less products' interval and
change against the fine-tuned embedding alone (paired bootstrap over products). A diagnostic, not a shipped
search path (the concatenation would run two networks per query)::

    python bench/generic_features.py --run /work/runs/np_s42 --bundle /work/bundles/np_s42 \
        --out bench/results/generic_features_s42.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from heldout import HeldOutSplit, attach_intervals, embed_split, group_rows, normalise, open_cascade, save_result
from omegaconf import OmegaConf

from snapsearch.data.image_io import read_rgb
from snapsearch.runtime.factory import eager_embedder

ROOT = Path(__file__).resolve().parents[1]


def generic_embeddings(run: Path, generic: dict, paths: list[str], batch: int, max_pixels: int) -> np.ndarray:
    """The ImageNet trunk's pooled features of ``paths`` (its own preprocessing contract), L2-normalised."""
    model, pre = eager_embedder(run, "generic", generic)
    model.eval()
    transform = pre.eval_transform()
    out = []
    for i in range(0, len(paths), batch):
        x = torch.stack([transform(image=read_rgb(p, max_pixels=max_pixels))["image"] for p in paths[i : i + batch]])
        with torch.no_grad():
            out.append(model(x).numpy())
    return normalise(np.concatenate(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="a multi-task run trained with held-out products")
    ap.add_argument("--bundle", type=Path, help="that run's export bundle (default: the run's eager models)")
    ap.add_argument("--generic", type=Path, default=ROOT / "conf" / "generic_embedder" / "efficientnet_lite0.yaml")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="a: the generic part's weight")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "generic_features.json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    split = HeldOutSplit.load(args.run)
    catalog, test = split.catalog["path"].tolist(), split.test["path"].tolist()
    tuned = embed_split(open_cascade(args.run, args.bundle), split, args.batch, ("catalog", "test"))
    generic_cfg = OmegaConf.to_container(OmegaConf.load(args.generic))
    assert isinstance(generic_cfg, dict)
    max_pixels = int(split.cfg.data.max_image_pixels)
    generic = {
        "catalog": generic_embeddings(args.run, generic_cfg, catalog, args.batch, max_pixels),
        "test": generic_embeddings(args.run, generic_cfg, test, args.batch, max_pixels),
    }

    def scores(a: float | None) -> np.ndarray:
        if a is None:  # the generic features alone
            return generic["test"] @ generic["catalog"].T
        g, q = (normalise(np.concatenate([tuned[k], a * generic[k]], axis=1)) for k in ("catalog", "test"))
        return q @ g.T

    variants = {"fine-tuned": scores(0.0), "generic": scores(None)} | {
        f"concatenated, a={a:g}": scores(a) for a in args.weights
    }
    rows, per_query = group_rows(split, variants)
    truth = split.items(split.test)
    top = split.item_top[truth]
    groups = split.test_groups()
    same_category = split.item_category[None, :] == split.item_category[truth][:, None]
    for name, s in variants.items():
        hit = s.argmax(axis=1) == truth
        hit_oracle = np.where(same_category, s, -np.inf).argmax(axis=1) == truth
        rows[name]["photo_less_by_top_group"] = {
            t: {
                "R@1": float(hit[groups["photo_less"] & (top == t)].mean()),
                "oracle_R@1": float(hit_oracle[groups["photo_less"] & (top == t)].mean()),
            }
            for t in sorted(set(top))
        }
    attach_intervals(split, rows, per_query, "fine-tuned", resamples=args.resamples, seed=args.seed)
    for name, row in rows.items():
        by_top = ", ".join(
            f"{t} {v['R@1']:.3f} (oracle {v['oracle_R@1']:.3f})" for t, v in row["photo_less_by_top_group"].items()
        )
        print(f"{name:22s} photo-less by top group: {by_top}")
    result = {
        "run": str(args.run),
        "bundle": None if args.bundle is None else str(args.bundle),
        "generic": generic_cfg,
        "strategy": "global (and oracle: inside the true category)",
        "queries": {k: int(v.sum()) for k, v in groups.items()},
        "R@1": rows,
    }
    save_result(args.out, result, resamples=args.resamples, seed=args.seed, started=t0)


if __name__ == "__main__":
    main()
