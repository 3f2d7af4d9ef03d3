"""Text search: OCR reads printed product text from a generated image, both encoders match it to the right
Grocery product description, fusion re-ranks a wrong visual top-1, and the Cascade reports what it read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from snapsearch.data.sources.grocery import grocery_manifest, read_description
from snapsearch.retrieval import Ranking
from snapsearch.search.text import (
    CharNgramEncoder,
    OcrReader,
    SentenceEncoder,
    TextOptions,
    TextSearch,
    product_text,
)


def printed(lines: list[str], size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """A pack-like image: words printed large in dark ink on a light, slightly tinted label."""
    image = Image.new("RGB", size, (236, 240, 228))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((30, 40 + 90 * i), line, fill=(25, 30, 40), font=ImageFont.load_default(size=54))
    return np.asarray(image)


@pytest.fixture(scope="module")
def reader() -> OcrReader:
    return OcrReader(min_confidence=0.6)


@pytest.fixture(scope="module")
def grocery_texts(grocery: Path) -> tuple[list[str], list[str]]:
    m = grocery_manifest(grocery, download=False)
    catalog = m[m["domain"] == "catalog"]
    names = [p.replace("-", " ") for p in catalog["product_id"]]
    return list(catalog["product_id"]), [product_text(n, d) for n, d in zip(names, catalog["description"], strict=True)]


def test_ocr_reads_printed_words_and_nothing_from_a_blank_label(reader: OcrReader) -> None:
    read = reader.read(printed(["TROPICANA", "Apple Juice"]))
    assert "TROPICANA" in read.text.upper() and "APPLE" in read.text.upper() and read.seconds > 0
    assert reader.read(printed([])).text == ""


def test_grocery_descriptions_are_read_without_urls_or_nutrition(grocery: Path) -> None:
    text = read_description(
        grocery / "dataset/iconic-images-and-descriptions/Packages/Juice/Tropicana-Apple-Juice/"
        "Tropicana-Apple-Juice_Description.txt"
    )
    assert "Tropicana" in text and "http" not in text and "kilokalori" not in text


@pytest.mark.parametrize("encoder", ["minilm", "char_ngrams"])
def test_read_text_finds_its_product(reader: OcrReader, grocery_texts, encoder: str) -> None:
    ids, texts = grocery_texts
    enc = SentenceEncoder() if encoder == "minilm" else CharNgramEncoder()
    search = TextSearch(reader, enc, texts, weight=0.5, depth=20, min_chars=4)
    for words, product in ((["TROPICANA", "Apple Juice"], "Tropicana-Apple-Juice"), (["alpro", "SOYA"], None)):
        query = search.query_vector(reader.read(printed(words)))
        assert query is not None and np.isclose(np.linalg.norm(query), 1.0, atol=1e-4)
        best = ids[int(np.argmax(search.vectors @ query))]
        if product is not None:
            assert best == product
        else:
            assert best.startswith("Alpro")
    assert search.query_vector(reader.read(printed(["21"]))) is None  # a price tag is too little text


def test_fusion_reranks_within_the_route(reader: OcrReader, grocery_texts) -> None:
    ids, texts = grocery_texts
    search = TextSearch(reader, CharNgramEncoder(), texts, weight=0.5, depth=20, min_chars=4)
    right, wrong = ids.index("Tropicana-Apple-Juice"), ids.index("Bravo-Apple-Juice")
    visual = Ranking([wrong, right], [0.80, 0.74], [10, 11])
    query = search.query_vector(reader.read(printed(["Tropicana"])))
    fused = search.fuse(visual, query, k=2)
    assert fused.products == [right, wrong] and fused.items == [11, 10]
    assert search.fuse(visual, query, k=2, weight=0.0).products == [wrong, right]  # weight 0: images only
    with pytest.raises(ValueError, match="between 0 and 1"):
        TextSearch(reader, CharNgramEncoder(), texts, weight=1.5, depth=20, min_chars=4)


def test_cascade_reports_what_it_read(smoke_run: Path, tmp_path: Path) -> None:
    from snapsearch.search.cascade import Cascade

    options = TextOptions(CharNgramEncoder(), weight=0.9, depth=50, min_chars=4, min_confidence=0.6)
    cascade = Cascade.from_run(smoke_run, text=options, default_strategy="global")
    target = cascade.products[3]
    image = tmp_path / "label.png"
    Image.fromarray(printed(target.name.upper().split()[:3])).save(image)
    result = cascade.search(image, k=5)
    assert result.text is not None and result.text.used and result.text.read
    assert result.products[0].product_id == target.product_id  # the words outweigh a blank label's pixels
    assert "ocr" in result.timings_ms and result.to_dict()["text"]["used"] is True
    plain = cascade.search(np.full((200, 200, 3), 128, np.uint8), k=5)
    assert plain.text is not None and not plain.text.used  # nothing read: the visual ranking stands


@pytest.mark.slow  # ~60 s: a whole evaluation or export; CI runs it (pytest -m slow)
def test_evaluate_reports_text_with_and_without(smoke_run: Path, tmp_path: Path) -> None:
    import json

    from tests.conftest import run_entry

    run_entry(
        "evaluate.py",
        tmp_path,
        f"run_dir={smoke_run}",
        "logger=none",
        "rejection.enabled=false",
        "latency.n_queries=2",
        "bootstrap.resamples=50",
        "text_study.enabled=true",
        "text_study.query_stride=8",
        "text_study.weights=[0.0,0.5]",
        "text_study.ocr_categories=[]",
        "~text_study.encoders.minilm",
    )
    out = max((smoke_run / "evaluations").glob("catalog_trained_*"), key=lambda p: p.stat().st_mtime)
    study = json.loads((out / "report.json").read_text())["text"]
    enc = study["encoders"]["char_ngrams"]
    assert enc["weight"] in (0.0, 0.5) and set(enc["val_R@1_by_weight"]) == {"0.0", "0.5"}
    assert set(enc["by_group"]["all"]["global"]["strategies"]) == {"global", "global+text", "global+text@gate"}
    assert study["gated_share"] == 0.0  # no category allowed: OCR never runs behind the gate
    assert (out / "ocr.json").is_file() and len(json.loads((out / "ocr.json").read_text())) == study["n_test"] + study[
        "n_val"
    ]
    assert "## Text: the words on the pack" in (out / "report.md").read_text()
