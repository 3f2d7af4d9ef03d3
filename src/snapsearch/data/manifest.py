"""The manifest: one table format that every data source produces and every stage consumes.

Columns (one row per image):
- ``image_id``: unique id of the image (string).
- ``path``: absolute path of the image file.
- ``product_id``: the product (retrieval unit) the image shows.
- ``category``: the category path from the top level down, levels joined by ``/``
  (``Fruit/Apple``); the partition level used by the cascade is a depth into this path.
- ``domain``: ``catalog`` (shop images, the search pool) or ``query`` (user photos).
- ``split``: ``train``, ``val`` or ``test``. Catalog images are always the search pool, whatever their split.

Optional columns, kept when present: ``name`` (the product's display name; default: its id),
``description`` (the product's text) and ``gtin`` (its EAN/UPC barcode number: a photographed barcode then
finds it exactly).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ("image_id", "path", "product_id", "category", "domain", "split")
OPTIONAL_COLUMNS = ("name", "description", "gtin")
DOMAINS = frozenset({"catalog", "query"})
SPLITS = frozenset({"train", "val", "test"})
CATEGORY_SEP = "/"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message says which rows and how to fix them."""


def _rows(df: pd.DataFrame, mask: pd.Series, limit: int = 5) -> str:
    idx = df.index[mask].tolist()
    more = f" (and {len(idx) - limit} more)" if len(idx) > limit else ""
    return f"rows {idx[:limit]}{more}"


def validate_manifest(df: pd.DataFrame, *, check_files: bool = True) -> pd.DataFrame:
    """Check a manifest and return it normalised (string dtypes, default index).

    Raises :class:`ManifestError` naming the offending rows and the fix.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"manifest is missing columns {missing}; required columns are {list(COLUMNS)} "
            "(see README 'Your own catalog')"
        )
    optional = [c for c in OPTIONAL_COLUMNS if c in df.columns]
    extra = df.loc[:, optional].fillna("").astype(str).reset_index(drop=True)
    df = df.loc[:, list(COLUMNS)].reset_index(drop=True)
    empty = df.isna().any(axis=1) | (df.astype(str).apply(lambda s: s.str.strip() == "")).any(axis=1)
    if empty.any():
        raise ManifestError(f"manifest has empty cells in {_rows(df, empty)}; every column needs a value")
    df = pd.concat([df.astype(str), extra], axis=1)
    bad_domain = ~df["domain"].isin(DOMAINS)
    if bad_domain.any():
        raise ManifestError(
            f"unknown domain in {_rows(df, bad_domain)}: {sorted(set(df.loc[bad_domain, 'domain']))}; "
            f"use one of {sorted(DOMAINS)}"
        )
    bad_split = ~df["split"].isin(SPLITS)
    if bad_split.any():
        raise ManifestError(
            f"unknown split in {_rows(df, bad_split)}: {sorted(set(df.loc[bad_split, 'split']))}; "
            f"use one of {sorted(SPLITS)}"
        )
    dup = df["image_id"].duplicated(keep=False)
    if dup.any():
        raise ManifestError(f"duplicate image_id in {_rows(df, dup)}; image ids must be unique")
    per_product = df.groupby("product_id")["category"].nunique()
    ambiguous = per_product[per_product > 1]
    if len(ambiguous):
        raise ManifestError(
            f"products with more than one category: {ambiguous.index.tolist()[:5]}; "
            "a product belongs to exactly one category path"
        )
    if check_files:
        exists = df["path"].map(lambda p: Path(p).is_file())
        if not exists.all():
            raise ManifestError(
                f"{int((~exists).sum())} image files do not exist, e.g. {df.loc[~exists, 'path'].iloc[0]!r} "
                f"({_rows(df, ~exists)}); fix the paths or drop those rows"
            )
    return df


def category_at(categories: pd.Series, depth: int) -> pd.Series:
    """The partition label of each row: the category path cut to ``depth`` levels (1 = top level)."""
    if depth < 1:
        raise ManifestError(f"partition depth must be >= 1, got {depth}")
    parts = categories.str.split(CATEGORY_SEP)
    too_short = parts.map(len) < depth
    if too_short.any():
        raise ManifestError(
            f"partition depth {depth} is deeper than the category path of {int(too_short.sum())} rows, "
            f"e.g. {categories[too_short].iloc[0]!r}; lower data.partition_depth"
        )
    return parts.map(lambda p: CATEGORY_SEP.join(p[:depth]))


def read_manifest(path: str | Path, *, root: str | Path | None = None, check_files: bool = True) -> pd.DataFrame:
    """Read a CSV or Parquet manifest; relative image paths are taken relative to ``root``
    (default: the manifest's folder)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest file {str(path)!r} does not exist; set data.path to a CSV or Parquet file")
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix.lower() in {".csv", ".tsv"}:
        df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str)
    else:
        raise ManifestError(f"manifest {str(path)!r}: unsupported format; use .csv, .tsv or .parquet")
    base = Path(root) if root is not None else path.parent
    if "path" in df.columns:
        df["path"] = df["path"].map(lambda p: str(p) if pd.isna(p) or Path(p).is_absolute() else str(base / p))
    return validate_manifest(df, check_files=check_files)
