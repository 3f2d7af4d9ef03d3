"""The report sections of the studies beyond the shop photo: query types and text."""

from __future__ import annotations

from typing import Any

from snapsearch.evaluation.tables import markdown_table, relative_with_interval, value_with_interval


def query_types_section(study: dict[str, Any] | None) -> list[str]:
    """The type gate's accuracy and confusion matrix, then R@1 and R@5 per query type for each strategy
    alone and for each photo route with the type gate (``<route>+types``)."""
    if not study:
        return []
    types = list(study["by_type"])
    detected = sorted({d for row in study["confusion"].values() for d in row})
    confusion = [[t, *(str(study["confusion"].get(t, {}).get(d, 0)) for d in detected)] for t in types]
    runs = list(next(iter(study["by_type"].values()))["strategies"])
    rows = [
        [
            run,
            *(
                f"{value_with_interval(study['by_type'][t]['strategies'][run], 'R@1')} / "
                f"{study['by_type'][t]['strategies'][run]['metrics']['R@5']:.3f}"
                for t in types
            ),
        ]
        for run in runs
    ]
    head = (
        "no query-type head (every query is searched as a photo)"
        if study["head"] is None
        else (f"head over {study['head']}; routes {study['routes']}")
    )
    held_out = study.get("held_out_products_accuracy")
    return [
        "## Query types",
        "",
        f"Type gate: the barcode reader, then the {head}. Accuracy {study['accuracy']:.3f} "
        + ", ".join(f"{t} {a:.3f}" for t, a in study["accuracy_by_type"].items())
        + (f"; on products whose views the head never saw (2-fold by product): {held_out:.3f}." if held_out else "."),
        "",
        markdown_table(["true \\ detected", *detected], confusion),
        "",
        "R@1 [95% interval] / R@5 per query type. `<route>+types`: shop photos take `<route>`, the others their "
        "type's route, and a barcode found in the catalog answers exactly.",
        "",
        markdown_table(["strategy", *(f"{t} (n={study['by_type'][t]['n_queries']})" for t in types)], rows),
        "",
    ]


def text_section(study: dict[str, Any] | None) -> list[str]:
    """Per encoder: the chosen weight, then per top group R@1, R@5 and mAP@10 with and without text."""
    if not study:
        return []
    ocr = study["ocr_ms"]
    out = [
        "## Text: the words on the pack",
        "",
        f"OCR on {study['n_test']} test photos: text read on {100 * study['read_share']:.0f}%; "
        f"{ocr['mean']:.0f} ms mean, {ocr['p50']:.0f} ms p50, {ocr['p95']:.0f} ms p95 per photo. Reading only "
        f"when the gate's top category is one of {study['ocr_categories']} (`+text@gate`): "
        f"{100 * study['gated_share']:.0f}% of the photos, {study['gated_ocr_ms_mean']:.0f} ms mean per query.",
        "",
    ]
    for name, enc in study["encoders"].items():
        groups = list(enc["by_group"])
        strategies = list(enc["by_group"]["all"])
        rows = []
        for s in strategies:
            for run in enc["by_group"]["all"][s]["strategies"]:
                cells = []
                for g in groups:
                    entry = enc["by_group"][g][s]["strategies"][run]
                    base = enc["by_group"][g][s]["strategies"][s]
                    cells.append(
                        f"{value_with_interval(entry, 'R@1')} / {entry['metrics']['R@5']:.3f} / "
                        f"{entry['metrics']['mAP@10']:.3f}"
                        + ("" if run == s else f" ({relative_with_interval(entry, base, 'R@1')})")
                    )
                rows.append([run, *cells])
        header = ["strategy", *(f"{g} (n={enc['by_group'][g][strategies[0]]['n_queries']})" for g in groups)]
        used = ", ".join(f"{g} {100 * v:.0f}%" for g, v in enc["text_used_share_by_group"].items())
        out += [
            f"### Encoder `{name}` ({enc['encoder']}): weight {enc['weight']:.1f}, chosen on "
            f"{study['n_val']} validation photos",
            "",
            f"Enough text read to use it: {100 * enc['text_used_share']:.0f}% of the photos ({used}).",
            "",
            "R@1 [95% interval] / R@5 / mAP@10 per top group; with text, the R@1 change against the same "
            "strategy without text [paired 95% interval]. Validation R@1 by weight: "
            + ", ".join(f"{w}: {r:.3f}" for w, r in enc["val_R@1_by_weight"].items()),
            "",
            markdown_table(header, rows),
            "",
        ]
    return out
