"""Barcode queries: an EAN/UPC (or a QR code holding a GTIN) decoded from the photo and found in the catalog is
an exact answer, with no model and no search. zxing-cpp is a self-contained wheel (no system library)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zxingcpp

# UPC-E is left out: its 8 digits are a compressed UPC-A, not a GTIN-8, so it would need expanding first.
FORMATS = zxingcpp.barcode_formats_from_str("EAN13,EAN8,UPCA,QRCode")
GTIN_LENGTHS = (8, 12, 13, 14)
# a cascade's ``barcodes``: always read, never, or while the catalog holds a GTIN
BARCODE_MODES = (True, False, "auto")


def normalize_gtin(text: str) -> str | None:
    """The GTIN-14 form (zero-padded) of a GTIN-8/12/13/14 string with a valid check digit, else None: an
    EAN-13 and the UPC-A it extends then compare equal."""
    digits = text.strip()
    if not digits.isdigit() or len(digits) not in GTIN_LENGTHS:
        return None
    gtin = digits.zfill(14)
    body = [int(d) for d in gtin[:-1]]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(body))
    return gtin if (10 - total % 10) % 10 == int(gtin[-1]) else None


@dataclass(frozen=True)
class DecodedCode:
    text: str
    format: str
    gtin: str | None  # None: the code holds no valid GTIN (a URL in a QR code, for instance)


def read_codes(rgb: np.ndarray) -> list[DecodedCode]:
    """Every retail barcode zxing-cpp finds in an RGB photo, in its reading order."""
    found = zxingcpp.read_barcodes(np.ascontiguousarray(rgb), formats=FORMATS)
    return [DecodedCode(r.text, str(r.format), normalize_gtin(r.text)) for r in found if r.valid]
