"""Seen, photo-less and fully unseen products side by side: one table from several evaluations.

    python bench/product_groups.py photos=RUN_A/evaluations/X all=RUN_B/evaluations/Y [ablation=...] \
        [--out bench/results/product_groups.json]

Each argument is ``label=evaluation folder`` (or its report.json) of a run trained with
``data.unseen_products`` (any mode). Per run and product group: queries, products, the gate's top-1 on the
group's photos, and every strategy's R@1 with its 95% interval (the report's bootstrap unit: products by
default) and its average gain against global search with its interval; then the camera-faults retention (with
its intervals, for all photos and per group) when the evaluation ran that study, and the "not in our catalog"
study's measures when it ran (with untrained products kept in the pool: theirs apart). ``--out`` writes the same as
JSON (no default file: a quick look never overwrites a recorded result).

``--by-top-group``: also each product group's R@1 per top-level group of the category tree (Grocery: Fruit,
Packages, Vegetables), every strategy, from the evaluation's rankings.json and its run's manifest: where a
lever helps (loose produce or packs).

``label=FOLDER_A,FOLDER_B,FOLDER_C``: the evaluations of one recipe trained with different seeds; the label
then also gets, per group and strategy, the seeds' mean, standard deviation and range of R@1 (and the gate's
top-1): a recipe's result, not one seed's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from snapsearch.data.sources import load_manifest
from snapsearch.utils.atomic import atomic_write_text

GROUP_NAMES = {("seen", "photos"): "seen", ("unseen", "photos"): "photo-less", ("unseen", "all"): "fully unseen"}


def _report(path: Path) -> dict[str, Any]:
    return json.loads((path / "report.json" if path.is_dir() else path).read_text())


def groups(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per product group: n, the gate's top-1, and each strategy's R@1 / avg. gain with intervals."""
    mode = report.get("unseen_mode", "all")
    out: dict[str, dict[str, Any]] = {}
    for name, g in (report.get("by_novelty") or {}).items():
        label = GROUP_NAMES.get((name, mode), name)
        strategies = {}
        for s, entry in g["strategies"].items():
            if "+" in s:  # prior-corrected variants: not part of this table
                continue
            ci = entry.get("intervals", {})
            strategies[s] = {
                "R@1": entry["metrics"]["R@1"],
                "R@1_ci": ci.get("metrics", {}).get("R@1"),
                "R@5": entry["metrics"]["R@5"],
                "avg_gain": entry["average_improvement"],
                "avg_gain_ci": ci.get("average_improvement"),
            }
        out[label] = {
            "n_queries": g["n_queries"],
            "n_products": g["n_products"],
            "gate_top1": g.get("gate", {}).get("top1"),
            "strategies": strategies,
        }
    return out


def _fault_rows(runs: dict[str, Any]) -> dict[str, Any]:
    keys = ("R@1_kept", "R@1_kept_ci", "gate_top1", "gate_ece", "gate_ece_ci")
    return {name: {key: c.get(key) for key in keys} for name, c in runs.items()}


def faults(report: dict[str, Any]) -> dict[str, Any] | None:
    """The camera-faults retention and the gate's ECE, for all photos and per product group."""
    study = report.get("camera_faults")
    if not study:
        return None
    mode = report.get("unseen_mode", "all")
    return {"all": _fault_rows(study["corruptions"])} | {
        GROUP_NAMES.get((g, mode), g): _fault_rows(runs) for g, runs in (study.get("by_novelty") or {}).items()
    }


def rejection(report: dict[str, Any]) -> dict[str, Any] | None:
    """The "not in our catalog" study on the test photos: which products left the pool or stayed in it
    untrained, and per strategy its threshold and measures (and those of the untrained in-catalog photos
    against the out-of-catalog ones, when some stayed)."""
    study = report.get("rejection")
    if not study:
        return None
    return {
        "out_of_catalog": study["out_of_catalog"],
        "held_out_products": study["held_out_products"],
        "untrained_in_pool": study.get("untrained_in_pool", []),
        "strategies": {
            name: {"threshold": r["threshold"], "test": r["test"]}
            | ({"test_untrained": r["test_untrained"]} if "test_untrained" in r else {})
            for name, r in study["strategies"].items()
        },
    }


def _summary(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "values": [float(x) for x in v],
    }


def across_seeds(per_seed: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per group: the gate's top-1 and each strategy's R@1 over the seeds (mean, sd, min, max, values)."""
    out: dict[str, Any] = {}
    for group in per_seed[0]:
        runs = [seed[group] for seed in per_seed if group in seed]
        strategies = runs[0]["strategies"]
        out[group] = {
            "n_seeds": len(runs),
            "gate_top1": _summary([r["gate_top1"] for r in runs]),
            "R@1": {s: _summary([r["strategies"][s]["R@1"] for r in runs]) for s in strategies},
        }
    return out


def faults_across_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Per photo group and fault: each strategy's share of clean R@1 kept and the gate's ECE over the seeds
    (mean, sd, min, max): a retention target holds for a recipe when its worst seed holds it."""
    return {
        group: {
            name: {
                "R@1_kept": {
                    s: _summary([seed[group][name]["R@1_kept"][s] for seed in per_seed]) for s in c["R@1_kept"]
                },
                "gate_ece": _summary([seed[group][name]["gate_ece"] for seed in per_seed]),
            }
            for name, c in runs.items()
        }
        for group, runs in per_seed[0].items()
    }


def by_top_group(folder: Path) -> dict[str, dict[str, Any]]:
    """Per product group and top-level group: photos, products and every strategy's R@1 (point estimates)."""
    folder = folder if folder.is_dir() else folder.parent
    run = folder.parent.parent
    labels = json.loads((run / "labels.json").read_text())
    cfg = OmegaConf.load(run / "config.yaml")
    manifest = load_manifest(cfg.data).set_index("image_id")
    top = {
        p: labels["categories"][c].split("/")[0]
        for p, c in zip(labels["products"], labels["product_category"], strict=True)
    }
    mode, held = labels.get("unseen_mode", "all"), set(labels.get("unseen_products") or [])
    rankings = json.loads((folder / "rankings.json").read_text())
    out: dict[str, dict[str, Any]] = {}
    for strategy, ranked in rankings.items():
        truth = manifest.loc[list(ranked), "product_id"]
        for image_id, product in truth.items():
            group = GROUP_NAMES.get(("unseen" if product in held else "seen", mode), "seen")
            cell = out.setdefault(f"{group} / {top[product]}", {"products": set(), "n": 0, "hits": {}})
            cell["products"].add(product)
            hit = bool(ranked[image_id]) and ranked[image_id][0] == product
            cell["hits"][strategy] = cell["hits"].get(strategy, 0) + int(hit)
            if strategy == next(iter(rankings)):
                cell["n"] += 1
    return {
        key: {"n_queries": c["n"], "n_products": len(c["products"])}
        | {"R@1": {s: h / c["n"] for s, h in c["hits"].items()}}
        for key, c in sorted(out.items())
    }


def _fmt(value: float | None, ci: list[float] | None, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{100 * value:+.1f}%" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _print_run(label: str, run: dict[str, Any]) -> None:
    for group, g in run["groups"].items():
        head = f"{g['n_products']} products, {g['n_queries']} photos, gate top-1 {g['gate_top1']:.3f}"
        print(f"\n{label} / {group}: {head}")
        for s, e in g["strategies"].items():
            gain = _fmt(e["avg_gain"], e["avg_gain_ci"], pct=True)
            print(f"  {s:10s} R@1 {_fmt(e['R@1'], e['R@1_ci'])}  R@5 {e['R@5']:.3f}  gain {gain}")
    for key, cell in (run.get("by_top_group") or {}).items():
        r1 = "  ".join(f"{s} {v:.3f}" for s, v in cell["R@1"].items())
        print(f"  {key} ({cell['n_products']} products, {cell['n_queries']} photos): {r1}")
    for group, runs in (run["camera_faults"] or {}).items():
        print(f"\n{label} / camera faults, {group} (R@1 kept [95% CI]; gate ECE [95% CI]):")
        for name, c in runs.items():
            kept = "  ".join(f"{s} {_fmt(v, (c['R@1_kept_ci'] or {}).get(s))}" for s, v in c["R@1_kept"].items())
            print(f"  {name:14s} {kept}  ECE {_fmt(c['gate_ece'], c['gate_ece_ci'])}")
    if run.get("rejection"):
        r = run["rejection"]
        n_out = sum(len(v) for v in r["held_out_products"].values())
        print(f"\n{label} / not in our catalog ({n_out} out, {len(r['untrained_in_pool'])} untrained in the pool):")
        for name, m in r["strategies"].items():
            line = f"  {name:10s} out rejected {_measure(m['test'], 'out_of_catalog_rejected')}"
            line += f"  in wrongly {_measure(m['test'], 'in_catalog_wrongly_rejected')}"
            line += f"  AUROC {_measure(m['test'], 'auroc')}"
            if "test_untrained" in m:
                line += f"  untrained wrongly {_measure(m['test_untrained'], 'in_catalog_wrongly_rejected')}"
                line += f"  AUROC untrained vs out {_measure(m['test_untrained'], 'auroc')}"
            print(line)


def _measure(result: dict[str, Any], key: str) -> str:
    return _fmt(result[key], result.get("intervals", {}).get(key))


def _print_seeds(label: str, result: dict[str, Any]) -> None:
    for group, g in result["seeds"].items():
        gate = g["gate_top1"]
        print(f"\n{label} / {group}, {g['n_seeds']} seeds: gate top-1 {gate['mean']:.3f} +- {gate['sd']:.3f}")
        for s, v in g["R@1"].items():
            print(f"  {s:10s} R@1 {v['mean']:.3f} +- {v['sd']:.3f}  [{v['min']:.3f}, {v['max']:.3f}]")
    for group, runs in (result.get("camera_faults") or {}).items():
        print(f"\n{label} / camera faults, {group}, over the seeds (R@1 kept: mean [min, max]; gate ECE: mean [max]):")
        for name, c in runs.items():
            kept = "  ".join(f"{s} {v['mean']:.3f} [{v['min']:.3f}, {v['max']:.3f}]" for s, v in c["R@1_kept"].items())
            print(f"  {name:14s} {kept}  ECE {c['gate_ece']['mean']:.3f} [{c['gate_ece']['max']:.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="label=evaluation folder")
    parser.add_argument("--by-top-group", action="store_true", help="R@1 per top-level category group too")
    parser.add_argument("--out", type=Path, default=None, help="the JSON to write (none: the tables only)")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for item in args.runs:
        label, _, paths = item.partition("=")
        folders = paths.split(",")
        reports = [_report(Path(path)) for path in folders]
        for path, report in zip(folders, reports, strict=True):
            name = label if len(folders) == 1 else f"{label}/{Path(path).parent.parent.name}"
            results[name] = {
                "report": path,
                "unseen_mode": report.get("unseen_mode"),
                "bootstrap": report.get("bootstrap"),
                "groups": groups(report),
                "camera_faults": faults(report),
                "rejection": rejection(report),
            }
            if args.by_top_group:
                results[name]["by_top_group"] = by_top_group(Path(path))
            _print_run(name, results[name])
        if len(folders) > 1:
            results[label] = {"reports": folders, "seeds": across_seeds([groups(r) for r in reports])}
            per_seed_faults = [f for r in reports if (f := faults(r))]
            if len(per_seed_faults) == len(reports):
                results[label]["camera_faults"] = faults_across_seeds(per_seed_faults)
            _print_seeds(label, results[label])
    if args.out is not None:  # no default file: a quick look never overwrites a recorded result
        atomic_write_text(args.out, json.dumps(results, indent=2))
        print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
