"""The service's micro-batcher and the catalog's readers-writer lock: concurrent searches answer exactly what
sequential ``Cascade.search`` does, they are batched, overload is shed at once (503 + Retry-After), an
expired deadline is dropped before inference, a catalog change is never seen half-applied, and the worker
stops with the app. The worker is held on an event where a test needs a queue: no timing thresholds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from omegaconf import OmegaConf

from snapsearch.search.cascade import Cascade
from snapsearch.search.live import LiveCatalog
from snapsearch.search.rwlock import RWLock
from snapsearch.serve.app import create_app
from snapsearch.serve.batcher import Batcher, BatchOptions, Shed
from tests.conftest import CONF_DIR, GATED, run_manifest

SHIPPED = BatchOptions.from_config(OmegaConf.load(CONF_DIR / "serve.yaml"))
WAIT_S = 60  # an upper bound for the conditions the tests wait on, never reached when the code is right


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def photos(smoke_run: Path) -> list[bytes]:
    m = run_manifest(smoke_run)
    paths = m[(m["domain"] == "query") & (m["split"] == "test")]["path"].iloc[:10]
    return [Path(p).read_bytes() for p in paths]


class Held:
    """Holds the inference worker inside its next model pass until :meth:`release`; counts each pass."""

    def __init__(self, cascade: Cascade) -> None:
        self.entered, self.go = threading.Event(), threading.Event()
        self.passes: list[int] = []
        self._infer = cascade.infer_batch
        cascade.infer_batch = self  # type: ignore[method-assign]

    def __call__(self, queries):
        self.passes.append(len(queries))
        self.entered.set()
        assert self.go.wait(WAIT_S)
        return self._infer(queries)

    def release(self) -> None:
        self.go.set()


@pytest.fixture
def service(smoke_bundle: Path, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Makes a started service (``TestClient`` entered: lifespan on) with the given batching options."""
    clients: list[TestClient] = []

    def make(**options: object) -> TestClient:
        live = LiveCatalog(Cascade.from_bundle(smoke_bundle, runtime="onnx"), tmp_path / f"changes{len(clients)}")
        app = create_app(live, name="t", source={"version": "t"}, max_upload_mb=2, batching=replace(SHIPPED, **options))
        clients.append(TestClient(app).__enter__())
        return clients[-1]

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _post(client: TestClient, photo: bytes, **params: object):
    return client.post("/search", files={"image": ("p.jpg", photo, "image/jpeg")}, params=params)


def _in_threads(calls: list[Callable[[], object]]) -> tuple[list[threading.Thread], list[object]]:
    out: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        out[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    return threads, out


def _batcher(client: TestClient) -> Batcher:
    return client.app.state.serve.batcher  # type: ignore[attr-defined]


def test_concurrent_searches_are_batched_and_answer_as_the_cascade(service, photos: list[bytes]) -> None:
    """Requests with different k and strategies share one model pass; each gets what ``Cascade.search``
    (search.py, the evaluator's code) answers for its photo alone."""
    client = service()
    cascade = client.app.state.serve.cascade  # type: ignore[attr-defined]
    asks = [{"k": 3, "strategy": "fusion"}, {"k": 5, "strategy": "top1"}, {"k": 4}, {"k": 5, "strategy": "global"}]
    requests = [(photo, asks[i % len(asks)]) for i, photo in enumerate(photos)]
    expected = [cascade.search(photo, **ask) for photo, ask in requests]
    held = Held(cascade)
    first, rest = requests[0], requests[1:]
    threads, out = _in_threads([lambda: _post(client, first[0], **first[1])])
    assert held.entered.wait(WAIT_S)  # the worker is inside the first pass: the others queue behind it
    more, out_more = _in_threads([lambda p=p, a=a: _post(client, p, **a) for p, a in rest])
    _until(lambda: _batcher(client)._queue.qsize() == len(rest))
    held.release()
    for t in threads + more:
        t.join()
    assert held.passes == [1, len(rest)]  # the queued ones in one pass
    assert max(_batcher(client).batch_sizes) == len(rest) > 1
    for response, want, (_, ask) in zip(out + out_more, expected, requests, strict=True):
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["route"]["strategy"] == want.route.strategy and len(got["products"]) == ask["k"]
        assert [p["product_id"] for p in got["products"]] == [p.product_id for p in want.products]
        assert [p["score"] for p in got["products"]] == pytest.approx([p.score for p in want.products], abs=1e-4)


def test_over_max_in_flight_is_shed_at_once_and_the_admitted_succeed(service, photos: list[bytes]) -> None:
    client = service(max_in_flight=2)
    held = Held(client.app.state.serve.cascade)  # type: ignore[attr-defined]
    threads, out = _in_threads([lambda p=p: _post(client, p, k=2) for p in photos[:2]])
    _until(lambda: _batcher(client)._in_flight == 2)
    shed = _post(client, photos[2], k=2)  # answered while the two admitted wait: no queueing
    assert shed.status_code == 503, shed.text
    assert shed.headers["Retry-After"] == str(SHIPPED.retry_after_s) and "max_in_flight" in shed.json()["detail"]
    held.release()
    for t in threads:
        t.join()
    assert [r.status_code for r in out] == [200, 200]  # type: ignore[union-attr]
    assert _batcher(client).stats()["shed"] == {"in_flight": 1}
    assert _post(client, photos[2], k=2).status_code == 200  # and it serves again once they are answered


def test_an_expired_deadline_is_dropped_before_inference(service, photos: list[bytes]) -> None:
    client = service(deadline_ms=1000)
    batcher = _batcher(client)
    now = [0.0]
    batcher.clock = lambda: now[0]  # the test moves time: the queued request's deadline passes while held
    held = Held(client.app.state.serve.cascade)  # type: ignore[attr-defined]
    threads, out = _in_threads([lambda: _post(client, photos[0], k=2)])
    assert held.entered.wait(WAIT_S)
    late, out_late = _in_threads([lambda: _post(client, photos[1], k=2)])
    _until(lambda: batcher._queue.qsize() == 1)
    now[0] += 1.001  # past the 1000 ms deadline
    held.release()
    for t in threads + late:
        t.join()
    assert out[0].status_code == 200  # type: ignore[union-attr]
    dropped = out_late[0]
    assert dropped.status_code == 503 and "deadline" in dropped.json()["detail"], dropped.text  # type: ignore[union-attr]
    assert "Retry-After" in dropped.headers  # type: ignore[union-attr]
    assert held.passes == [1]  # no model pass was spent on it
    assert batcher.stats()["shed"] == {"deadline": 1}


def test_a_query_whose_client_left_is_dropped_before_inference(service, photos: list[bytes]) -> None:
    client = service()
    batcher = _batcher(client)
    held = Held(client.app.state.serve.cascade)  # type: ignore[attr-defined]
    threads, out = _in_threads([lambda: _post(client, photos[0], k=2)])
    assert held.entered.wait(WAIT_S)

    async def leaving_client() -> None:
        async def gone() -> None:  # the disconnect arrives while the query waits in the queue
            await asyncio.sleep(0)

        with batcher.admit() as ticket, pytest.raises(Shed, match="disconnected"):
            await batcher.search(photos[1], 2, None, ticket, gone)

    asyncio.run(leaving_client())
    held.release()
    for t in threads:
        t.join()
    assert out[0].status_code == 200  # type: ignore[union-attr]
    _until(lambda: batcher.stats()["shed"] == {"gone": 1})
    assert held.passes == [1]  # no model pass was spent on it


def test_a_catalog_change_waits_for_the_read_section_of_a_search(service, photos: list[bytes]) -> None:
    """A removal that arrives while a batch ranks waits for the batch to finish: the batch saw the catalog
    wholly before it, and the next search wholly after it."""
    client = service()
    state = client.app.state.serve  # type: ignore[attr-defined]
    cascade, live = state.cascade, state.live
    photo = photos[0]
    category = _post(client, photo, k=1, strategy=GATED).json()["categories"][0]["category"]
    assert (
        client.post(
            "/products", data={"product_id": "mid", "category": category}, files=[("images", ("p.jpg", photo))]
        ).status_code
        == 201
    )
    rank, removal = cascade.rank, {}

    def ranking_during_a_removal(*args, **kwargs):
        assert live.lock.readers == 1  # inside the batch's read section
        removal["thread"], _ = _in_threads([lambda: live.remove("mid")])
        removal["thread"][0].join(timeout=0.2)
        removal["waited"] = removal["thread"][0].is_alive()  # the writer cannot enter while the batch reads
        return rank(*args, **kwargs)

    cascade.rank = ranking_during_a_removal
    during = _post(client, photo, k=3).json()
    cascade.rank = rank
    removal["thread"][0].join()
    assert removal["waited"]
    assert during["products"][0]["product_id"] == "mid"  # the catalog before the removal, wholly
    after = _post(client, photo, k=3).json()
    assert "mid" not in [p["product_id"] for p in after["products"]]


def test_rwlock_readers_share_a_writer_is_alone_and_waiting_writers_go_first() -> None:
    lock, inside, log = RWLock(), threading.Barrier(2), []

    def reader() -> None:
        with lock.reader:
            inside.wait(WAIT_S)  # both readers are in at once, or this times out

    readers, _ = _in_threads([reader, reader])
    for t in readers:
        t.join()
    with lock.reader:
        writer, _ = _in_threads(
            [lambda: lock.writer.__enter__() or log.append("w") or lock.writer.__exit__(None, None, None)]
        )
        _until(lambda: lock._writers_waiting == 1)
        late_reader, _ = _in_threads(
            [lambda: lock.reader.__enter__() or log.append("r") or lock.reader.__exit__(None, None, None)]
        )
        time.sleep(0.05)
        assert log == []  # the writer waits for the reader inside; the new reader waits behind the writer
    for t in writer + late_reader:
        t.join()
    assert log == ["w", "r"]


def test_the_worker_stops_with_the_app(smoke_bundle: Path, tmp_path: Path, photos: list[bytes]) -> None:
    live = LiveCatalog(Cascade.from_bundle(smoke_bundle, runtime="onnx"), tmp_path / "changes")
    app = create_app(live, name="t", source={"version": "t"}, max_upload_mb=2, batching=SHIPPED)
    with TestClient(app) as client:
        batcher = _batcher(client)
        assert batcher.running and _post(client, photos[0], k=2).status_code == 200
        worker, pool = batcher._worker, batcher._pool
    assert not batcher.running and worker is not None and not worker.is_alive()
    assert pool is not None and not [t for t in pool._threads if t.is_alive()]  # its preparation threads
