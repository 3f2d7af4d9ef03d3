"""The Milvus store against a real Milvus standalone server (the dev extra's ``milvus`` package, on 127.0.0.1):
parity of every strategy with FAISS flat (``index_type=FLAT``: exact, so the same products and scores), catalog
changes, a bulk load SIGKILLed halfway and resumed, a server restart, and a server down while the service runs
(503, /healthz, recovery by itself), and two serve.py processes sharing one collection's live catalog."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from snapsearch.retrieval import IndexMismatchError
from snapsearch.retrieval.backends import IndexSpec, Items
from snapsearch.retrieval.milvus_client import MilvusConnection
from snapsearch.retrieval.milvus_store import MilvusStore
from snapsearch.retrieval.store import StoreUnavailable, excluding, load_store, mutable
from tests.conftest import GATED, ROOT, SERVER_START_S
from tests.milvus_server import MilvusProcess, free_port
from tests.test_vector_stores import CATEGORIES, STRATEGIES, _faiss, _rankings, make_pool

# Every test here needs the Milvus server (a ~11 s start) or kills/restarts it: CI runs them with -m slow.
pytestmark = pytest.mark.slow

pytest.importorskip("pymilvus", reason="pymilvus (the milvus extra) is not installed")
RECOVER_S = 300  # a restarted server takes 1-2 min here (2 shared cores) before it answers again


@pytest.fixture(scope="session")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusProcess]:
    """One Milvus standalone server for the session (its embedded etcd takes fixed ports: one at a time)."""
    pytest.importorskip("milvus", reason="the Milvus server package (dev extra: milvus==2.3.5) is not installed")
    server = MilvusProcess(tmp_path_factory.mktemp("milvus")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pool() -> dict[str, np.ndarray]:
    return make_pool()


def _spec(milvus: MilvusProcess, collection: str, **options) -> IndexSpec:
    cfg = {"backend": "milvus", "uri": milvus.uri, "collection": collection, "index_type": "FLAT", "index_params": {}}
    return IndexSpec.from_config(cfg | {"timeout_s": 3.0, "shared_catalog": False} | options)


def _milvus(pool, spec: IndexSpec, checksum: str = "emb-1", product=None) -> MilvusStore:
    meta = {"image_id": np.array([f"img{i}" for i in range(len(pool["vectors"]))])}
    items = Items(
        lambda: np.array_split(pool["vectors"], 4),
        pool["partition"],
        pool["product"] if product is None else product,
        CATEGORIES,
        checksum,
        meta,
    )
    store = spec.build(items)
    assert isinstance(store, MilvusStore)
    return store


def _until_up(fn, timeout_s: float = RECOVER_S):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fn()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_every_strategy_matches_faiss_flat(milvus, pool) -> None:
    """FLAT on the server is exact: the same products, routes and scores as FAISS Flat for every strategy."""
    store, flat = _milvus(pool, _spec(milvus, "parity")), _faiss(pool)
    assert store.n_items == flat.n_items and store.dim == flat.dim
    for name in STRATEGIES:
        f_products, f_scores, f_routes = _rankings(flat, pool, name)
        m_products, m_scores, m_routes = _rankings(store, pool, name)
        assert m_products == f_products and m_routes == f_routes, name
        np.testing.assert_allclose(np.concatenate(m_scores), np.concatenate(f_scores), atol=1e-5, err_msg=name)
    hnsw = _milvus(pool, _spec(milvus, "parity_hnsw", index_type="HNSW", index_params={"M": 16, "efConstruction": 200}))
    same = [_rankings(hnsw, pool, n)[0] == _rankings(flat, pool, n)[0] for n in ("global", "top1", "fusion")]
    assert all(same)  # 500 points, ef=128: HNSW is exact here too


def test_catalog_changes_excluded_views_and_a_foreign_pool(milvus, pool) -> None:
    flat, store = mutable(_faiss(pool)), mutable(_milvus(pool, _spec(milvus, "changes")))
    new = pool["queries"][:3] + 0.01
    for index in (flat, store):
        ids = index.add(
            new, pool["true_partition"][:3], np.array([9001, 9002, 9003]), {"image_id": np.array(["a"] * 3)}
        )
        assert ids.tolist() == [500, 501, 502]
        index.remove(np.flatnonzero(np.isin(index.item_product, [pool["product"][0], 9002])))
    for name in ("global", "top1", "fusion"):
        assert _rankings(flat, pool, name)[0] == _rankings(store, pool, name)[0], name
    hidden = np.flatnonzero(store.item_product == 9001)
    assert all(9001 not in r for r in _rankings(excluding(store, hidden), pool, "global")[0])
    assert _rankings(store, pool, "global")[0][0][0] == 9001
    with pytest.raises(IndexMismatchError, match="drop it or use another"):  # another pool, same collection
        _milvus(pool, _spec(milvus, "changes"), product=pool["product"][::-1].copy())
    with pytest.raises(IndexMismatchError, match="drop it or use another"):  # another embedder
        _milvus(pool, _spec(milvus, "changes"), checksum="emb-2")


def test_bulk_load_killed_midway_resumes_to_exactly_the_pool(milvus) -> None:
    """SIGKILL the server while a 20k-point load uploads, restart it: the interrupted load either fails
    (StoreUnavailable) or carries on once the server is back; a rerun then finds every point there once."""
    rng = np.random.default_rng(1)
    n = 20_000
    big = {
        "vectors": rng.standard_normal((n, 16)).astype(np.float32),
        "partition": rng.integers(0, len(CATEGORIES), n),
        "product": np.arange(n),
    }
    spec = _spec(milvus, "bulk", upload_batch=200)
    probe = MilvusConnection(spec.options)
    outcome: list[object] = []

    def load() -> None:
        try:
            outcome.append(_milvus(big, spec))
        except StoreUnavailable as err:
            outcome.append(err)

    loader = threading.Thread(target=load)
    loader.start()
    while not (probe.has() and probe.count() >= n // 4):
        time.sleep(0.05)
    milvus.kill()
    assert loader.is_alive()  # killed in the middle of the load
    milvus.wait_port_free()
    milvus.start()
    loader.join(timeout=RECOVER_S)
    assert outcome and not loader.is_alive()
    resumed = _until_up(lambda: _milvus(big, spec))
    counts = resumed.upload_counts
    assert counts["written"] + counts["already_present"] == n
    assert resumed.db.count() == n  # exactly the pool: nothing missing, nothing duplicated
    assert resumed.db.present(0, 16_000).tolist() == list(range(16_000))


def test_restart_keeps_the_collection_and_its_answers(milvus, pool, tmp_path) -> None:
    store = _milvus(pool, _spec(milvus, "restart"))
    before = _rankings(store, pool, "top1")
    pointer = store.save(tmp_path / "pointer")
    milvus.stop()
    milvus.start()
    reopened = _until_up(lambda: load_store(pointer, expected_embedder_checksum="emb-1"))
    assert isinstance(reopened, MilvusStore)
    assert _until_up(lambda: _rankings(reopened, pool, "top1")) == before


def _service(smoke_bundle: Path, spec: IndexSpec, changes: Path) -> TestClient:
    from snapsearch.search.cascade import Cascade
    from snapsearch.search.live import LiveCatalog
    from snapsearch.serve.app import create_app
    from tests.test_serve import BATCHING, MAX_UPLOAD_MB

    live = LiveCatalog(Cascade.from_bundle(smoke_bundle, runtime="onnx", index=spec), changes)
    assert type(live.index).__name__ == "MilvusStore"
    app = create_app(live, name="milvus", source={"version": "test"}, max_upload_mb=MAX_UPLOAD_MB, batching=BATCHING)
    return TestClient(app)


def _search(client: TestClient, photo: bytes, **params) -> dict:
    r = client.post("/search", files={"image": ("photo.jpg", photo, "image/jpeg")}, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_service_live_catalog_on_milvus(milvus, smoke_bundle: Path, query_photo: Path, tmp_path: Path) -> None:
    """Add a product through the service: it is found; delete it: it is gone; /healthz reports the store."""
    with _service(smoke_bundle, _spec(milvus, "service"), tmp_path / "changes") as client:
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["store"]["backend"] == "milvus"
        photo = query_photo.read_bytes()
        category = _search(client, photo, k=1, strategy=GATED)["categories"][0]["category"]
        form = {"product_id": "m-1", "category": category}
        assert client.post("/products", data=form, files=[("images", ("p.jpg", photo))]).status_code == 201
        assert _search(client, photo, k=3)["products"][0]["product_id"] == "m-1"
        assert client.delete("/products/m-1").status_code == 200
        assert all(p["product_id"] != "m-1" for p in _search(client, photo, k=10)["products"])


def test_server_down_503_then_recovers(milvus, smoke_bundle: Path, query_photo: Path, tmp_path: Path) -> None:
    with _service(smoke_bundle, _spec(milvus, "outage"), tmp_path / "changes") as client:
        photo = query_photo.read_bytes()
        expected = _search(client, photo, k=5)["products"]
        milvus.kill()
        try:
            r = client.post("/search", files={"image": ("p.jpg", photo, "image/jpeg")}, params={"k": 5})
            assert r.status_code == 503 and "vector store is unavailable" in r.json()["detail"], r.text
            assert "Milvus at" in r.json()["detail"]
            health = client.get("/healthz")
            assert health.status_code == 503 and "Milvus at" in health.json()["detail"]
        finally:
            milvus.wait_port_free()
            milvus.start()
        deadline = time.monotonic() + RECOVER_S
        while (r := client.post("/search", files={"image": ("p.jpg", photo)}, params={"k": 5})).status_code == 503:
            assert time.monotonic() < deadline, r.text
            time.sleep(1)
        assert r.status_code == 200 and r.json()["products"] == expected


def _serve(bundle: Path, milvus: MilvusProcess, collection: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    """``python serve.py`` on the bundle with ``index=milvus`` as a real uvicorn process on 127.0.0.1."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(ROOT / "serve.py"),
        f"bundle={bundle}",
        f"port={port}",
        f"catalog_changes={tmp / 'changes'}",
        "index=milvus",
        f"index.uri={milvus.uri}",
        f"index.collection={collection}",
        "index.journal_poll_s=0.2",
        "log_level=warning",
    ]
    env = {**os.environ, "SNAPSEARCH_CACHE_DIR": str(bundle.parent.parent / "cache")}
    log = open(tmp / "serve.log", "w")  # noqa: SIM115  (the process owns it until it ends)
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"serve.py did not come up: {(tmp / 'serve.log').read_text()[-3000:]}")
        time.sleep(0.5)


def _products(url: str, photo: bytes) -> list[str]:
    r = httpx.post(f"{url}/search", files={"image": ("p.jpg", photo, "image/jpeg")}, params={"k": 5}, timeout=60)
    assert r.status_code == 200, r.text
    return [p["product_id"] for p in r.json()["products"]]


def _eventually(check, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the other replica never saw the change"
        time.sleep(0.2)


def test_two_service_processes_share_one_collection(milvus, smoke_bundle: Path, query_photo: Path, tmp_path) -> None:
    """Shared-store mode: a product added through one serve.py process is found through another on the same
    collection, and a delete through the second is gone from the first (the journal, not a local file)."""
    first, a = _serve(smoke_bundle, milvus, "replicas", tmp_path / "a")
    try:
        second, b = _serve(smoke_bundle, milvus, "replicas", tmp_path / "b")
        try:
            photo = query_photo.read_bytes()
            gated = {"strategy": GATED}
            searched = httpx.post(f"{a}/search", params=gated, files={"image": ("p.jpg", photo)}, timeout=60)
            form = {"product_id": "shared-1", "category": searched.json()["categories"][0]["category"]}
            added = httpx.post(f"{a}/products", data=form, files=[("images", ("p.jpg", photo))], timeout=60)
            assert added.status_code == 201, added.text
            assert _products(a, photo)[0] == "shared-1"
            _eventually(lambda: _products(b, photo)[0] == "shared-1")
            assert httpx.get(f"{b}/products/shared-1", timeout=10).status_code == 200
            assert httpx.delete(f"{b}/products/shared-1", timeout=60).status_code == 200
            # The delete's points leave the shared store at once, so the first replica stops finding the product
            # before its poller applies the journal event that drops the record: wait for the record, then
            # check that the search agrees (never a record gone while its points still answer).
            _eventually(lambda: httpx.get(f"{a}/products/shared-1", timeout=10).status_code == 404)
            assert "shared-1" not in _products(a, photo)
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        first.terminate()
        first.wait(timeout=30)
