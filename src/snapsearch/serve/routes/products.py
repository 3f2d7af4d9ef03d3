"""The catalog's products: list, show, show the image, add (``POST /products``) and remove. Handlers are
plain functions (FastAPI's thread pool): reads take the catalog's read side, changes its write side
(:class:`~snapsearch.search.live.LiveCatalog`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse

from snapsearch.search.live import check_product_id
from snapsearch.search.products import Product
from snapsearch.serve.state import ServeState, State
from snapsearch.serve.uploads import read_upload

log = logging.getLogger(__name__)
router = APIRouter()


def product_json(p: Product) -> dict[str, Any]:
    return {
        "product_id": p.product_id,
        "name": p.name,
        "category": p.category,
        "image_url": f"/products/{p.product_id}/image" if p.image_path else None,
    }


def _get(state: ServeState, product_id: str) -> Product:
    with state.live.reading():
        if product_id not in state.cascade.products:
            raise HTTPException(404, f"no product {product_id!r} in the catalog")
        return state.cascade.products.get(product_id)


@router.get("/products")
def products(
    state: State, offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> dict[str, Any]:
    with state.live.reading():
        live_products = list(state.cascade.products.live())
    page = live_products[offset : offset + limit]
    return {
        "total": len(live_products),
        "offset": offset,
        "limit": limit,
        "products": [product_json(p) for p in page],
    }


@router.get("/products/{product_id}")
def product(state: State, product_id: str) -> dict[str, Any]:
    return product_json(_get(state, product_id))


@router.get("/products/{product_id}/image")
def product_image(state: State, product_id: str) -> FileResponse:
    p = _get(state, product_id)
    if not p.image_path or not Path(p.image_path).is_file():
        raise HTTPException(404, f"product {product_id!r} has no catalog image on this server")
    return FileResponse(p.image_path, media_type=None)


@router.post("/products", status_code=201)
def add_product(
    state: State,
    product_id: Annotated[str, Form()],
    category: Annotated[str, Form(description="category path, e.g. Fruit/Apple")],
    images: Annotated[list[UploadFile], File(description="one or more catalog images")],
    name: Annotated[str, Form()] = "",
) -> dict[str, Any]:
    product_id = check_product_id(product_id)  # 422 (CatalogChangeError) before any image is read
    if len(images) > state.max_images_per_product:
        raise HTTPException(
            422, f"{len(images)} images sent; a product is added with at most {state.max_images_per_product} images"
        )
    data = [read_upload(im, state.max_bytes, "images") for im in images]
    added = state.live.add(product_id, name, category, data)
    log.info("added product %s (%s) with %d images", added.product_id, added.category, len(data))
    return product_json(added)


@router.delete("/products/{product_id}")
def remove_product(state: State, product_id: str) -> dict[str, Any]:
    removed = state.live.remove(product_id)
    log.info("removed product %s", removed.product_id)
    return {"removed": removed.product_id}
