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
import time
from pathlib import Path

from heldout import HeldOutSplit, attach_intervals, embed_split, group_rows, save_result

from snapsearch.retrieval.hubness import HubReference
from snapsearch.search.cascade import Cascade

ROOT = Path(__file__).resolve().parents[1]


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
    split = HeldOutSplit.load(args.run)
    e = embed_split(Cascade.from_bundle(args.bundle), split, args.batch, ("catalog", "test", "val"))
    gallery, q_test, q_val = e["catalog"], e["test"], e["val"]

    r_stream, r_val = (HubReference.from_photos(q, args.k).density(gallery) for q in (q_test, q_val))
    betas = [0.0, *args.betas]
    cosine, cosine_val = q_test @ gallery.T, q_val @ gallery.T  # every variant shifts these
    validation = {beta: split.validation_r1(cosine_val - beta * r_val) for beta in betas}
    chosen = max(betas, key=lambda beta: (validation[beta]["weighted"], -beta))
    variants = {"none": cosine} | {
        f"{name}, beta {beta:g}": cosine - beta * r
        for name, r in (("stream", r_stream), ("validation", r_val))
        for beta in args.betas
    }
    rows, per_query = group_rows(split, variants)
    for beta, v in validation.items():
        print(f"validation, beta {beta:g}: R@1 {v['weighted']:.3f} (seen {v['seen']:.3f}, fold {v['fold']:.3f})")
    print(f"chosen on validation: beta {chosen:g}")
    attach_intervals(split, rows, per_query, "none", resamples=args.resamples, seed=args.seed)
    groups = split.test_groups()
    result = {
        "run": str(args.run),
        "bundle": str(args.bundle),
        "k": args.k,
        "strategy": "global (and oracle: inside the true category)",
        "queries": {
            "seen": int(groups["seen"].sum()),
            "selection_fold": int(groups["fold"].sum()),
            "photo_less": int(groups["photo_less"].sum()),
            "validation": len(split.val),
            "validation_selection_fold": int(split.val["product_id"].isin(split.fold).sum()),
        },
        "selection_fold_weight": split.fold_weight,
        "validation_R@1": {f"{beta:g}": v for beta, v in validation.items()},
        "chosen_beta": chosen,
        "R@1": rows,
    }
    save_result(args.out, result, resamples=args.resamples, seed=args.seed, started=t0)


if __name__ == "__main__":
    main()
