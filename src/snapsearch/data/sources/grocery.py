"""The Grocery Store dataset (Klasson, Zhang, Kjellström, WACV 2019; MIT licence) as a manifest.

81 products in 43 coarse categories in 3 groups; smartphone photos taken in stores (train/val/test lists)
and one iconic catalog image per product, with its description (the ``description`` column). Category paths
are ``<group>/<coarse>`` (``Fruit/Apple``).
"""

from __future__ import annotations

import csv
import logging
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

from snapsearch.data.manifest import ManifestError

log = logging.getLogger(__name__)

ARCHIVE_URL = "https://github.com/marcusklasson/GroceryStoreDataset/archive/refs/heads/master.zip"
DOWNLOAD_TIMEOUT_S = 60
SPLIT_FILES = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}


def _download(root: Path) -> None:
    """Fetch and unpack the public archive into ``root`` (atomic: unpacked beside it, then renamed)."""
    log.info("Grocery Store dataset not found at %s; downloading %s", root, ARCHIVE_URL)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        archive = Path(tmp) / "grocery.zip"
        with urllib.request.urlopen(ARCHIVE_URL, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(archive, "wb") as fh:
            shutil.copyfileobj(resp, fh)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        unpacked = next(p for p in Path(tmp).iterdir() if p.is_dir() and (p / "dataset").is_dir())
        unpacked.rename(root)


def _ensure_present(root: Path, download: bool) -> None:
    if (root / "dataset" / "classes.csv").is_file():
        return
    hint = (
        f"Put the dataset (the folder that holds dataset/classes.csv) at {root}, or point "
        "SNAPSEARCH_DATA_DIR (or data.manifest.root) at it. It is public: "
        "https://github.com/marcusklasson/GroceryStoreDataset"
    )
    if not download:
        raise ManifestError(f"Grocery Store dataset not found at {root}. {hint}")
    try:
        _download(root)
    except OSError as err:
        raise ManifestError(
            f"Grocery Store dataset not found at {root} and the download failed ({err}). {hint}"
        ) from err


def read_description(path: Path) -> str:
    """A product's description file as one line of text: the English and Swedish descriptions, title and
    maker, without the web address and the nutrition table (numbers that match every pack's OCR alike)."""
    if not path.is_file():
        return ""
    kept = []
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        line = line.strip()
        if line.lower().startswith(("nutrition", "näringsvärde")):
            break
        if line and not line.lower().startswith(("http", "url:")):
            kept.append(line)
    return " ".join(kept)


def grocery_manifest(root: str | Path, download: bool = True, product_level: bool = False) -> pd.DataFrame:
    """Manifest of the whole dataset: the split photos (``query``) and the iconic images (``catalog``).

    Categories are ``group/coarse``; ``product_level`` appends the product (``group/coarse/product``), so that
    ``data.partition_depth=3`` trains the 81-way product classifier: the reference that ranks products by
    class probabilities with no index (depths 1 and 2 are unchanged by it)."""
    root = Path(root).expanduser().resolve()
    _ensure_present(root, download)
    data = root / "dataset"
    rows: list[dict[str, str]] = []
    fine_to_category: dict[str, str] = {}
    with open(data / "classes.csv", newline="") as fh:
        for rec in csv.DictReader(fh):
            fine, coarse = rec["Class Name (str)"], rec["Coarse Class Name (str)"]
            iconic = rec["Iconic Image Path (str)"].lstrip("/")
            described = data / rec["Product Description Path (str)"].lstrip("/")
            group = Path(iconic).parts[1]
            category = f"{group}/{coarse}/{fine}" if product_level else f"{group}/{coarse}"
            fine_to_category[rec["Class ID (int)"]] = category
            rows.append(
                {
                    "image_id": f"iconic/{fine}",
                    "path": str(data / iconic),
                    "product_id": fine,
                    "category": category,
                    "domain": "catalog",
                    "split": "train",
                    "description": read_description(described),
                }
            )
    product_by_fine_id = {r_id: Path(r["path"]).parent.name for r_id, r in zip(fine_to_category, rows, strict=True)}
    for split, name in SPLIT_FILES.items():
        with open(data / name) as fh:
            for line in fh:
                if not line.strip():
                    continue
                rel, fine_id, _coarse_id = (s.strip() for s in line.split(","))
                rows.append(
                    {
                        "image_id": rel,
                        "path": str(data / rel),
                        "product_id": product_by_fine_id[fine_id],
                        "category": fine_to_category[fine_id],
                        "domain": "query",
                        "split": split,
                        "description": "",
                    }
                )
    return pd.DataFrame(rows)
