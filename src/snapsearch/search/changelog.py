"""The live catalog's change log: ``changes.jsonl``, one JSON line per change, appended and fsynced before the
change is acknowledged, so a change costs one short write however long the catalog's history is.

Line 1 is a header (``format_version``, ``embedder_fingerprint``, ``next_seq``); every further line is
``{"op": "add", "seq": n, "product": {...}, "images": [...], "embeddings": "..."}`` or
``{"op": "remove", "seq": n, "product_id": "..."}``. A crash can only tear the last line (no trailing newline):
it was never acknowledged, so it is dropped with a warning. A bad line anywhere else is corruption and
stops the start with the file and line. :meth:`ChangeLog.rewrite` (compaction, conversion) replaces the
whole file atomically. The folder's older format, one ``changes.json`` rewritten per change, is converted
once on open and kept as ``changes.json.v1.bak``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from snapsearch.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

LOG_FILE = "changes.jsonl"
OLD_FILE = "changes.json"  # format 1: {"format_version": 1, "embedder_fingerprint", "events": [...]}
OLD_BACKUP = "changes.json.v1.bak"
FORMAT_VERSION = 2
OPS = ("add", "remove")


class ChangeLogError(ValueError):
    """The log cannot be read: a corrupt line, another format or another embedder's changes."""


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (POSIX needs the folder itself fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n"


class ChangeLog:
    """One changes folder's log. Not thread-safe: the live catalog writes one change at a time."""

    def __init__(self, folder: str | Path, embedder_fingerprint: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOG_FILE
        self.fingerprint = embedder_fingerprint
        self.next_seq = 0  # numbers a change's files; never reused, compaction included
        self.n_lines = 0  # changes in the file (header excluded)
        self._fh: IO[bytes] | None = None

    # ------------------------------------------------------------------ reading
    def read(self) -> list[dict[str, Any]]:
        """The logged changes in order (converting a format-1 folder first, dropping a torn last line)."""
        if (self.folder / OLD_FILE).is_file():
            self._convert()
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        end = len(data)
        if data and not data.endswith(b"\n"):
            end = data.rfind(b"\n") + 1
            log.warning(
                "%s: the last line (%d bytes, no newline) was torn by a crash and is dropped: that change was "
                "never acknowledged",
                self.path,
                len(data) - end,
            )
            with open(self.path, "rb+") as fh:  # appends must not land after the torn fragment
                fh.truncate(end)
                os.fsync(fh.fileno())
        lines = data[:end].decode("utf-8").split("\n")[:-1]
        if not lines:
            return []
        records = [self._parse(text, number) for number, text in enumerate(lines, 1)]
        self._check_header(records[0])
        events = records[1:]
        for number, event in enumerate(events, 2):
            if event.get("op") not in OPS or not isinstance(event.get("seq"), int):
                raise ChangeLogError(f"{self.path}, line {number}: not a change (needs 'op' in {OPS} and 'seq')")
        self.next_seq = max([int(records[0].get("next_seq", 0)), *(e["seq"] + 1 for e in events)])
        self.n_lines = len(events)
        return events

    def _parse(self, text: str, number: int) -> dict[str, Any]:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise ChangeLogError(
                f"{self.path}, line {number}: corrupt ({err.msg} at column {err.colno}); only a torn last line "
                "is expected after a crash: restore the folder from a backup or fix that line"
            ) from None
        if not isinstance(record, dict):
            raise ChangeLogError(f"{self.path}, line {number}: corrupt (not a JSON object)")
        return record

    def _check_header(self, header: dict[str, Any]) -> None:
        if header.get("format_version") != FORMAT_VERSION:
            raise ChangeLogError(f"{self.path}, line 1: unknown format {header.get('format_version')!r}")
        self._check_fingerprint(header.get("embedder_fingerprint"))

    def _convert(self) -> None:
        """Format 1 -> this log, atomically; the old file is kept as a backup once the log is durable."""
        old = self.folder / OLD_FILE
        if not self.path.is_file():  # a log already beside it was written by an interrupted conversion
            state = json.loads(old.read_text())
            if state.get("format_version") != 1:
                raise ChangeLogError(f"{old}: unknown format {state.get('format_version')!r}")
            self._check_fingerprint(state.get("embedder_fingerprint"))
            # format 1 named a change's files by its position in the list: that is its seq
            events = [{"op": e["op"], "seq": i} | e for i, e in enumerate(state["events"])]
            self.rewrite(events, len(events))
            self.close()
        os.replace(old, self.folder / OLD_BACKUP)
        fsync_dir(self.folder)
        log.info("converted %s to %s (the old file is kept as %s)", old, LOG_FILE, OLD_BACKUP)

    def _check_fingerprint(self, fingerprint: str | None) -> None:
        if fingerprint != self.fingerprint:
            raise ChangeLogError(
                f"the catalog changes at {self.folder} were embedded by another embedder than this source's; "
                "move that folder aside (its images are kept there) and add the products again"
            )

    # ------------------------------------------------------------------ writing
    def header(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "embedder_fingerprint": self.fingerprint, "next_seq": self.next_seq}

    def append(self, event: dict[str, Any]) -> None:
        """Write one change and fsync it: when this returns, the change survives a crash."""
        if self._fh is None:
            if not self.path.is_file():
                self.rewrite([], self.next_seq)
            self._fh = open(self.path, "ab")  # noqa: SIM115  (held open; closed by close())
        data = _line(event).encode()
        start = self._fh.tell()
        try:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except BaseException:
            # a failed write must not leave a fragment that the next append turns into a corrupt middle line
            self._fh.truncate(start)
            raise
        self.n_lines += 1
        self.next_seq = max(self.next_seq, int(event["seq"]) + 1)

    def rewrite(self, events: Iterable[dict[str, Any]], next_seq: int) -> None:
        """Replace the whole log by ``events`` (atomically, durable when this returns)."""
        events = list(events)
        self.next_seq = max(self.next_seq, next_seq)
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, "".join(_line(r) for r in [self.header(), *events]))
        fsync_dir(self.folder)
        self.n_lines = len(events)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
