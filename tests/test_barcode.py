"""Barcode queries: generated EAN/UPC/QR images decoded by zxing-cpp, GTINs normalised, and a code found in
the catalog answering exactly through the Cascade, with no model and no search."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zxingcpp

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.image_io import read_rgb
from snapsearch.search.barcode import normalize_gtin, read_codes
from snapsearch.search.cascade import Cascade
from snapsearch.search.products import ProductTable

EAN13 = "5000112637922"  # a valid EAN-13 (check digit 2)
UNKNOWN = "4006381333931"  # valid, but no product carries it


def barcode_on(photo: np.ndarray, text: str, fmt: zxingcpp.BarcodeFormat = zxingcpp.BarcodeFormat.EAN13) -> np.ndarray:
    """The photo with a printed barcode label pasted on it (black on white, with its quiet zone)."""
    code = np.asarray(zxingcpp.create_barcode(text, fmt).to_image(scale=2))
    h, w = code.shape
    out = photo.copy()
    if out.shape[0] < h + 20 or out.shape[1] < w + 20:  # small photos: enlarge so the label fits
        reps = (-(-(h + 20) // out.shape[0]), -(-(w + 20) // out.shape[1]), 1)
        out = np.tile(out, reps)
    out[10 : 10 + h, 10 : 10 + w] = code[..., None]
    return out


def test_gtins_are_normalised_and_checked() -> None:
    assert normalize_gtin(EAN13) == "0" + EAN13
    assert normalize_gtin("036000291452") == normalize_gtin("0036000291452")  # UPC-A is an EAN-13 with a 0
    assert normalize_gtin("96385074") == "00000096385074"  # EAN-8
    assert normalize_gtin("5000112637923") is None  # wrong check digit
    assert normalize_gtin("https://example.com") is None and normalize_gtin("12345") is None


@pytest.mark.parametrize(
    ("fmt", "text"),
    [(zxingcpp.BarcodeFormat.EAN13, EAN13), (zxingcpp.BarcodeFormat.UPCA, "036000291452"),
     (zxingcpp.BarcodeFormat.EAN8, "96385074"), (zxingcpp.BarcodeFormat.QRCode, EAN13)],
)  # fmt: skip
def test_codes_are_read_from_a_photo(query_photo: Path, fmt: zxingcpp.BarcodeFormat, text: str) -> None:
    codes = read_codes(barcode_on(read_rgb(query_photo, max_pixels=10**8), text, fmt))
    assert [c.gtin for c in codes] == [normalize_gtin(text)]
    assert read_codes(read_rgb(query_photo, max_pixels=10**8)) == []  # the plain photo holds none


def test_manifest_gtin_column_reaches_the_product_table() -> None:
    manifest = pd.DataFrame(
        {
            "image_id": ["a", "b"],
            "path": ["/x/a.jpg", "/x/b.jpg"],
            "product_id": ["p1", "p2"],
            "category": ["Food/Milk", "Food/Juice"],
            "domain": ["catalog", "catalog"],
            "split": ["train", "train"],
            "gtin": ["036000291452", ""],
        }
    )
    table = ProductTable.from_manifest(manifest, LabelMaps.from_manifest(manifest, 2))
    assert table.by_gtin(normalize_gtin("0036000291452")) == 0 and table[1].gtin is None
    table.remove("p1")
    assert table.by_gtin(normalize_gtin("036000291452")) is None  # a removed product is not found


def test_a_catalog_barcode_answers_exactly_without_the_models(smoke_bundle: Path, query_photo: Path) -> None:
    cascade = Cascade.from_bundle(smoke_bundle, runtime="onnx", barcodes=True)
    target = cascade.products[3]
    products = [replace(p, gtin=normalize_gtin(EAN13)) if i == 3 else p for i, p in enumerate(cascade.products)]
    cascade.products = ProductTable(products, cascade.products.categories)
    photo = read_rgb(query_photo, max_pixels=10**8)

    exact, plain, unknown = cascade.search_batch(
        [barcode_on(photo, EAN13), photo, barcode_on(photo, UNKNOWN)], k=5, strategy="top1"
    )
    assert exact.query_type == "barcode" and exact.barcode == EAN13
    assert [h.product_id for h in exact.products] == [target.product_id] and exact.route.strategy == "barcode"
    assert exact.to_dict()["query_type"] == "barcode"  # what the service's JSON says
    assert plain.query_type == "photo" and plain.barcode is None and len(plain.products) == 5
    assert unknown.query_type == "photo" and unknown.barcode == UNKNOWN  # read, not in the catalog: searched
    alone = cascade.search(barcode_on(photo, EAN13), k=5, strategy="top1")
    assert alone.timings_ms["classify"] == alone.timings_ms["embed"] == 0.0 and alone.timings_ms["barcode"] > 0
    assert cascade.info()["barcodes"] is True


def test_auto_reads_barcodes_only_while_the_catalog_holds_a_gtin(smoke_bundle: Path, query_photo: Path) -> None:
    cascade = Cascade.from_bundle(smoke_bundle, runtime="onnx", barcodes="auto")
    categories = cascade.products.categories
    cascade.products = ProductTable([replace(p, gtin=None) for p in cascade.products], categories)
    photo = barcode_on(read_rgb(query_photo, max_pixels=10**8), EAN13)
    skipped = cascade.search(photo, k=5, strategy="top1")
    assert not cascade.reads_barcodes() and skipped.barcode is None and skipped.query_type != "barcode"
    with_code = [replace(p, gtin=normalize_gtin(EAN13)) if i == 3 else p for i, p in enumerate(cascade.products)]
    cascade.products = ProductTable(with_code, categories)
    exact = cascade.search(photo, k=5, strategy="top1")
    assert cascade.reads_barcodes() and exact.query_type == "barcode" and exact.barcode == EAN13
    assert [h.product_id for h in exact.products] == [cascade.products[3].product_id]
    with pytest.raises(ValueError, match="barcodes='sometimes'"):
        Cascade.from_bundle(smoke_bundle, runtime="onnx", barcodes="sometimes")
