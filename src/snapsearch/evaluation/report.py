"""Evaluation reports: report.json (everything), report.md (the tables a person reads), a rich table on
the console, and plots. Every file is written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from snapsearch.evaluation.queries_report import query_types_section, text_section
from snapsearch.evaluation.studies_report import camera_faults_section, growing_pool_section, rejection_section
from snapsearch.evaluation.tables import markdown_table, pct, with_interval
from snapsearch.utils.atomic import atomic_save, atomic_write_text

STRATEGY_COLUMNS = ("R@1", "R@5", "R@10", "mAP@10", "MRR")


def _ci(scores: dict[str, Any], key: tuple[str, ...], fmt: str | None) -> str:
    """A bootstrap interval as "[low, high]" (percentages when ``fmt`` is None); n/a without intervals."""
    node: Any = scores.get("intervals")
    for part in key:
        node = None if node is None else node.get(part)
    if node is None:
        return "n/a"
    return "[" + ", ".join(pct(v) if fmt is None else fmt.format(v) for v in node) + "]"


def bootstrap_note(results: dict[str, Any]) -> str:
    """Which unit the report's intervals resample (``results["bootstrap"]``, see ``uncertainty.describe``)."""
    b = results["bootstrap"]
    if not b["resamples"]:
        return "No intervals (bootstrap.resamples=0)."
    head = f"{100 * b['level']:.0f}% intervals, paired bootstrap over "
    if b["unit"] == "product":
        what = (
            f"products ({b['clusters']} clusters: each resample draws products with replacement and keeps all "
            "their photos; a subset resamples its own products)"
        )
    else:
        what = f"photos ({b['n_queries']} queries, each resampled on its own)"
    return f"{head}{what}, {b['resamples']} resamples, the same draw for every strategy."


def strategy_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table: metrics, relative change vs the baseline, routing split."""
    header = [
        "strategy",
        *STRATEGY_COLUMNS,
        "R@1 95% CI",
        "avg. gain",
        "avg. gain 95% CI",
        "routed right",
        "found within",
        "partitions",
        "search p50 ms",
    ]
    rows = []
    for name, s in results["strategies"].items():
        m = s["metrics"]
        rows.append(
            [
                name,
                *(f"{m[c]:.3f}" for c in STRATEGY_COLUMNS),
                _ci(s, ("metrics", "R@1"), "{:.3f}"),
                pct(s.get("average_improvement")),
                _ci(s, ("average_improvement",), None),
                f"{s['routed_right']:.3f}",
                f"{s['found_within']:.3f}",
                f"{s['mean_partitions']:.2f}",
                f"{s['search_ms_p50']:.2f}",
            ]
        )
    return header, rows


def render_markdown(results: dict[str, Any]) -> str:
    header, rows = strategy_table(results)
    cls = results["classifier"]
    lat = results["latency"]
    lat_rows = [[stage, *(f"{v[f'p{p}_ms']:.2f}" for p in (50, 95, 99))] for stage, v in lat["stages"].items()]
    per_cat = results["per_category"]
    strategies = list(results["strategies"])
    cat_rows = [[c, str(v["n"]), *(f"{v[s]:.3f}" for s in strategies)] for c, v in per_cat.items()]
    parts = [
        f"# snapsearch evaluation: {results['protocol']}",
        "",
        f"Source `{results['source']}`, embedder `{results['embedder']}`, index `{results['index']['factory']}`, "
        f"runtime `{results['runtime']}`. {results['n_queries']} query photos, {results['n_pool']} pool images "
        f"of {results['n_products']} products in {results['n_partitions']} partitions. {_hubness_note(results)}"
        f"{_shift_note(results)}{_novelty_note(results)}",
        "",
        "## Retrieval (product level; relative changes against "
        f"`{results['baseline']}`, avg. gain = mean relative gain in {', '.join(results['improvement_metrics'])})",
        "",
        markdown_table(header, rows),
        "",
        bootstrap_note(results),
        "",
        "Cascade recall@k = *routed right* (the true category was searched) x *found within* (recall@k among "
        "the queries routed right).",
        "",
        "## Classifier (the gate), on the query photos",
        "",
        markdown_table(
            ["top-1", "top-5", "macro-F1", "ECE"],
            [[f"{cls['top1']:.3f}", f"{cls['top5']:.3f}", f"{cls['macro_f1']:.3f}", f"{cls['ece']:.3f}"]],
        ),
        "",
        f"## Latency per query at batch 1 ({lat['n_queries']} queries, runtime `{results['runtime']}`)",
        "",
        "Each query is one `Cascade.search` call, as the service runs it; `<strategy>/total` is decode to "
        "ranked products. Global search skips the classifier.",
        "",
        markdown_table(["strategy/stage", "p50 ms", "p95 ms", "p99 ms"], lat_rows),
        "",
        f"Cascade overhead (`{lat['cascade_strategy']}` vs `{results['baseline']}`, end to end, p50): "
        f"**{lat['overhead_pct']:+.1f}%** (published: +13%). With an index this small the search stage is "
        "negligible: the figure is the classifier's cost, not what a catalog of millions would see.",
        "",
        *_size_section(results.get("by_partition_size"), strategies),
        *_novelty_section(results.get("by_novelty"), strategies, results.get("unseen_mode", "all")),
        *_compared_section(results.get("compared")),
        *_selection_section(results.get("selection")),
        *growing_pool_section(results.get("growing_pool")),
        *camera_faults_section(results.get("camera_faults")),
        *rejection_section(results.get("rejection")),
        *query_types_section(results.get("query_types")),
        *text_section(results.get("text")),
        "## Recall@1 per category",
        "",
        markdown_table(["category", "queries", *strategies], cat_rows),
        "",
    ]
    return "\n".join(parts)


def _size_section(bands: dict[str, Any] | None, strategies: list[str]) -> list[str]:
    """R@1 and average gain of each strategy by the size (in products) of the query's true partition."""
    if not bands:
        return []
    rows = [
        [
            band,
            str(b["n_partitions"]),
            str(b["n_queries"]),
            *(
                f"{b['strategies'][s]['metrics']['R@1']:.3f} ({pct(b['strategies'][s]['average_improvement'])})"
                for s in strategies
            ),
        ]
        for band, b in bands.items()
    ]
    return [
        "## By partition size (products in the query's true partition)",
        "",
        "R@1 (avg. gain against the baseline). In a partition of one product, routing right *is* finding it: "
        "there the cascade measures the gate, not the search.",
        "",
        markdown_table(["products", "partitions", "queries", *strategies], rows),
        "",
    ]


UNSEEN_MODES = {
    "all": "fully unseen: held out of training, model selection and calibration; only their catalog images are "
    "in the pool",
    "photos": "without shopper photos: their catalog images and categories were trained on (composited into "
    "store photos), their photos were held out of training, model selection and calibration",
}


def _novelty_section(groups: dict[str, Any] | None, strategies: list[str], mode: str) -> list[str]:
    """Seen vs held-out products (the unseen-products protocol): R@1 with its interval and the average gain,
    and the gate's top-1 on each group's photos."""
    if not groups:
        return []
    rows = []
    for name, g in groups.items():
        cells = [with_interval(g["strategies"][s], "R@1") for s in strategies]
        gate = g.get("gate", {})
        rows.append([name, str(g["n_products"]), str(g["n_queries"]), f"{gate.get('top1', float('nan')):.3f}", *cells])
    return [
        "## Seen and held-out products",
        "",
        f"R@1 [95% interval] (avg. gain against the baseline). Held-out (`unseen`) products are {UNSEEN_MODES[mode]}.",
        "",
        markdown_table(["products", "n", "queries", "gate top-1", *strategies], rows),
        "",
    ]


def _compared_section(rows: list[dict[str, Any]] | None) -> list[str]:
    """This cascade (first row) beside earlier evaluations of the same queries."""
    if not rows:
        return []
    names = [s for s in ("global", "top1", "fusion") if all(s in r["strategies"] for r in rows)]
    units = [r.get("bootstrap_unit", "photo") for r in rows]
    mixed = len(set(units)) > 1  # an earlier report's intervals may resample photos: say which row does what
    table = [
        [
            f"`{r['source']}` ({r['embedder']}, {r['runtime']}" + (f"; intervals over {unit}s)" if mixed else ")"),
            f"{r['gate_top1']:.3f}",
            f"{r['gate_ece']:.3f}",
            *(with_interval(r["strategies"][s], "R@1") for s in names),
            f"{r['overhead_pct']:+.1f}%",
        ]
        for r, unit in zip(rows, units, strict=True)
    ]
    return [
        "## Compared cascades (same queries)",
        "",
        "R@1 [95% interval] (avg. gain against each cascade's own global search); overhead = the cascade's "
        "end-to-end p50 latency against global search, at this pool size.",
        "",
        markdown_table(["cascade", "gate top-1", "gate ECE", *names, "overhead"], table),
        "",
    ]


def _selection_section(rules: dict[str, str] | None) -> list[str]:
    if not rules:
        return []
    return ["## How the models were chosen", "", *(f"- {what}: {rule}" for what, rule in rules.items()), ""]


def print_table(results: dict[str, Any], console: Console | None = None) -> None:
    header, rows = strategy_table(results)
    table = Table(
        title=f"snapsearch: {results['protocol']} ({results['n_queries']} queries)", caption=bootstrap_note(results)
    )
    for h in header:
        table.add_column(h, justify="left" if h == "strategy" else "right")
    for r in rows:
        table.add_row(*r)
    (console or Console()).print(table)


def write_reports(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(results, indent=2, default=float))
    atomic_write_text(out_dir / "report.md", render_markdown(results))


def write_rankings(out_dir: Path, image_ids: list[str], ranked_by: dict[str, list[list[int]]], products: Any) -> None:
    """rankings.json: every query's ranked product ids per strategy (``{strategy: {image_id: [ids]}}``), so
    a single answer can be checked against what the service or search.py returns for that photo."""
    out = {
        name: {q: [products[p].product_id for p in r] for q, r in zip(image_ids, ranked, strict=True)}
        for name, ranked in ranked_by.items()
    }
    atomic_write_text(out_dir / "rankings.json", json.dumps(out))


def save_png(fig: Any, path: Path) -> None:
    """Write a matplotlib figure atomically and release it."""
    import matplotlib.pyplot as plt

    atomic_save(path, lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)


def _hubness_note(results: dict[str, Any]) -> str:
    """Whether every strategy's scores were corrected for hubness (reports written before it say nothing)."""
    hub = results.get("hubness")
    if hub is None:
        return "No hubness correction." if "hubness" in results else ""
    return (
        f"Scores corrected for hubness: cos - {hub['weight']:g} x density ({hub['neighbours']} nearest of "
        f"{hub['reference_photos']} validation photos)."
    )


def _shift_note(results: dict[str, Any]) -> str:
    """Whether the catalog's vectors were moved by the prototype shift (reports before it say nothing)."""
    shift = results.get("prototype_shift")
    if shift is None:
        return " No prototype shift." if "prototype_shift" in results else ""
    return (
        f" Catalog vectors shifted towards shopper photos: products with training photos by "
        f"{shift['trained_weight']:g} x their own offset, the others by {shift['untrained_weight']:g} x their "
        f"category's ({shift['trained_products']} products measured)."
    )


def _novelty_note(results: dict[str, Any]) -> str:
    """Whether photos far from the training photos lifted untrained products or softened the gate (reports
    before it say nothing)."""
    novelty = results.get("novelty")
    if novelty is None:
        return " No novelty bonus." if "novelty" in results else ""
    lo, hi = novelty["ramp"]
    bonus = f"untrained products' items + {novelty['weight']:g} x ramp" if novelty["weight"] else "no bonus"
    slope = novelty.get("temperature_slope", 0.0)
    gate = f", the gate's temperature x (1 + {slope:g} x ramp)" if slope else ""
    return (
        f" Novelty: {bonus}{gate}, the ramp from 0 at a mean cosine of {hi:.3f} to the {novelty['neighbours']} "
        f"nearest of {novelty['training_photos']} training photos to 1 at {lo:.3f}."
    )
