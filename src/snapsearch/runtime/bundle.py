"""The export bundle: one directory a deployment needs, described by ``bundle.json``.

``bundle.json`` holds the preprocessing contract of each model, the classifier's label map and calibration
temperature, the embedding size and metric, library versions, the verification results of the export and
a sha256 of every file. A bundle whose files do not match their checksums is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

BUNDLE_FILE = "bundle.json"
FORMAT_VERSION = 1
CHUNK = 1 << 20


class BundleError(ValueError):
    """A bundle that cannot be trusted or used; the message says what is wrong and what to do."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except bundle.json itself, by relative path."""
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != BUNDLE_FILE
    }


def read_bundle(folder: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Load ``bundle.json`` and (by default) check every file against its recorded sha256."""
    folder = Path(folder)
    meta_path = folder / BUNDLE_FILE
    if not meta_path.is_file():
        raise BundleError(f"{folder} is not an export bundle (no {BUNDLE_FILE}); create one with python export.py")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder}: bundle format {meta.get('format_version')} is not {FORMAT_VERSION}; re-export")
    if verify:
        recorded: dict[str, str] = meta["sha256"]
        actual = checksums(folder)
        missing = sorted(set(recorded) - set(actual))
        changed = sorted(f for f in recorded if f in actual and actual[f] != recorded[f])
        extra = sorted(set(actual) - set(recorded))
        if missing or changed or extra:
            raise BundleError(
                f"bundle {folder} failed its integrity check (missing: {missing}, modified: {changed}, "
                f"unexpected: {extra}); re-export it with python export.py rather than editing files"
            )
    return meta
