"""Manifest validation: every error names the rows and the fix; sources produce valid manifests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.manifest import COLUMNS, ManifestError, category_at, read_manifest, validate_manifest
from snapsearch.data.sources.grocery import grocery_manifest


def _frame(tmp_path: Path, n: int = 4) -> pd.DataFrame:
    rows = []
    for i in range(n):
        img = tmp_path / f"img{i}.jpg"
        img.write_bytes(b"x")
        rows.append(
            {
                "image_id": f"id{i}",
                "path": str(img),
                "product_id": f"p{i % 2}",
                "category": f"G/C{i % 2}",
                "domain": "catalog" if i < 2 else "query",
                "split": "train",
            }
        )
    return pd.DataFrame(rows)


def test_valid_manifest_passes(tmp_path: Path) -> None:
    df = validate_manifest(_frame(tmp_path))
    assert list(df.columns) == list(COLUMNS)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns=["domain"]), "missing columns"),
        (lambda d: d.assign(domain=["catalog", "shop", "query", "query"]), "unknown domain"),
        (lambda d: d.assign(split=["train", "train", "dev", "train"]), "unknown split"),
        (lambda d: d.assign(image_id=["a", "a", "b", "c"]), "duplicate image_id"),
        (lambda d: d.assign(category=["G/C0", "G/C1", "G/C1", "G/C1"]), "more than one category"),
        (lambda d: d.assign(product_id=[None, "p1", "p0", "p1"]), "empty cells"),
        (lambda d: d.assign(path=["/nope/missing.jpg", *d["path"][1:]]), "do not exist"),
    ],
)
def test_validation_errors_are_actionable(tmp_path: Path, mutate, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        validate_manifest(mutate(_frame(tmp_path)))


def test_read_csv_and_parquet_with_relative_paths(tmp_path: Path) -> None:
    df = _frame(tmp_path)
    df["path"] = df["path"].map(lambda p: Path(p).name)
    df.to_csv(tmp_path / "m.csv", index=False)
    df.to_parquet(tmp_path / "m.parquet")
    for name in ("m.csv", "m.parquet"):
        out = read_manifest(tmp_path / name)
        assert out["path"].map(lambda p: Path(p).is_absolute()).all()
    with pytest.raises(ManifestError, match="unsupported format"):
        (tmp_path / "m.xlsx").write_text("")
        read_manifest(tmp_path / "m.xlsx")
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "absent.csv")


def test_category_depth(tmp_path: Path) -> None:
    cats = pd.Series(["Fruit/Apple", "Packages/Juice"])
    assert category_at(cats, 1).tolist() == ["Fruit", "Packages"]
    with pytest.raises(ManifestError, match="deeper than the category path"):
        category_at(cats, 3)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["catalog", "query", "bad"])),
        min_size=1,
        max_size=12,
    )
)
def test_validation_property(rows: list[tuple[str, str]]) -> None:
    """Any manifest either validates into the schema or raises ManifestError, nothing else."""
    df = pd.DataFrame(
        {
            "image_id": [f"{i}" for i in range(len(rows))],
            "path": ["x"] * len(rows),
            "product_id": [p for p, _ in rows],
            "category": [f"G/{p}" for p, _ in rows],
            "domain": [d for _, d in rows],
            "split": ["train"] * len(rows),
        }
    )
    try:
        out = validate_manifest(df, check_files=False)
    except ManifestError:
        assert any(d == "bad" for _, d in rows)
    else:
        assert set(out["domain"]) <= {"catalog", "query"}


def test_grocery_manifest_matches_protocol(grocery: Path) -> None:
    df = validate_manifest(grocery_manifest(grocery, download=False))
    counts = df.groupby(["domain", "split"]).size().to_dict()
    assert counts == {
        ("catalog", "train"): 81,
        ("query", "train"): 2640,
        ("query", "val"): 296,
        ("query", "test"): 2485,
    }
    labels = LabelMaps.from_manifest(df, partition_depth=2)
    assert len(labels.categories) == 43 and len(labels.products) == 81
    assert labels.categories[0] == "Fruit/Apple" and labels.categories[-1] == "Vegetables/Zucchini"
    assert len(LabelMaps.from_manifest(df, partition_depth=1).categories) == 3
    banana = df[df["product_id"] == "Banana"]
    assert set(banana["category"]) == {"Fruit/Banana"}


def test_grocery_missing_root_says_where(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="SNAPSEARCH_DATA_DIR"):
        grocery_manifest(tmp_path / "nowhere", download=False)
