"""The shop's cache on disk: one folder per parameter set, published in one rename, complete or absent.

Images, then the manifest, then (last) a completion marker holding the parameters are written into a
temporary folder that is renamed to ``root/<hash of params>/``: an interrupted generation is redone,
never half-used, and a shop drawn meanwhile by another process is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from snapsearch.data.manifest import COLUMNS, ManifestError, read_manifest
from snapsearch.utils.atomic import atomic_dir, atomic_write_text

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
COMPLETE_MARKER = "COMPLETE.json"
PARAM_HASH_CHARS = 16


def shop_dir(root: str | Path, params: Mapping) -> Path:
    """The cache folder of one parameter set: ``root/<hash of the parameters and generator version>``."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return Path(root).expanduser().resolve() / digest[:PARAM_HASH_CHARS]


def load_cached(out: Path, params: Mapping) -> pd.DataFrame | None:
    """The finished shop in ``out`` if there is one for exactly these parameters, else None."""
    marker = out / COMPLETE_MARKER
    if not marker.is_file():
        return None
    try:
        if json.loads(marker.read_text()) != params:
            log.warning("synthetic shop at %s was made with other parameters; regenerating", out)
            return None
        return read_manifest(out / MANIFEST_NAME)
    except (OSError, ValueError, ManifestError) as err:
        log.warning("synthetic shop at %s is unusable (%s); regenerating", out, err)
        return None


class _BuiltMeanwhile(Exception):
    """Another process finished the same shop while this one drew it: keep theirs."""


def publish(out: Path, params: Mapping, draw: Callable[[Path, Mapping], list[dict[str, str]]]) -> None:
    """Publish as ``out`` what ``draw(folder, params)`` writes; it returns the images' manifest rows."""
    try:
        with atomic_dir(out) as tmp:
            rows = draw(tmp, params)
            atomic_write_text(tmp / MANIFEST_NAME, pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(index=False))
            atomic_write_text(tmp / COMPLETE_MARKER, json.dumps(params, sort_keys=True))
            if load_cached(out, params) is not None:
                raise _BuiltMeanwhile
    except _BuiltMeanwhile:
        log.info("another process finished the synthetic shop at %s first; using it", out)


def read_back(out: Path, params: Mapping) -> pd.DataFrame:
    """The shop just published at ``out``; ManifestError if it cannot be read back."""
    shop = load_cached(out, params)
    if shop is None:
        raise ManifestError(f"the synthetic shop just written to {out} cannot be read back; delete it and retry")
    return shop
