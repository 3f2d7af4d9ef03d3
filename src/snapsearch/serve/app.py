"""The HTTP service around one :class:`~snapsearch.search.cascade.Cascade` and its live catalog: search a photo,
browse, add and remove products, and the page at ``/``. OpenAPI docs at ``/docs``.

Every error a client causes is a 4xx with ``{"detail": "<what is wrong>"}``; the service keeps serving.
A request's body is capped before anything parses it (:class:`~snapsearch.serve.body_limit.BodyLimit`: 413,
chunked bodies included, nothing past the cap read or spooled to disk), each uploaded file again on read,
and ``POST /products`` takes at most ``max_images_per_product`` images and an id of ``PRODUCT_ID``'s alphabet.
Handlers are plain functions: FastAPI runs them in its thread pool, and the cascade's lock keeps a catalog
change from being seen half-applied.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from snapsearch.data.image_io import ImageReadError
from snapsearch.search.cascade import SearchError
from snapsearch.search.live import CatalogChangeError, LiveCatalog, check_product_id
from snapsearch.search.products import Product
from snapsearch.serve.body_limit import BodyLimit

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MB = 1 << 20


def _product_json(p: Product) -> dict[str, Any]:
    return {
        "product_id": p.product_id,
        "name": p.name,
        "category": p.category,
        "image_url": f"/products/{p.product_id}/image" if p.image_path else None,
    }


def _image_error(err: ImageReadError) -> HTTPException:
    """413 for an image too large to decode, 400 for anything else unusable."""
    status = 413 if err.reason.startswith("image too large") else 400
    return HTTPException(status, f"{err.path}: {err.reason}")


def _read_upload(upload: UploadFile | None, max_bytes: int, field: str) -> bytes:
    """The uploaded file's bytes, refused when missing, empty or larger than ``max_bytes``."""
    if upload is None:
        raise HTTPException(400, f"no image: send the photo as the multipart form field {field!r}")
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, f"{upload.filename or field}: larger than the {max_bytes // MB} MB upload limit")
    if not data:
        raise HTTPException(400, f"{upload.filename or field}: empty file")
    return data


def create_app(
    live: LiveCatalog,
    *,
    name: str,
    source: dict[str, Any],
    max_upload_mb: float,
    max_images_per_product: int = 10,
) -> FastAPI:
    """The service for ``live``'s cascade. ``source`` describes what it serves (for ``/info``). Each uploaded
    file may hold ``max_upload_mb``, a request's whole body 1 MB more (the form's other fields, its framing)."""
    cascade = live.cascade
    max_bytes = int(max_upload_mb * MB)
    app = FastAPI(title="snapsearch", summary="Snap a product, find it in the catalog", version=source["version"])
    detail = f"request body larger than the {max_upload_mb:g} MB upload limit"
    app.add_middleware(BodyLimit, max_bytes=max_bytes + MB, detail=detail)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        """One readable sentence instead of FastAPI's list of error objects."""
        parts = [f"{'.'.join(str(x) for x in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in err.errors()]
        return JSONResponse({"detail": "; ".join(parts)}, 422)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return {"name": name, "source": source, "catalog_changes": live.n_changes, **cascade.info()}

    @app.post("/search")
    def search(
        image: Annotated[UploadFile | None, File(description="the photo")] = None,
        k: Annotated[int, Query(description="products to return")] = 10,
        strategy: Annotated[str | None, Query(description="routing strategy; default: the service's")] = None,
    ) -> dict[str, Any]:
        try:
            cascade.check_request(k, strategy)
            result = cascade.search(_read_upload(image, max_bytes, "image"), k=k, strategy=strategy)
        except SearchError as err:
            raise HTTPException(400, str(err)) from None
        except ImageReadError as err:
            raise _image_error(err) from None
        out = result.to_dict()
        for hit in out["products"]:
            hit["image_url"] = f"/products/{hit['product_id']}/image"
        return out

    @app.get("/products")
    def products(
        offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> dict[str, Any]:
        with live.lock:
            live_products = list(cascade.products.live())
        page = live_products[offset : offset + limit]
        return {
            "total": len(live_products),
            "offset": offset,
            "limit": limit,
            "products": [_product_json(p) for p in page],
        }

    def _get(product_id: str) -> Product:
        with live.lock:
            if product_id not in cascade.products:
                raise HTTPException(404, f"no product {product_id!r} in the catalog")
            return cascade.products.get(product_id)

    @app.get("/products/{product_id}")
    def product(product_id: str) -> dict[str, Any]:
        return _product_json(_get(product_id))

    @app.get("/products/{product_id}/image")
    def product_image(product_id: str) -> FileResponse:
        p = _get(product_id)
        if not p.image_path or not Path(p.image_path).is_file():
            raise HTTPException(404, f"product {product_id!r} has no catalog image on this server")
        return FileResponse(p.image_path, media_type=None)

    @app.post("/products", status_code=201)
    def add_product(
        product_id: Annotated[str, Form()],
        category: Annotated[str, Form(description="category path, e.g. Fruit/Apple")],
        images: Annotated[list[UploadFile], File(description="one or more catalog images")],
        name: Annotated[str, Form()] = "",
    ) -> dict[str, Any]:
        try:
            product_id = check_product_id(product_id)
        except CatalogChangeError as err:
            raise HTTPException(err.status, str(err)) from None
        if len(images) > max_images_per_product:
            raise HTTPException(
                422, f"{len(images)} images sent; a product is added with at most {max_images_per_product} images"
            )
        data = [_read_upload(im, max_bytes, "images") for im in images]
        try:
            added = live.add(product_id, name, category, data)
        except CatalogChangeError as err:
            raise HTTPException(err.status, str(err)) from None
        except ImageReadError as err:
            raise _image_error(err) from None
        log.info("added product %s (%s) with %d images", added.product_id, added.category, len(data))
        return _product_json(added)

    @app.delete("/products/{product_id}")
    def remove_product(product_id: str) -> dict[str, Any]:
        try:
            removed = live.remove(product_id)
        except CatalogChangeError as err:
            raise HTTPException(err.status, str(err)) from None
        log.info("removed product %s", removed.product_id)
        return {"removed": removed.product_id}

    return app
