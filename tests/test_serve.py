"""The service in-process (TestClient) and as a real uvicorn process: search, the live catalog, and every
bad request answered with a 4xx JSON error while the service keeps serving."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from omegaconf import OmegaConf
from PIL import Image

from snapsearch.runtime.bundle import read_bundle
from snapsearch.search.cascade import Cascade
from snapsearch.search.hubness import HubnessOptions
from snapsearch.search.live import CatalogChangeError, LiveCatalog, check_product_id
from snapsearch.serve.app import MB, create_app
from snapsearch.serve.batcher import BatchOptions
from tests.conftest import CONF_DIR, GATED

MAX_UPLOAD_MB = 2
BATCHING = BatchOptions.from_config(OmegaConf.load(CONF_DIR / "serve.yaml"))  # the shipped settings


def _client(bundle: Path, changes: Path) -> TestClient:
    live = LiveCatalog(Cascade.from_bundle(bundle, runtime="onnx"), changes)
    app = create_app(live, name="test", source={"version": "test"}, max_upload_mb=MAX_UPLOAD_MB, batching=BATCHING)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(smoke_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with _client(smoke_bundle, tmp_path_factory.mktemp("changes")) as started:  # the app's lifespan: its batcher
        yield started


def _search(client: TestClient, data: bytes, **params) -> dict:
    r = client.post("/search", files={"image": ("photo.jpg", data, "image/jpeg")}, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_search_info_products_and_page(client: TestClient, query_photo: Path, smoke_bundle: Path) -> None:
    info = client.get("/info").json()
    # the strategy export chose on the validation photos answers a request that names none
    assert info["default_strategy"] == read_bundle(smoke_bundle)["default_strategy"]
    assert "oracle" not in info["strategies"]
    assert info["n_products"] == len(client.get("/products", params={"limit": 1000}).json()["products"])
    out = _search(client, query_photo.read_bytes(), k=3, strategy="topk")
    assert len(out["products"]) == 3 and out["route"]["strategy"] == "topk" and len(out["route"]["partitions"]) == 3
    image = client.get(out["products"][0]["image_url"])
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size[0] > 0
    first = out["products"][0]["product_id"]
    assert client.get(f"/products/{first}").json()["product_id"] == first
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "<html" in client.get("/").text.lower() and client.get("/static/app.js").status_code == 200
    assert "/search" in client.get("/openapi.json").json()["paths"]


def _jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def test_bad_requests_get_a_4xx_json_error(client: TestClient, query_photo: Path) -> None:
    photo = query_photo.read_bytes()
    cases = [
        (client.post("/search"), 400, "no image"),
        (client.post("/search", files={"image": ("a.txt", b"hello, not a photo", "text/plain")}), 400, "not an image"),
        (client.post("/search", files={"image": ("t.jpg", photo[: len(photo) // 2], "image/jpeg")}), 400, "truncated"),
        (client.post("/search", files={"image": ("big.jpg", _jpeg(12_000, 9_000), "image/jpeg")}), 413, "too large"),
        (client.post("/search", files={"image": ("x.jpg", b"0" * (3 * 1024 * 1024), "image/jpeg")}), 413, "limit"),
        (
            client.post("/search", files={"image": ("p.jpg", photo)}, params={"strategy": "nope"}),
            400,
            "unknown strategy",
        ),
        (client.post("/search", files={"image": ("p.jpg", photo)}, params={"strategy": "oracle"}), 400, "unknown"),
        (client.post("/search", files={"image": ("p.jpg", photo)}, params={"k": 0}), 400, "ask for 1 to"),
        (client.post("/search", files={"image": ("p.jpg", photo)}, params={"k": 100000}), 400, "ask for 1 to"),
        (client.post("/search", files={"image": ("p.jpg", photo)}, params={"k": "ten"}), 422, "k:"),
        (client.get("/products/no-such-product"), 404, "no product"),
        (client.delete("/products/no-such-product"), 404, "no product"),
        (client.get("/products", params={"limit": 0}), 422, "limit"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, (message, response.status_code, response.text)
        assert message in response.json()["detail"], (message, response.json())
    assert _search(client, photo, k=2)["products"]  # and it keeps serving


BOUNDARY = "snapsearchboundary"


def _post_chunked(client: TestClient, path: str, parts) -> httpx.Response:
    """POST an async generator as the body (no Content-Length: chunked), lazily, to the app in-process.
    (httpx's ASGI transport pulls a chunk only when the app reads one; TestClient reads the whole body first.)"""

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app), base_url="http://test") as c:
            headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            return await c.post(path, content=parts, headers=headers)

    return asyncio.run(post())


def _file_part(field: str, filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()


def test_chunked_upload_is_cut_at_the_body_limit(client: TestClient, query_photo: Path) -> None:
    """A chunked body (no Content-Length) over the limit gets 413, and the stream is read no further than
    the limit: the multipart parser, which spools files over 1 MB to disk, never sees more."""
    cap = (MAX_UPLOAD_MB + 1) * MB  # the file limit and 1 MB for the form's other fields and framing
    chunk = 64 * 1024
    pulled = 0

    async def body(payload: bytes, n_chunks: int):
        nonlocal pulled
        for part in (_file_part("image", "p.jpg"), *([payload] * n_chunks), f"\r\n--{BOUNDARY}--\r\n".encode()):
            pulled += len(part)
            yield part

    r = _post_chunked(client, "/search", body(b"0" * chunk, 4 * cap // chunk))  # 4x the cap on offer
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413 and "upload limit" in r.json()["detail"], r.text
    assert pulled <= cap + chunk, pulled  # up to the chunk that crossed the cap, which was not passed on

    pulled = 0  # a chunked photo under the limit is searched as usual
    photo = query_photo.read_bytes()
    ok = _post_chunked(client, "/search?k=2", body(photo, 1))
    assert ok.status_code == 200 and len(ok.json()["products"]) == 2, ok.text


def test_product_ids_and_image_counts_are_checked(
    smoke_bundle: Path, client: TestClient, query_photo: Path, tmp_path: Path
) -> None:
    photo = query_photo.read_bytes()
    category = _search(client, photo, k=1, strategy=GATED)["categories"][0]["category"]
    for bad in ("../../evil", "a/b", "a..b", ".hidden", "-x", "caf\u00e9", "two words", "x" * 129):
        r = client.post(
            "/products", data={"product_id": bad, "category": category}, files=[("images", ("p.jpg", photo))]
        )
        assert r.status_code == 422 and "product_id" in r.json()["detail"], (bad, r.text)
        with pytest.raises(CatalogChangeError, match="not allowed") as err:
            check_product_id(bad)
        assert err.value.status == 422
    assert [check_product_id(ok) for ok in ("Sku_1.2-b", " 7up ", "A" * 128)] == ["Sku_1.2-b", "7up", "A" * 128]
    live = LiveCatalog(Cascade.from_bundle(smoke_bundle, runtime="onnx"), tmp_path / "changes")
    with pytest.raises(CatalogChangeError, match="not allowed"):  # every caller of the live catalog, not just HTTP
        live.add("../../evil", "", category, [photo])
    assert not (tmp_path / "changes").exists()

    small = _jpeg(64, 64)
    many = [("images", (f"{i}.jpg", small, "image/jpeg")) for i in range(11)]
    r = client.post("/products", data={"product_id": "many", "category": category}, files=many)
    assert r.status_code == 422 and "at most 10 images" in r.json()["detail"], r.text
    assert client.get("/products/many").status_code == 404


def test_live_catalog_add_remove_survive_a_restart(smoke_bundle: Path, query_photo: Path, tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    client = _client(smoke_bundle, changes)
    photo = query_photo.read_bytes()
    category = _search(client, photo, k=1, strategy=GATED)["categories"][0]["category"]
    n_before = client.get("/info").json()["n_products"]
    form = {"product_id": "house-brand-1", "name": "House brand", "category": category}
    added = client.post("/products", data=form, files=[("images", ("p.jpg", photo, "image/jpeg"))])
    assert added.status_code == 201, added.text
    # the photo itself is now a catalog image: its product ranks first, found by the gated search
    assert _search(client, photo, k=3)["products"][0]["product_id"] == "house-brand-1"
    dup = client.post("/products", data=form, files=[("images", ("p.jpg", photo, "image/jpeg"))])
    assert dup.status_code == 409 and "already exists" in dup.json()["detail"]
    alien = client.post(
        "/products", data=form | {"product_id": "x", "category": "Toys/Robots"}, files=[("images", ("p.jpg", photo))]
    )
    assert alien.status_code == 422 and "category" in alien.json()["detail"]
    bad_image = client.post("/products", data=form | {"product_id": "y"}, files=[("images", ("p.txt", b"text"))])
    assert bad_image.status_code == 400
    assert client.get("/info").json()["n_products"] == n_before + 1

    restarted = _client(smoke_bundle, changes)  # a new process would replay the same changes
    assert _search(restarted, photo, k=3)["products"][0]["product_id"] == "house-brand-1"
    assert restarted.get("/products/house-brand-1/image").content == photo
    assert restarted.delete("/products/house-brand-1").status_code == 200
    assert all(p["product_id"] != "house-brand-1" for p in _search(restarted, photo, k=10)["products"])
    again = _client(smoke_bundle, changes)
    assert again.get("/products/house-brand-1").status_code == 404
    assert again.get("/info").json()["n_products"] == n_before
    assert json.loads((changes / "changes.jsonl").read_text().splitlines()[-1]) == {
        "op": "remove",
        "seq": 1,
        "product_id": "house-brand-1",
    }


def test_searches_never_see_a_half_applied_change(client: TestClient, query_photo: Path) -> None:
    """Searches run while products are added and removed; every answer is whole and no request fails."""
    photo = query_photo.read_bytes()
    category = _search(client, photo, k=1, strategy=GATED)["categories"][0]["category"]
    errors: list[str] = []

    def searcher() -> None:
        for _ in range(15):
            r = client.post("/search", files={"image": ("p.jpg", photo)}, params={"k": 5, "strategy": "fusion"})
            if r.status_code != 200 or len({p["product_id"] for p in r.json()["products"]}) != 5:
                errors.append(r.text)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    ids = [f"p-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    for pid in ids:
        form = {"product_id": pid, "category": category}
        assert client.post("/products", data=form, files=[("images", ("p.jpg", photo))]).status_code == 201
    for pid in ids:
        assert client.delete(f"/products/{pid}").status_code == 200
    for t in threads:
        t.join()
    assert not errors, errors[:2]


def test_real_uvicorn_process_answers_like_the_cascade(serve_url: str, smoke_bundle: Path, query_photo: Path) -> None:
    boundary = "snapsearchboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + query_photo.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{serve_url}/search?k=5&strategy=fusion",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        served = json.loads(r.read())
    hubness = HubnessOptions.from_config(OmegaConf.load(CONF_DIR / "hubness" / "csls.yaml"))  # serve.py's default
    local = Cascade.from_bundle(smoke_bundle, runtime="onnx", hubness=hubness).search(
        query_photo, k=5, strategy="fusion"
    )
    assert [p["product_id"] for p in served["products"]] == [p.product_id for p in local.products]


def test_live_catalog_on_qdrant(smoke_bundle: Path, query_photo: Path, tmp_path: Path) -> None:
    """The live catalog runs unchanged on the Qdrant store (embedded): add, find, remove, replay."""
    pytest.importorskip("qdrant_client")
    from snapsearch.search.catalog_index import IndexSpec

    def client() -> TestClient:
        cascade = Cascade.from_bundle(smoke_bundle, runtime="onnx", index=IndexSpec.from_config({"backend": "qdrant"}))
        live = LiveCatalog(cascade, tmp_path / "changes")
        assert type(live.index).__name__ == "QdrantIndex"  # not the FAISS index the bundle ships
        app = create_app(
            live, name="qdrant", source={"version": "test"}, max_upload_mb=MAX_UPLOAD_MB, batching=BATCHING
        )
        return TestClient(app)

    first = client()
    photo = query_photo.read_bytes()
    category = _search(first, photo, k=1, strategy=GATED)["categories"][0]["category"]
    form = {"product_id": "q-1", "category": category}
    assert first.post("/products", data=form, files=[("images", ("p.jpg", photo))]).status_code == 201
    assert _search(first, photo, k=3)["products"][0]["product_id"] == "q-1"
    assert client().get("/products/q-1").status_code == 200  # replayed onto a fresh collection
    assert first.delete("/products/q-1").status_code == 200
    assert all(p["product_id"] != "q-1" for p in _search(first, photo, k=10)["products"])
