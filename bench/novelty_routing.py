"""Where a photo-less product's photo goes wrong: to another new product, or to a trained one?

BENCHMARKS §21 finds every index-side setting on one line that trades the seen products against the
photo-less ones. This probe splits the photo-less products' errors: inside the true category among the
*untrained* items only, and over all untrained items (as if the query were known to show a new product); then
it asks whether that knowledge can be had from the query, with a novelty score (the mean cosine similarity of
the query to its ``k`` nearest training photos: a photo of a trained product lies among its own) and two ways
to route by it, their thresholds set on the seen products' validation photos only:

- a switch: a query scoring below the ``q`` quantile of the validation photos' novelty scores (that share of
  seen photos flagged) is searched among the untrained items only;
- a bonus: ``b x ramp`` added to every untrained item's score, the ramp rising from 0 at the ``hi`` quantile
  to 1 at the ``lo`` quantile.

Global search with the hubness correction (0.25, validation reference) over catalog vectors moved by the
prototype shift (``--shipped``: the toolkit's weights; the switch searches with the largest ``--untrained-shift``);
R@1 per product group, the photo-less products' interval and change against the shipped index (paired
bootstrap over products), the routed variant validation chooses (on a run with a selection fold, the fold's
photos weighted as the catalog's untrained products, as ``bench/prototype_shift.py`` does), and the novelty
scores' AUROC (photo-less against seen test photos, product-clustered interval)::

    python bench/novelty_routing.py --run runs/np_s42 --out bench/results/novelty_routing_s42.json

``--faults motion_blur_2 noise_2 ...`` also reruns every 4th test photo under those camera faults of
``conf/evaluate.yaml`` (the clean photos beside them): each group's R@1 without and with each bonus, and how
new the faulted photos look to the ramp (its mean per group).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from heldout import HeldOutSplit, attach_intervals, embed_split, group_rows, normalise, open_cascade, save_result
from hydra.utils import instantiate
from omegaconf import OmegaConf
from prototype_shift import split_offsets

from snapsearch.data.dataset import LabelMaps
from snapsearch.evaluation.rejection import weighted_auroc
from snapsearch.evaluation.uncertainty import LEVEL, clusters_of, resample_counts
from snapsearch.retrieval.hubness import HubReference
from snapsearch.retrieval.novelty import NoveltyReference
from snapsearch.runtime.batch import BatchIO
from snapsearch.search.cascade import Cascade

ROOT = Path(__file__).resolve().parents[1]
NOVELTY = OmegaConf.load(ROOT / "conf" / "novelty" / "ramp.yaml")  # the search path's ramp quantiles


def novelty(queries: np.ndarray, train: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine similarity to the ``k`` nearest training photos (low: far from every trained product)."""
    return HubReference.from_photos(train, k).density(queries)


def auroc_with_interval(
    score: np.ndarray, positive: np.ndarray, products: np.ndarray, resamples: int, seed: int
) -> tuple[float, list[float]]:
    """AUROC of ``score`` for ``positive`` and its interval, resampling products with all their photos."""
    cluster = clusters_of(products, "product")
    counts = resample_counts(int(cluster.max() + 1), resamples, seed)[:, cluster].astype(np.float64)
    values = weighted_auroc(score, positive, np.vstack([np.ones((1, len(score))), counts]))
    tail = 100 * (1 - LEVEL) / 2
    return float(values[0]), [float(v) for v in np.nanpercentile(values[1:], [tail, 100 - tail])]


def under_faults(
    cascade: Cascade,
    split: HeldOutSplit,
    labels: LabelMaps,
    faults: list[str],
    stride: int,
    batch: int,
    score: Callable[[np.ndarray], np.ndarray],
    ramp: NoveltyReference,
    bonuses: list[float],
) -> dict[str, dict[str, dict[str, float]]]:
    """Per camera fault of ``conf/evaluate.yaml`` (and clean), on every ``stride``-th test photo as
    evaluate.py's study takes them: each product group's R@1 without and with each bonus, and its mean ramp
    (how new the faulted photos look). Nothing without ``faults``."""
    if not faults:
        return {}
    corruptions = OmegaConf.load(ROOT / "conf" / "evaluate.yaml").camera_faults.corruptions
    io = BatchIO(batch, 0, int(split.cfg.data.max_image_pixels), bool(split.cfg.data.draft_decode))
    test = split.test.iloc[::stride]
    truth, untrained = split.items(test), ~split.trained
    groups = {g: m[::stride] for g, m in split.test_groups().items() if m[::stride].any()}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for fault in ["clean", *faults]:
        before = None if fault == "clean" else instantiate(corruptions[fault])
        run = cascade.infer_frame(test, labels, replace(io, before=before), classify=False, what=fault)
        if len(run.rows) != len(test):
            raise SystemExit(f"{fault}: {len(test) - len(run.rows)} test photos unreadable")
        s, r = score(run.embeddings), ramp.ramp(run.embeddings)
        row = {"mean_ramp": {g: float(r[m].mean()) for g, m in groups.items()}}
        for b in [0.0, *bonuses]:
            hit = (s + b * r[:, None] * untrained[None, :]).argmax(axis=1) == truth
            row[f"R@1, bonus {b:g}"] = {g: float(hit[m].mean()) for g, m in groups.items()}
        out[fault] = row
        print(f"{fault:14s} " + "  ".join(f"{k}: {v}" for k, v in row.items()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="a multi-task run trained with held-out products")
    ap.add_argument("--bundle", type=Path, help="that run's export bundle (default: the run's eager models)")
    ap.add_argument("--shipped", type=float, nargs=2, default=[1.0, 0.5], help="shift weights: trained, untrained")
    ap.add_argument("--untrained-shift", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 5, 10], help="neighbours of the novelty score")
    ap.add_argument("--flagged", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2])
    ap.add_argument("--bonus", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    ap.add_argument("--ramp", type=float, nargs=2, default=list(NOVELTY.quantiles), help="quantiles: lo, hi")
    ap.add_argument("--hub-weight", type=float, default=0.25)
    ap.add_argument("--hub-k", type=int, default=10)
    ap.add_argument("--faults", nargs="*", default=[], help="camera faults of conf/evaluate.yaml to rerun under")
    ap.add_argument("--fault-stride", type=int, default=4, help="every n-th test photo, as evaluate.py's study")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "novelty_routing.json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    split = HeldOutSplit.load(args.run)
    trained = split.trained  # a selection fold's products count as untrained, as in selection
    cascade = open_cascade(args.run, args.bundle)
    e = embed_split(cascade, split, args.batch)
    gallery, q_train, q_val, q_test = e["catalog"], e["train"], e["val"], e["test"]
    own, delta = split_offsets(split, e)
    reference = HubReference.from_photos(q_val, args.hub_k)

    def scorer(a_trained: float, a_untrained: float) -> Callable[[np.ndarray], np.ndarray]:
        """Queries' scores against the catalog moved by the shift's weights, hubness-corrected."""
        g = normalise(gallery + np.where(trained[:, None], a_trained * own, a_untrained * delta))
        r = args.hub_weight * reference.density(g)
        return lambda q: q @ g.T - r

    def scores(a_trained: float, a_untrained: float) -> tuple[np.ndarray, np.ndarray]:
        """(test, validation) scores (:func:`scorer`)."""
        score = scorer(a_trained, a_untrained)
        return score(q_test), score(q_val)

    shipped_name = f"shipped shift ({args.shipped[0]:g}, {args.shipped[1]:g})"
    shipped = scores(*args.shipped)
    untrained_only = {
        a: tuple(np.where(trained[None, :], -np.inf, s) for s in scores(0.0, a)) for a in args.untrained_shift
    }
    k = args.k[len(args.k) // 2]
    test_novelty, val_novelty = novelty(q_test, q_train, k), novelty(q_val, q_train, k)
    seen_val = ~split.val["product_id"].isin(split.fold).to_numpy()  # thresholds from seen products' photos only
    new_search = untrained_only[max(args.untrained_shift)]
    # the routed variants: candidates for the validation choice (test and validation scores alike)
    routed: dict[str, tuple[np.ndarray, np.ndarray]] = {shipped_name: shipped}
    for q in args.flagged:
        tau = np.quantile(val_novelty[seen_val], q)
        routed[f"switch: {q:.0%} of seen validation photos flagged"] = tuple(
            np.where((nov < tau)[:, None], new, old)
            for nov, new, old in zip((test_novelty, val_novelty), new_search, shipped, strict=True)
        )
    # the search path's ramp (conf/novelty), over every training photo
    ramp = NoveltyReference.calibrate(q_train, split.train["product_id"], q_val[seen_val], k, tuple(args.ramp))
    for b in args.bonus:
        routed[f"bonus {b:g} x ramp"] = tuple(
            old + b * ramp.ramp(q)[:, None] * ~trained[None, :] for q, old in zip((q_test, q_val), shipped, strict=True)
        )
    variants = {shipped_name: shipped[0]} | {
        f"untrained items only, shift (0, {a:g})": s[0] for a, s in untrained_only.items()
    }
    variants |= {name: s[0] for name, s in routed.items()}
    rows, per_query = group_rows(split, variants)
    for name, (_, scores_val) in routed.items():
        validation = split.validation_r1(scores_val)
        rows[name] |= {"validation_R@1": validation["weighted"], "validation_fold_R@1": validation["fold"]}
    chosen = max(routed, key=lambda name: rows[name]["validation_R@1"])  # ties: the first, the shipped index
    print(f"chosen on validation ({'fold-weighted' if split.fold else 'seen products'}): {chosen}")
    truth = split.items(split.test)
    groups = split.test_groups()
    same_untrained = (split.item_category[None, :] == split.item_category[truth][:, None]) & ~trained[None, :]
    hit = np.where(same_untrained, shipped[0], -np.inf).argmax(axis=1) == truth
    among_new = float(hit[groups["photo_less"]].mean())
    print(f"photo-less photos, inside the true category among its untrained items: R@1 {among_new:.3f}")
    # where each photo-less product's photos go at rank 1 in the shipped index (its three commonest answers)
    names, top1 = np.asarray(split.products), shipped[0].argmax(axis=1)
    destinations = {
        names[p]: Counter(names[top1[truth == p]].tolist()).most_common(3)
        for p in np.unique(truth[groups["photo_less"]])
    }
    attach_intervals(split, rows, per_query, shipped_name, resamples=args.resamples, seed=args.seed)

    judged = groups["seen"] | groups["photo_less"]
    products = split.test["product_id"].to_numpy()[judged]
    # the margin a bonus for untrained items has to close: best untrained item's score minus best trained item's
    margin = shipped[0][:, ~trained].max(axis=1) - shipped[0][:, trained].max(axis=1)
    candidates = {f"k={kk} nearest training photos": -novelty(q_test, q_train, kk) for kk in args.k}
    auroc = {}
    for name, score in (candidates | {"margin, untrained - trained item": margin}).items():
        value, ci = auroc_with_interval(
            score[judged], groups["photo_less"][judged], products, args.resamples, args.seed
        )
        auroc[name] = {"AUROC": value, "ci": ci}
        print(f"novelty score, {name}: AUROC photo-less vs seen {value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
    faults = under_faults(
        cascade,
        split,
        LabelMaps.load(args.run / "labels.json"),
        args.faults,
        args.fault_stride,
        args.batch,
        scorer(*args.shipped),
        ramp,
        args.bonus,
    )
    result = {
        "run": str(args.run),
        "bundle": None if args.bundle is None else str(args.bundle),
        "strategy": "global with the hubness correction (and oracle: inside the true category)",
        "shipped_shift": args.shipped,
        "chosen_on_validation": chosen,
        "photo_less_R@1_among_untrained_in_category": among_new,
        "photo_less_rank1_destinations": destinations,
        "novelty": {"k_routing": k, "AUROC_photo_less_vs_seen": auroc, "ramp_quantiles": args.ramp},
        "queries": {name: int(mask.sum()) for name, mask in groups.items()} | {"validation": len(split.val)},
        "R@1": rows,
        "camera_faults": faults,
    }
    save_result(args.out, result, resamples=args.resamples, seed=args.seed, started=t0)


if __name__ == "__main__":
    main()
