"""Can the novelty score calibrate the gate on new products? Issue 20's ECE target, and the value of
``novelty.temperature_slope`` (conf/novelty/ramp.yaml).

The gate's temperature is fitted on validation photos of trained products, and its ECE on photo-less products'
photos is 0.2+ (BENCHMARKS §21): it is overconfident exactly where the network saw no photo. The novelty ramp
(``conf/novelty``: how far a photo lies from every training photo) is high there, and under camera faults. This
probe softens the calibrated probabilities by the ramp, ``p' ~ p ** (1 / (1 + a x ramp))`` (what
:class:`snapsearch.retrieval.novelty.NoveltyTemperature` does), fits ``a`` by the negative log-likelihood on
validation photos, and reports the gate's top-1 and ECE (product-clustered 95% intervals) per product group on
every ``--stride``-th test photo, clean and under the camera faults of ``conf/evaluate.yaml`` named by
``--faults``, at ``a = 0`` and at the fitted ``a``.

``--fit-on seen`` fits ``a`` on the seen products' validation photos only (all a run without a fold has: they
hardly tell, BENCHMARKS §21). ``--fit-on fold`` needs a run trained with a selection fold
(``data.unseen_products.selection_fold``: seen products whose training photos were withheld): the temperature is
first refitted on the seen products' photos alone (what a run without the fold fits), then ``a`` on the fold's
photos and the seen ones', weighted ``--fold-share`` : 1 - share (default: the run's share of photo-less
products, the catalog mix the recipe is measured on). Never a photo-less product's photo::

    python bench/novelty_temperature.py --run runs/np_s2 --out bench/results/novelty_temperature_s2.json
    python bench/novelty_temperature.py --run runs/np_cam_fold_s2 --fit-on fold --faults noise_1 dark_1 --stride 4 \
        --out bench/results/novelty_temperature_fold_s2.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from heldout import HeldOutSplit, open_cascade, save_result
from hydra.utils import instantiate
from novelty_routing import NOVELTY, ROOT
from omegaconf import OmegaConf
from scipy.optimize import minimize_scalar
from sklearn.metrics import log_loss

from snapsearch.data.dataset import LabelMaps
from snapsearch.evaluation.camera_faults import ece_interval
from snapsearch.models.classifier_metrics import classifier_metrics
from snapsearch.retrieval.novelty import NoveltyReference, at_temperature
from snapsearch.runtime.batch import BatchIO, Outputs
from snapsearch.search.catalog_index import label_indices

FAULTS = OmegaConf.load(ROOT / "conf" / "evaluate.yaml").camera_faults.corruptions


def softened(probs: np.ndarray, ramp: np.ndarray, a: float, scale: float = 1.0) -> np.ndarray:
    """The probabilities at a temperature raised by ``a x ramp`` per photo (``a = 0``: unchanged), after the
    calibrated logits are multiplied by ``scale`` (a refitted base temperature; 1: the run's)."""
    return at_temperature(probs, (1.0 + a * ramp) / scale)


def refit_scale(probs: np.ndarray, truth: np.ndarray) -> float:
    """The factor on the calibrated logits that minimises the NLL of ``probs`` (a temperature refitted on them)."""
    labels = np.arange(probs.shape[1])
    res = minimize_scalar(
        lambda u: log_loss(truth, at_temperature(probs, np.exp(-u)), labels=labels),
        bounds=(-3.0, 3.0),
        method="bounded",
    )
    return float(np.exp(res.x))


def gate_rows(probs: np.ndarray, truth: np.ndarray, products: np.ndarray, resamples: int, seed: int) -> dict:
    """The gate's top-1 and ECE, the ECE with a product-clustered interval."""
    m = classifier_metrics(probs.astype(np.float32), truth.astype(np.int64))
    ci = ece_interval(probs, truth, products, unit="product", resamples=resamples, seed=seed)
    return {"top1": m["top1"], "ece": m["ece"], "ece_ci": ci}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, type=Path, help="a multi-task run trained with photo-less products")
    ap.add_argument("--faults", nargs="*", default=["motion_blur_1", "defocus_1", "noise_1", "jpeg_1", "low_res_1"])
    ap.add_argument("--stride", type=int, default=2, help="every n-th test photo")
    ap.add_argument("--grid", type=float, nargs=3, default=[0.0, 3.0, 0.1], help="a: start, stop, step")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-on", choices=["seen", "fold"], default="seen", help="the validation photos a is fitted on")
    ap.add_argument(
        "--fold-share", type=float, default=None, help="the fold photos' weight (default: photo-less share)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "novelty_temperature.json")
    args = ap.parse_args()
    started = time.perf_counter()
    split = HeldOutSplit.load(args.run)
    cascade = open_cascade(args.run, None)
    labels = LabelMaps.load(args.run / "labels.json")
    data = split.cfg.data

    def infer(frame: pd.DataFrame, fault: str | None, what: str) -> tuple[Outputs, pd.DataFrame]:
        before = None if fault is None else instantiate(FAULTS[fault])
        io = BatchIO(args.batch, 0, int(data.max_image_pixels), bool(data.draft_decode), before, args.seed)
        out = cascade.infer_frame(frame, labels, io, classify=True, what=what)
        return out, frame.loc[out.rows]

    train, train_rows = infer(split.train, None, "training photos")
    val, val_rows = infer(split.val, None, "validation photos")
    seen_val = ~val_rows["product_id"].isin(split.fold).to_numpy()
    reference = NoveltyReference.calibrate(
        train.embeddings,
        train_rows["product_id"].tolist(),
        val.embeddings[seen_val],
        int(NOVELTY.neighbours),
        tuple(NOVELTY.quantiles),
    )
    val_truth = label_indices(val_rows, labels)[0]
    val_ramp = reference.ramp(val.embeddings)
    scale, weight = 1.0, seen_val.astype(np.float64)
    if args.fit_on == "fold":
        if not split.fold or seen_val.all():
            raise SystemExit(f"--fit-on fold: {args.run} has no selection fold with validation photos")
        scale = refit_scale(val.probs[seen_val], val_truth[seen_val])  # the temperature without the fold
        share = len(split.held) / len(split.catalog) if args.fold_share is None else args.fold_share
        weight = np.where(seen_val, (1 - share) / seen_val.sum(), share / (~seen_val).sum())
        print(f"temperature refitted on the seen products' photos: logits x {scale:.3f}; fold share {share:.3f}")
    grid = np.round(np.arange(args.grid[0], args.grid[1] + 1e-9, args.grid[2]), 6)
    labels_all = np.arange(val.probs.shape[1])
    fit = weight > 0

    def nll(a: float) -> float:
        p = softened(val.probs[fit], val_ramp[fit], a, scale)
        return float(log_loss(val_truth[fit], p, sample_weight=weight[fit], labels=labels_all))

    curve = {float(a): nll(a) for a in grid}
    chosen = min(curve, key=curve.get)
    print(f"a chosen on validation ({args.fit_on}): {chosen} (NLL {curve[chosen]:.4f}, a=0 {curve[0.0]:.4f})")
    val_groups = {"seen": seen_val, "fold": ~seen_val}
    validation = {
        g: {
            "photos": int(m.sum()),
            "mean_ramp": float(val_ramp[m].mean()),
            **{
                f"a={a}": gate_rows(
                    softened(val.probs[m], val_ramp[m], a, scale), val_truth[m], val_rows["product_id"].to_numpy()[m],
                    args.resamples, args.seed,
                )
                for a in (0.0, chosen)
            },
        }
        for g, m in val_groups.items()
        if m.any()
    }  # fmt: skip
    test = split.test.iloc[:: args.stride]
    groups = {name: mask[:: args.stride] for name, mask in split.test_groups().items()}
    conditions = {}
    for fault in [None, *args.faults]:
        name = fault or "clean"
        out, rows = infer(test, fault, f"test photos, {name}")
        keep = test.index.get_indexer(rows.index)
        truth, products = label_indices(rows, labels)[0], rows["product_id"].to_numpy()
        ramp = reference.ramp(out.embeddings)
        row: dict[str, dict] = {}
        for group, mask in {"all": np.ones(len(test), bool), **groups}.items():
            m = mask[keep]
            if not m.any():
                continue
            row[group] = {
                "photos": int(m.sum()),
                "mean_ramp": float(ramp[m].mean()),
                **{
                    f"a={a}": gate_rows(
                        softened(out.probs[m], ramp[m], a, scale), truth[m], products[m], args.resamples, args.seed
                    )
                    for a in (0.0, chosen)
                },
            }
        conditions[name] = row
        print(name, {g: (round(r["a=0.0"]["ece"], 3), round(r[f"a={chosen}"]["ece"], 3)) for g, r in row.items()})
    result = {
        "run": str(args.run),
        "stride": args.stride,
        "ramp": {"neighbours": int(NOVELTY.neighbours), "quantiles": list(NOVELTY.quantiles)},
        "fit_on": args.fit_on,
        "logit_scale": scale,
        "validation_nll_by_a": curve,
        "chosen_a": chosen,
        "validation": validation,
        "conditions": conditions,
    }
    save_result(args.out, result, resamples=args.resamples, seed=args.seed, started=started)


if __name__ == "__main__":
    main()
