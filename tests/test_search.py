"""The Cascade on a real (tiny) bundle and run: one photo in every form, the evaluator's ranking, search.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.image_io import read_rgb
from snapsearch.runtime.batch import BatchIO
from snapsearch.runtime.bundle import read_bundle
from snapsearch.search.cascade import Cascade, SearchError
from snapsearch.search.catalog_index import label_indices

from .conftest import ROOT, run_manifest


@pytest.fixture(scope="module")
def cascade(smoke_bundle: Path) -> Cascade:
    return Cascade.from_bundle(smoke_bundle, runtime="onnx")


def test_one_photo_in_every_form_gives_one_answer(cascade: Cascade, query_photo: Path) -> None:
    by_path = cascade.search(query_photo, k=5, strategy="top1")
    assert [h.rank for h in by_path.products] == [1, 2, 3, 4, 5] or len(by_path.products) < 5
    scores = [h.score for h in by_path.products]
    assert scores == sorted(scores, reverse=True)
    probs = [c.probability for c in by_path.categories]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # top1 searches exactly the most probable category, and every product it returns lives there
    assert by_path.route.partitions == [by_path.categories[0].category] and not by_path.route.fallback_to_global
    assert {h.category.startswith(by_path.route.partitions[0]) for h in by_path.products} == {True}
    assert set(by_path.timings_ms) == {"decode", "classify", "embed", "search", "total"}
    assert by_path.timings_ms["classify"] > 0 and by_path.timings_ms["embed"] > 0
    rgb = read_rgb(
        query_photo, max_pixels=cascade.max_pixels, draft_size=cascade.draft_size(cascade.runtime.embedder_preprocess)
    )
    with open(query_photo, "rb") as fh:
        assert cascade.search(fh, k=5, strategy="top1").product_index == by_path.product_index
    for other in (query_photo.read_bytes(), rgb, Image.fromarray(rgb)):
        assert cascade.search(other, k=5, strategy="top1").product_index == by_path.product_index
    as_json = json.loads(json.dumps(by_path.to_dict()))
    assert as_json["products"][0]["product_id"] == by_path.products[0].product_id
    assert as_json["rejected"] is False and "product_index" not in as_json


def test_global_search_skips_the_gate(cascade: Cascade, query_photo: Path) -> None:
    result = cascade.search(query_photo, k=3, strategy="global")
    assert result.route.fallback_to_global and result.categories == [] and result.timings_ms["classify"] == 0.0


def test_bad_requests_are_refused(cascade: Cascade, query_photo: Path) -> None:
    with pytest.raises(SearchError, match="unknown strategy"):
        cascade.search(query_photo, strategy="nearest")
    for k in (0, cascade.k_max + 1):
        with pytest.raises(SearchError, match="ask for 1 to"):
            cascade.search(query_photo, k=k)


def test_rejection_threshold_says_no_match(cascade: Cascade, query_photo: Path) -> None:
    cascade.rejection = {"top1": 2.0}  # cosine similarity never reaches 2
    try:
        result = cascade.search(query_photo, k=3, strategy="top1")
        assert result.rejected and result.rejection.threshold == 2.0
        assert result.products  # the closest products still come back, marked as no match
    finally:
        cascade.rejection = {}


def test_photo_ranks_as_the_evaluator_ranks_it(smoke_run: Path) -> None:
    """One photo through search() and the evaluator's batched path (infer_frame + rank) gives the same
    ranked products for every strategy: a photo is never ranked two ways."""
    cascade = Cascade.from_run(smoke_run)
    labels = LabelMaps.load(smoke_run / "labels.json")
    m = run_manifest(smoke_run)
    photos = m[(m["domain"] == "query") & (m["split"] == "test")].head(12)
    io = BatchIO(batch_size=5, workers=0, max_pixels=cascade.max_pixels, draft=cascade.draft_decode)
    out = cascade.infer_frame(photos, labels, io, classify=True, what="test photos")
    true_part = label_indices(photos.loc[out.rows], labels)[0]
    for name in cascade.searchable():
        rankings, _ = cascade.rank(out.embeddings, out.probs, 5, name, true_part)
        single = [cascade.search(p, k=5, strategy=name).product_index for p in photos.loc[out.rows, "path"]]
        assert single == [[int(x) for x in r.products] for r in rankings], name
    batch = cascade.search_batch(list(photos["path"]), k=5, strategy="fusion")
    assert [b.product_index for b in batch] == [
        cascade.search(p, k=5, strategy="fusion").product_index for p in photos["path"]
    ]


def _search_cli(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "search.py"), *overrides]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("script", "overrides"), [("search.py", ["image=missing.jpg"]), ("serve.py", [])])
def test_search_and_serve_write_no_log_file(script: str, overrides: list[str], tmp_path: Path) -> None:
    """Hydra's job logging is set up before the task refuses its missing source: the console only, no
    ``<cwd>/search.log`` or ``serve.log`` (Hydra's default job logging opens one, empty, wherever it runs)."""
    cmd = [sys.executable, str(ROOT / script), *overrides]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("[ERROR]"), proc.stderr[-2000:]  # the job's logging
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_search_cli_table_jsonl_and_errors(smoke_bundle: Path, query_photo: Path, tmp_path: Path) -> None:
    table = _search_cli(tmp_path, f"bundle={smoke_bundle}", f"image={query_photo}", "k=3")
    assert table.returncode == 0, table.stderr[-3000:]
    default = read_bundle(smoke_bundle)["default_strategy"]  # chosen on the validation photos at export
    assert f"route: {default} ->" in table.stdout and ("top categories:" in table.stdout or default == "global")

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(query_photo.read_bytes())
    (folder / "b.jpg").write_bytes(b"this is not a photo")
    jsonl = _search_cli(tmp_path, f"bundle={smoke_bundle}", f"image={folder}", "format=jsonl", "strategy=fusion", "k=4")
    assert jsonl.returncode == 0, jsonl.stderr[-3000:]
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [Path(line["query"]).name for line in lines] == ["a.jpg", "b.jpg"]
    assert len(lines[0]["products"]) == 4 and lines[0]["route"]["strategy"] == "fusion"
    assert "not an image" in lines[1]["error"]
    assert not list(tmp_path.glob("**/.hydra")), "a search writes no run folder"
    assert not list(tmp_path.glob("*.log")), "nor a log file"

    # the user's errors: one line, exit status 2, no traceback
    for overrides, message in (
        ((f"bundle={smoke_bundle}", f"image={query_photo}", "strategy=nearest"), "unknown strategy"),
        ((f"bundle={tmp_path}", f"image={query_photo}"), "not an export bundle"),
        ((f"bundle={smoke_bundle}", f"image={tmp_path / 'missing.jpg'}"), "matches nothing"),
    ):
        proc = _search_cli(tmp_path, *overrides)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_tampered_bundle_is_refused_before_any_file_is_read(smoke_bundle: Path, query_photo: Path, tmp_path) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(smoke_bundle, copy)
    labels = json.loads((copy / "labels.json").read_text())
    labels["categories"] = labels["categories"][:1]  # a label map that would crash a reader, were it read
    (copy / "labels.json").write_text(json.dumps(labels))
    proc = _search_cli(tmp_path, f"bundle={copy}", f"image={query_photo}")
    assert proc.returncode == 2 and "failed its integrity check" in proc.stderr and "labels.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    np.testing.assert_equal(proc.stdout, "")
