"""Queries that are not shop photos, made from the catalog's own images: what a shopper sends when the
picture came from a screen, not a shelf.

- ``catalog``: the catalog image re-framed, rescaled, tilted and recompressed (a saved or forwarded product
  picture);
- ``screenshot``: the catalog image inside a phone app's, a web page's or a chat's chrome, with the
  product's name, a price, buttons and UI text around it (the layouts are drawn here, seeded);
- ``barcode``: a printed EAN-13 label pasted onto a shop photo.

The query-type head trains on the first two (and the shop photos); the evaluation makes its own with other
seeds. Everything is deterministic in ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

from snapsearch.data.image_io import read_rgb
from snapsearch.utils.atomic import atomic_save

# What a query image can be; the query-type head tells the first three apart, a decoded code the last.
QUERY_TYPES = ("photo", "catalog", "screenshot")
BARCODE = "barcode"
SCREENSHOT_LAYOUTS = ("app", "web", "chat")
JPEG_QUALITY = 90

Rgb = tuple[int, int, int]


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> Rgb:
    r, g, b = (int(v) for v in rng.integers(low, high, 3))
    return r, g, b


def _price(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(9, 90))},{int(rng.choice([0, 50, 90, 95])):02d} kr"


def _paste(canvas: Image.Image, rgb: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """The product image fitted (aspect kept) and centred in ``box`` = (left, top, width, height)."""
    left, top, width, height = box
    image = Image.fromarray(rgb)
    image.thumbnail((width, height))
    canvas.paste(image, (left + (width - image.width) // 2, top + (height - image.height) // 2))


def _status_bar(draw: ImageDraw.ImageDraw, width: int, rng: np.random.Generator, fg: Rgb) -> None:
    draw.text((16, 8), f"{int(rng.integers(6, 23))}:{int(rng.integers(0, 60)):02d}", fill=fg, font=_font(18))
    draw.rectangle((width - 46, 12, width - 18, 24), outline=fg, width=2)  # battery
    draw.rectangle((width - 44, 14, width - 44 + int(rng.integers(4, 25)), 22), fill=fg)


def _app(rgb: np.ndarray, title: str, rng: np.random.Generator) -> Image.Image:
    """A shop app's product page on a phone: status bar, coloured header, search field, the product on a
    card, its name, a price, a button and a tab bar."""
    width, height = 390, 780
    accent = _colour(rng, 0, 200)
    canvas = Image.new("RGB", (width, height), _colour(rng, 235, 256))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, 96), fill=accent)
    _status_bar(draw, width, rng, (255, 255, 255))
    draw.text((16, 40), str(rng.choice(["Shop", "Market", "Groceries", "Handla"])), fill="white", font=_font(26))
    draw.rounded_rectangle((12, 108, width - 12, 146), radius=18, fill=(255, 255, 255), outline=(200, 200, 200))
    draw.text((30, 117), "Search products", fill=(150, 150, 150), font=_font(17))
    card = (20, 160, width - 40, 330)
    draw.rectangle((card[0], card[1], card[0] + card[2], card[1] + card[3]), fill="white")
    _paste(canvas, rgb, card)
    draw.text((20, 505), title[:28], fill=(20, 20, 20), font=_font(24))
    draw.text((20, 540), _price(rng), fill=accent, font=_font(28))
    draw.rounded_rectangle((20, 600, width - 20, 650), radius=12, fill=accent)
    draw.text((width // 2 - 60, 612), "Add to cart", fill="white", font=_font(22))
    draw.rectangle((0, height - 64, width, height), fill=(250, 250, 250), outline=(210, 210, 210))
    for i in range(4):
        x = 40 + i * (width - 80) // 3
        draw.ellipse((x - 12, height - 48, x + 12, height - 24), outline=(120, 120, 120), width=2)
    return canvas


def _web(rgb: np.ndarray, title: str, rng: np.random.Generator) -> Image.Image:
    """A web shop's product page in a desktop browser: tab strip, address bar, site menu, the product on
    the left, name, price, description lines and a button on the right."""
    width, height = 1024, 640
    accent = _colour(rng, 0, 200)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, 36), fill=(222, 225, 230))
    draw.rounded_rectangle((12, 6, 250, 36), radius=8, fill="white")
    draw.text((24, 12), title[:24], fill=(40, 40, 40), font=_font(14))
    draw.rectangle((0, 36, width, 76), fill=(245, 246, 248))
    draw.rounded_rectangle((90, 44, width - 120, 68), radius=12, fill="white", outline=(200, 200, 200))
    slug = title.lower().replace(" ", "-")[:40]
    draw.text((104, 48), f"shop.example/products/{slug}", fill=(90, 90, 90), font=_font(15))
    draw.rectangle((0, 76, width, 124), fill=accent)
    for i, item in enumerate(("Fruit", "Vegetables", "Dairy", "Offers")):
        draw.text((40 + 140 * i, 90), item, fill="white", font=_font(18))
    _paste(canvas, rgb, (40, 150, 440, 440))
    draw.text((520, 160), title[:34], fill=(20, 20, 20), font=_font(30))
    draw.text((520, 210), _price(rng), fill=accent, font=_font(34))
    for i in range(int(rng.integers(3, 7))):
        draw.rectangle((520, 280 + 24 * i, 520 + int(rng.integers(250, 460)), 290 + 24 * i), fill=(200, 200, 200))
    draw.rounded_rectangle((520, 470, 760, 520), radius=8, fill=accent)
    draw.text((560, 482), "Add to basket", fill="white", font=_font(22))
    return canvas


def _chat(rgb: np.ndarray, title: str, rng: np.random.Generator) -> Image.Image:
    """A messenger conversation on a phone: the product picture forwarded in a bubble, with messages."""
    width, height = 390, 780
    canvas = Image.new("RGB", (width, height), _colour(rng, 225, 250))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, 90), fill=(248, 248, 248))
    _status_bar(draw, width, rng, (0, 0, 0))
    draw.ellipse((16, 44, 52, 80), fill=_colour(rng, 60, 200))
    draw.text((64, 50), str(rng.choice(["Anna", "Mum", "Erik", "Flat 4B"])), fill=(0, 0, 0), font=_font(20))
    draw.rounded_rectangle((16, 110, 280, 150), radius=16, fill="white")
    draw.text((30, 120), "can you get this?", fill=(0, 0, 0), font=_font(17))
    bubble = (100, 170, 270, 300)
    draw.rounded_rectangle((bubble[0] - 8, bubble[1] - 8, 378, 478), radius=16, fill=(215, 245, 200))
    _paste(canvas, rgb, bubble)
    draw.text((110, 480 - 30), title[:22], fill=(30, 30, 30), font=_font(15))
    draw.rounded_rectangle((120, 500, 370, 540), radius=16, fill=(215, 245, 200))
    draw.text((134, 510), "the one on the left", fill=(0, 0, 0), font=_font(17))
    draw.rectangle((0, height - 60, width, height), fill=(248, 248, 248))
    draw.rounded_rectangle((12, height - 50, width - 60, height - 12), radius=18, fill="white")
    return canvas


LAYOUTS: dict[str, Callable[[np.ndarray, str, np.random.Generator], Image.Image]] = {
    "app": _app,
    "web": _web,
    "chat": _chat,
}


def screenshot(rgb: np.ndarray, title: str, layout: str, rng: np.random.Generator) -> np.ndarray:
    """The product image composed into a screen ``layout``, at the scale a phone or browser captures it
    (randomly 0.6-1.0 of the drawn size) and cropped like a shared screenshot (top or bottom cut off)."""
    canvas = LAYOUTS[layout](rgb, title, rng)
    scale = float(rng.uniform(0.6, 1.0))
    canvas = canvas.resize((round(canvas.width * scale), round(canvas.height * scale)), Image.Resampling.BILINEAR)
    cut = int(rng.integers(0, canvas.height // 8))
    box = (0, cut, canvas.width, canvas.height) if rng.random() < 0.5 else (0, 0, canvas.width, canvas.height - cut)
    return np.asarray(canvas.crop(box))


def catalog_view(rgb: np.ndarray, seed: int) -> np.ndarray:
    """The catalog image as a shopper re-sends it: cropped, rescaled, slightly tilted (white fill), colour
    shifted, recompressed. Never a shop photo: the background stays the catalog's."""
    transform = A.Compose(
        [
            A.RandomResizedCrop(size=(320, 320), scale=(0.55, 1.0), ratio=(0.8, 1.25)),
            A.Affine(rotate=(-12, 12), scale=(0.8, 1.05), fill=255, p=0.7),
            A.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.02, p=0.7),
            A.ImageCompression(quality_range=(40, 90)),
        ],
        seed=seed,
    )
    return transform(image=rgb)["image"]


def gtin_for(index: int, prefix: str = "20") -> str:
    """A valid EAN-13 for product ``index`` in the in-store numbering range (prefix 20-29: never a real
    product's code), for evaluations of catalogs without barcodes."""
    body = f"{prefix}{index:010d}"
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def barcode_label(photo: np.ndarray, ean13: str, rng: np.random.Generator) -> np.ndarray:
    """The photo with a printed EAN-13 label (black on white, quiet zone kept) pasted at a random place."""
    code = np.asarray(zxingcpp.create_barcode(ean13, zxingcpp.BarcodeFormat.EAN13).to_image(scale=2))
    h, w = code.shape
    out = photo.copy()
    if out.shape[0] < h + 20 or out.shape[1] < w + 20:  # small photos: enlarge so the label fits
        out = np.asarray(Image.fromarray(out).resize((max(out.shape[1], w + 40), max(out.shape[0], h + 40))))
        out = out.copy()
    top = int(rng.integers(10, out.shape[0] - h - 9))
    left = int(rng.integers(10, out.shape[1] - w - 9))
    out[top : top + h, left : left + w] = code[..., None]
    return out


def _save_jpeg(rgb: np.ndarray, path: Path) -> None:
    atomic_save(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="JPEG", quality=JPEG_QUALITY))


def render_views(
    rows: pd.DataFrame,
    kind: str,
    per_row: int,
    seed: int,
    out_dir: str | Path,
    *,
    titles: Sequence[str] | None = None,
    gtins: Sequence[str] | None = None,
    max_pixels: int,
) -> pd.DataFrame:
    """``per_row`` generated query images of ``kind`` (``catalog``, ``screenshot`` or ``barcode``) for every
    manifest row (catalog images for the first two, shop photos for barcodes), written as JPEGs under
    ``out_dir`` and returned as manifest rows of the same products (``query_type`` = ``kind``).

    ``titles``: the name shown in a screenshot, per row; ``gtins``: the EAN-13 printed on each photo."""
    out_dir = Path(out_dir)
    records = []
    for i, row in enumerate(rows.itertuples(index=False)):
        rgb = read_rgb(row.path, max_pixels=max_pixels)
        for j in range(per_row):
            rng = np.random.default_rng([seed, i, j])
            if kind == "catalog":
                image = catalog_view(rgb, int(rng.integers(2**31)))
            elif kind == "screenshot":
                layout = SCREENSHOT_LAYOUTS[(i + j) % len(SCREENSHOT_LAYOUTS)]
                image = screenshot(rgb, titles[i] if titles is not None else row.product_id, layout, rng)
            elif kind == BARCODE:
                if gtins is None:
                    raise ValueError("barcode views need the EAN-13 to print for each row (gtins=...)")
                image = barcode_label(rgb, gtins[i], rng)
            else:
                raise ValueError(f"unknown view kind {kind!r}; choose catalog, screenshot or {BARCODE}")
            path = out_dir / kind / f"{i:05d}_{j}.jpg"
            _save_jpeg(image, path)
            records.append(row._asdict() | {"image_id": f"{kind}/{path.stem}", "path": str(path), "query_type": kind})
    return pd.DataFrame(records, columns=[*rows.columns, "query_type"])
