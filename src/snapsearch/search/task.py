"""``python search.py``: one photo (or a folder or glob of them) through the Cascade, as a table a person
reads or as JSON lines a script reads."""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from snapsearch.data.image_io import ImageReadError
from snapsearch.search.cascade import Cascade
from snapsearch.search.config import cascade_from_config
from snapsearch.search.result import SearchResult

log = logging.getLogger(__name__)

FORMATS = ("table", "jsonl")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".mpo"})


def expand_images(spec: str) -> list[Path]:
    """A file, every image file of a folder (sorted), or the files a glob matches (sorted)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    if not found:
        raise FileNotFoundError(f"image={spec!r} is no image file, no folder holding images and matches nothing")
    return found


def render(result: SearchResult, image: Path, console: Console) -> None:
    """The ranked products, the top categories and the route, as a person reads them."""
    title = f"{image}: {'NO MATCH in this catalog (closest products below)' if result.rejected else 'products'}"
    table = Table(title=title)
    for column in ("rank", "product", "category", "score"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for hit in result.products:
        table.add_row(str(hit.rank), f"{hit.name} ({hit.product_id})", hit.category, f"{hit.score:.4f}")
    console.print(table)
    if result.categories:
        cats = ", ".join(f"{c.category} {100 * c.probability:.1f}%" for c in result.categories)
        console.print(f"top categories: {cats}")
    route = result.route
    whole = "global search" if route.strategy == "global" else "global search (fallback)"
    where = whole if route.fallback_to_global else ", ".join(route.partitions)
    console.print(f"route: {route.strategy} -> {where}")
    console.print("timings: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items()))


def run_search(cfg: DictConfig) -> list[SearchResult]:
    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format!r}; use one of {FORMATS}")
    images = expand_images(str(cfg.image))
    cascade: Cascade = cascade_from_config(cfg)
    cascade.check_request(cfg.k, cfg.strategy)  # a wrong k or strategy fails before any photo is read
    console = Console()
    results, failed = [], 0
    for image in images:
        try:
            result = cascade.search(image, k=cfg.k, strategy=cfg.strategy)
        except ImageReadError as err:
            if len(images) == 1:
                raise
            failed += 1
            log.warning("skipping %s", err)
            if cfg.format == "jsonl":
                print(json.dumps({"query": str(image), "error": err.reason}), flush=True)
            continue
        results.append(result)
        if cfg.format == "jsonl":
            print(json.dumps({"query": str(image), **result.to_dict()}), flush=True)
        else:
            render(result, image, console)
    if failed:
        log.warning("%d of %d images could not be read and were skipped", failed, len(images))
    return results
