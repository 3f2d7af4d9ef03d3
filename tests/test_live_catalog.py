"""The live catalog's write path: an fsynced append-only log per change, the old format converted, a torn last
line dropped, compaction to exactly the live set, searches unchanged by many deletes, and one read section
for a barcode answer."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

import snapsearch.search.cascade as cascade_module
import snapsearch.search.changelog as changelog
from snapsearch.retrieval.live_index import Compaction
from snapsearch.search.barcode import normalize_gtin
from snapsearch.search.cascade import Cascade
from snapsearch.search.changelog import LOG_FILE, OLD_BACKUP, OLD_FILE, ChangeLogError
from snapsearch.search.live import LiveCatalog, LiveOptions
from snapsearch.search.products import ProductTable
from tests.conftest import run_manifest


@pytest.fixture(scope="module")
def photos(smoke_run: Path) -> list[bytes]:
    """Twelve distinct test photos of the synthetic shop."""
    m = run_manifest(smoke_run)
    paths = m[(m["domain"] == "query") & (m["split"] == "test")]["path"].iloc[:12]
    return [Path(p).read_bytes() for p in paths]


def _catalog(bundle: Path, folder: Path, options: LiveOptions | None = None) -> LiveCatalog:
    return LiveCatalog(Cascade.from_bundle(bundle, runtime="onnx"), folder, options)


def _category(live: LiveCatalog) -> str:
    return live.cascade.products.categories[0]


def _live_ids(live: LiveCatalog) -> set[str]:
    return {p.product_id for p in live.cascade.products.live()}


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / LOG_FILE).read_text().splitlines()]


def test_each_change_appends_one_fsynced_line(
    smoke_bundle: Path, photos: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = _catalog(smoke_bundle, tmp_path / "changes")
    log_fsyncs, rewrites = [], []
    real_fsync, real_rewrite = os.fsync, changelog.atomic_write_text

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(LOG_FILE):
            log_fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(changelog, "atomic_write_text", lambda *a: rewrites.append(a) or real_rewrite(*a))
    live.add("a-1", "", _category(live), [photos[0]])
    assert len(rewrites) == 1  # the header, once, when the folder gets its first change
    path = tmp_path / "changes" / LOG_FILE
    inode, before = path.stat().st_ino, path.read_bytes()
    for i in range(2, 5):
        live.add(f"a-{i}", "", _category(live), [photos[i]])
    live.remove("a-2")
    after = path.read_bytes()
    assert path.stat().st_ino == inode and after.startswith(before) and len(rewrites) == 1  # appended, not rewritten
    assert len(log_fsyncs) == 5 and live.n_changes == 5  # one fsync of the log per change, before it returns
    assert [e["op"] for e in _lines(tmp_path / "changes")[1:]] == ["add"] * 4 + ["remove"]
    assert _lines(tmp_path / "changes")[0]["format_version"] == 2


def test_an_old_format_folder_is_converted_once(smoke_bundle: Path, photos: list[bytes], tmp_path: Path) -> None:
    folder = tmp_path / "changes"
    live = _catalog(smoke_bundle, folder)
    source_id = next(iter(live.cascade.products.live())).product_id
    live.add("old-1", "", _category(live), [photos[0]])
    live.add("old-2", "", _category(live), [photos[1]])
    live.remove(source_id)
    live.close()
    header, *events = _lines(folder)
    old = {"format_version": 1, "embedder_fingerprint": header["embedder_fingerprint"], "events": events}
    for e in old["events"]:
        del e["seq"]
    (folder / OLD_FILE).write_text(json.dumps(old, indent=1))  # what the previous release wrote
    (folder / LOG_FILE).unlink()

    converted = _catalog(smoke_bundle, folder)
    assert not (folder / OLD_FILE).exists() and (folder / OLD_BACKUP).is_file()
    assert [e["seq"] for e in _lines(folder)[1:]] == [0, 1, 2] and converted.n_changes == 3
    assert {"old-1", "old-2"} <= _live_ids(converted) and source_id not in _live_ids(converted)
    converted.add("new-1", "", _category(converted), [photos[2]])  # files numbered after the converted ones
    assert _lines(folder)[-1]["seq"] == 3 and (folder / "embeddings/000003.npz").is_file()
    assert _live_ids(_catalog(smoke_bundle, folder)) == _live_ids(converted)


def test_a_torn_last_line_is_dropped_and_a_corrupt_one_is_an_error(
    smoke_bundle: Path, photos: list[bytes], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "changes"
    live = _catalog(smoke_bundle, folder)
    live.add("t-1", "", _category(live), [photos[0]])
    live.add("t-2", "", _category(live), [photos[1]])
    live.close()
    whole = (folder / LOG_FILE).read_bytes()
    with open(folder / LOG_FILE, "ab") as fh:  # a crash in the middle of writing a third change
        fh.write(b'{"op":"add","seq":2,"product":{"product_id":"t-3","na')
    with caplog.at_level(logging.WARNING):
        reopened = _catalog(smoke_bundle, folder)
    assert "torn" in caplog.text and (folder / LOG_FILE).read_bytes() == whole
    assert {"t-1", "t-2"} <= _live_ids(reopened) and "t-3" not in _live_ids(reopened)
    reopened.add("t-3", "", _category(reopened), [photos[2]])  # appends after the last whole line
    reopened.close()
    assert "t-3" in _live_ids(_catalog(smoke_bundle, folder))

    lines = (folder / LOG_FILE).read_text().splitlines(keepends=True)
    lines[2] = '{"op": "add", "seq": 1, "prod\n'
    (folder / LOG_FILE).write_text("".join(lines))
    with pytest.raises(ChangeLogError, match=rf"{LOG_FILE}, line 3: corrupt"):
        _catalog(smoke_bundle, folder)
    lines[0] = json.dumps(json.loads(lines[0]) | {"embedder_fingerprint": "another"}) + "\n"
    (folder / LOG_FILE).write_text("".join(lines[:2]))
    with pytest.raises(ChangeLogError, match="another embedder"):
        _catalog(smoke_bundle, folder)


def test_compaction_keeps_exactly_the_live_set(smoke_bundle: Path, photos: list[bytes], tmp_path: Path) -> None:
    folder = tmp_path / "changes"
    options = LiveOptions(compact_log_after=4, index=Compaction(share=0.05, max_removed=2))
    live = _catalog(smoke_bundle, folder, options)
    source = [p.product_id for p in live.cascade.products.live()][:3]
    for i in range(8):
        live.add(f"c-{i}", "", _category(live), [photos[i]])
    for pid in ["c-1", "c-3", "c-4", source[0], "c-6", source[1]]:
        live.remove(pid)
    # 14 changes; compacted on its own once dead lines (c-1, c-3, c-4: added, then removed) outnumbered the rest
    assert len(_lines(folder)) - 1 == live.n_changes == 8
    assert not (folder / "embeddings/000001.npz").exists() and (folder / "embeddings/000006.npz").exists()
    live.compact_log()
    kept = _lines(folder)[1:]  # the minimal log: removals of source products, then the live adds in order
    assert [(e["op"], e.get("product_id") or e["product"]["product_id"]) for e in kept] == [
        ("remove", source[0]),
        ("remove", source[1]),
        *[("add", f"c-{i}") for i in (0, 2, 5, 7)],
    ]
    assert not (folder / "embeddings/000006.npz").exists() and (folder / "embeddings/000002.npz").exists()
    assert live.index.rebuilt and max(live.index.tombstones().values()) <= 2  # type: ignore[attr-defined]
    reopened = _catalog(smoke_bundle, folder, options)
    assert _live_ids(reopened) == _live_ids(live)
    reopened.add("c-8", "", _category(reopened), [photos[8]])  # no file of a kept change is reused
    assert _lines(folder)[-1]["seq"] == 14 and (folder / "embeddings/000002.npz").exists()


def test_a_search_after_many_deletes_equals_a_fresh_catalog(
    smoke_bundle: Path, photos: list[bytes], tmp_path: Path
) -> None:
    options = LiveOptions(compact_log_after=8, index=Compaction(share=0.1, max_removed=4))
    churned = _catalog(smoke_bundle, tmp_path / "churned", options)
    fresh = _catalog(smoke_bundle, tmp_path / "fresh")
    gone = [p.product_id for p in churned.cascade.products.live()][::3]
    for i in range(10):
        churned.add(f"m-{i}", "", _category(churned), [photos[i]])
    for pid in [*gone, *(f"m-{i}" for i in range(8))]:
        churned.remove(pid)
    for pid in gone:
        fresh.remove(pid)
    for i in (8, 9):
        fresh.add(f"m-{i}", "", _category(fresh), [photos[i]])
    assert _live_ids(churned) == _live_ids(fresh) and churned.index.rebuilt  # type: ignore[attr-defined]
    for strategy in ("global", "top1", "topk", "fusion"):
        for photo in photos[8:]:
            a, b = (live.cascade.search(photo, k=10, strategy=strategy) for live in (churned, fresh))
            assert [(h.product_id, round(h.score, 5)) for h in a.products] == [
                (h.product_id, round(h.score, 5)) for h in b.products
            ], strategy


def test_a_barcode_answer_is_read_in_one_lock_section(
    smoke_bundle: Path, query_photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from snapsearch.data.image_io import read_rgb
    from tests.test_barcode import EAN13, barcode_on

    cascade = Cascade.from_bundle(smoke_bundle, runtime="onnx", barcodes=True)
    products = [replace(p, gtin=normalize_gtin(EAN13)) if i == 3 else p for i, p in enumerate(cascade.products)]
    cascade.products = ProductTable(products, cascade.products.categories)
    seen: list[tuple[str, int | None]] = []

    class Lock:
        """Numbers its sections, so the test sees which one each read ran in (None: outside any)."""

        section, held = 0, False

        def __enter__(self) -> None:
            self.section, self.held = self.section + 1, True

        def __exit__(self, *exc: object) -> None:
            self.held = False

    lock = cascade.lock = Lock()
    by_gtin, answer = cascade.products.by_gtin, cascade_module.barcode_answer

    def mark(what: str) -> None:
        seen.append((what, lock.section if lock.held else None))

    monkeypatch.setattr(cascade.products, "by_gtin", lambda g: mark("lookup") or by_gtin(g))
    monkeypatch.setattr(cascade_module, "barcode_answer", lambda t, p: mark("answer") or answer(t, p))
    photo = barcode_on(read_rgb(query_photo, max_pixels=10**8), EAN13)
    assert cascade.search(photo, k=5).query_type == "barcode"
    # Cascade.prepare's lookup (outside, first) only spares the photo the preprocessing; the answer's own
    # lookup and the answer run in one section held while both ran: no delete in between
    (_, peek), (_, lookup), (_, built) = seen
    assert peek is None and lookup is not None and lookup == built


def test_a_failed_append_leaves_no_fragment_and_an_interrupted_conversion_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = changelog.ChangeLog(tmp_path, "fp")
    log.append({"op": "remove", "seq": 0, "product_id": "a"})
    whole = log.path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full_disk)
        with pytest.raises(OSError, match="No space"):
            log.append({"op": "remove", "seq": 1, "product_id": "b"})
    assert log.path.read_bytes() == whole and log.n_lines == 1  # not acknowledged, not left behind
    log.append({"op": "remove", "seq": 1, "product_id": "b"})
    log.close()
    # a crash after the converted log was written and before the old file was moved: the log wins
    (tmp_path / OLD_FILE).write_text(json.dumps({"format_version": 1, "embedder_fingerprint": "fp", "events": []}))
    again = changelog.ChangeLog(tmp_path, "fp")
    assert [e["product_id"] for e in again.read()] == ["a", "b"] and again.next_seq == 2
    assert not (tmp_path / OLD_FILE).exists() and (tmp_path / OLD_BACKUP).is_file()
