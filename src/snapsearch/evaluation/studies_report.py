"""The report sections of the robustness studies: a growing pool, camera faults and "not in our catalog"."""

from __future__ import annotations

from typing import Any

from snapsearch.evaluation.camera_faults import FAULT_PHOTOS
from snapsearch.evaluation.tables import markdown_table


def growing_pool_section(study: dict[str, Any] | None) -> list[str]:
    """R@1 (R@5) of each strategy as distractor products join the pool, and the plot."""
    if not study:
        return []
    strategies = list(study["points"][0]["metrics"])
    rows = [
        [
            str(p["n_items"]),
            str(p["n_products"]),
            *(f"{p['metrics'][s]['R@1']:.3f} ({p['metrics'][s]['R@5']:.3f})" for s in strategies),
        ]
        for p in study["points"]
    ]
    return [
        "## Growing pool (distractor products added to the catalog)",
        "",
        "R@1 (R@5) of the same queries as train photos of other products join the pool as catalog items of "
        "their own pseudo-products, in their product's partition.",
        "",
        markdown_table(["pool items", "products", *strategies], rows),
        "",
        "![growing pool](growing_pool.png)",
        "",
    ]


def _faults_table(runs: dict[str, Any]) -> str:
    """One row per corruption: the gate's top-1 and ECE, each strategy's R@1 and the share of clean R@1 kept
    (with its interval when the study resampled)."""

    def kept(r: dict[str, Any], s: str) -> str:
        ci = r.get("R@1_kept_ci", {}).get(s)
        return f"{100 * r['R@1_kept'][s]:.0f}%" + (f" [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]" if ci else "")

    def ece(r: dict[str, Any]) -> str:
        ci = r.get("gate_ece_ci")
        return f"{r['gate_ece']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    strategies = list(runs["clean"]["R@1"])
    rows = [
        [name, f"{r['gate_top1']:.3f}", ece(r), *(f"{r['R@1'][s]:.3f} ({kept(r, s)})" for s in strategies)]
        for name, r in runs.items()
    ]
    return markdown_table(["photos", "gate top-1", "gate ECE", *strategies], rows)


def camera_faults_section(study: dict[str, Any] | None) -> list[str]:
    """Each corruption: the gate's accuracy and ECE, and each strategy's R@1 (share of clean R@1 kept), for
    all photos and, under the unseen-products protocol, for the seen and held-out products apart."""
    if not study:
        return []
    boot = study.get("bootstrap")
    note = f" 95% intervals: paired bootstrap over {boot['unit']}s, {boot['resamples']} resamples." if boot else ""
    parts = [
        f"## Camera faults ({study['n_photos']} {FAULT_PHOTOS[study.get('photos', 'test')]}, seeded corruptions)",
        "",
        "R@1 (share of the clean R@1 kept) and the gate's top-1 accuracy and calibration error under each fault."
        + note,
        "",
        _faults_table(study["corruptions"]),
        "",
    ]
    for group, runs in (study.get("by_novelty") or {}).items():
        parts += [f"### Camera faults, {group} products", "", _faults_table(runs), ""]
    return parts


def rejection_section(rejection: dict[str, Any] | None) -> list[str]:
    """The "not in our catalog" table, when the study ran."""
    if not rejection:
        return []

    def cell(r: dict[str, Any], key: str) -> str:
        low, high = r.get("intervals", {}).get(key, (float("nan"), float("nan")))
        return f"{r[key]:.3f} [{low:.3f}, {high:.3f}]"

    kept = rejection.get("untrained_in_pool") or []
    rows = [
        [
            name,
            f"{r['threshold']:.4f}",
            cell(r["test"], "out_of_catalog_rejected"),
            cell(r["test"], "in_catalog_wrongly_rejected"),
            cell(r["test"], "auroc"),
            *(
                [cell(r["test_untrained"], "in_catalog_wrongly_rejected"), cell(r["test_untrained"], "auroc")]
                if kept
                else []
            ),
        ]
        for name, r in rejection["strategies"].items()
    ]
    held = rejection["held_out_products"]
    emptied = rejection["emptied_partition_queries"]
    header = ["strategy", "threshold", "out-of-catalog rejected", "in-catalog wrongly rejected", "AUROC"]
    in_pool = (
        f" In the pool beside the trained products: {len(kept)} fully unseen products no model trained on (a "
        "shop's products added after training): their test photos are in-catalog queries, and the last two "
        "columns measure them apart against the out-of-catalog photos."
        if kept
        else ""
    )
    return [
        "## Not in our catalog (rejection)",
        "",
        f"Out of the pool: {len(held['val']) + len(held['test'])} {rejection['out_of_catalog']}, in two disjoint "
        f"halves: {len(held['val'])} whose validation photos choose each threshold (Youden's J), {len(held['test'])} "
        f"whose test photos measure it.{in_pool} Queries whose partition was emptied (reported apart, not "
        f"measured): {emptied['val']} validation, {emptied['test']} test. 95% intervals over "
        f"{rejection['bootstrap_unit']}s.",
        "",
        markdown_table(
            [*header, *(["untrained in-catalog wrongly rejected", "AUROC, untrained vs out"] if kept else [])], rows
        ),
        "",
    ]
