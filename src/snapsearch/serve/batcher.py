"""Micro-batched inference for the service: many concurrent searches, one model pass per batch.

A search is admitted (at most ``max_in_flight`` at once; beyond that :class:`Shed` at once: 503 with
``Retry-After``), its photo prepared (decode, barcode, preprocess: :meth:`Cascade.prepare`) in a small
thread pool, then queued for the one inference worker. The worker takes what is queued (up to
``max_batch``), waits up to ``max_wait_ms`` for more only while admitted requests are still on their way
to the queue (never when the service is idle), drops the queries whose client has gone or that waited past
``deadline_ms`` (:class:`Shed`: 503, before any model time is spent on them), runs one model pass and
ranks the batch inside one read section of the catalog (:meth:`Cascade.infer_batch`,
:meth:`Cascade.rank_batch`: the code ``search.py`` and the evaluator run, so the service answers what the
evaluator scores). Requests of one batch may ask for different k and strategies.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from snapsearch.search.cascade import Cascade
from snapsearch.search.result import SearchResult
from snapsearch.search.stages import Query

log = logging.getLogger(__name__)
MS = 1e-3


class Shed(Exception):
    """A request the service will not answer now (503 with ``Retry-After: retry_after_s``)."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class BatchOptions:
    """``serve.yaml``'s batching keys (each documented there)."""

    max_batch: int
    max_wait_ms: float
    max_in_flight: int
    deadline_ms: float
    prepare_threads: int
    retry_after_s: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> BatchOptions:
        options = cls(
            max_batch=int(cfg["max_batch"]),
            max_wait_ms=float(cfg["max_wait_ms"]),
            max_in_flight=int(cfg["max_in_flight"]),
            deadline_ms=float(cfg["deadline_ms"]),
            prepare_threads=int(cfg["prepare_threads"]),
            retry_after_s=int(cfg["retry_after_s"]),
        )
        if min(options.max_batch, options.max_in_flight, options.prepare_threads, options.retry_after_s) < 1:
            raise ValueError(f"max_batch, max_in_flight, prepare_threads and retry_after_s must be >= 1: {options}")
        return options


@dataclass
class _Item:
    """A queued query, the event loop waiting for it, and when it stops being worth answering."""

    query: Query
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[SearchResult]
    deadline: float
    admitted: float
    gone: bool = False  # its client disconnected (set on the event loop, read by the worker)


@dataclass
class Ticket:
    """An admitted request: when it was admitted (its deadline counts from then), and whether it has
    reached the queue (until then the worker may wait a little for it)."""

    admitted: float
    queued: bool = False


_STOP = object()


class Batcher:
    """The admission, the preparation pool and the inference worker of one cascade.

    Started on the app's startup (or by the first search), stopped on its shutdown. ``clock`` is injectable
    so that tests can expire deadlines without waiting."""

    def __init__(self, cascade: Cascade, options: BatchOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.cascade = cascade
        self.options = options
        self.clock = clock
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0  # admitted and not yet answered
        self._upstream = 0  # admitted and not yet queued: what more may come for a batch
        self._worker: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.batch_sizes: Counter[int] = Counter()  # batch size -> batches run (model passes)
        self.shed = Counter[str]()  # why requests were refused: in_flight, deadline, gone

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        """Start the worker and the preparation pool (no-op when running)."""
        with self._lock:
            if self._worker is not None:
                return
            self._pool = ThreadPoolExecutor(self.options.prepare_threads, thread_name_prefix="prepare")
            self._worker = threading.Thread(target=self._run, name="inference", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Finish the batch in hand, refuse what is still queued (503), and join the threads."""
        with self._lock:
            worker, pool, self._worker, self._pool = self._worker, self._pool, None, None
        if worker is None:
            return
        self._queue.put(_STOP)
        worker.join()
        pool.shutdown(wait=True)  # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        return self._worker is not None

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters: batches by size, requests shed by reason, requests in flight."""
        n = sum(self.batch_sizes.values())
        queries = sum(size * count for size, count in self.batch_sizes.items())
        return {
            "batches": n,
            "mean_batch": queries / n if n else 0.0,
            "batch_sizes": {str(s): c for s, c in sorted(self.batch_sizes.items())},
            "shed": dict(self.shed),
            "in_flight": self._in_flight,
        }

    # ------------------------------------------------------------------ requests (event loop side)
    @contextmanager
    def admit(self) -> Iterator[Ticket]:
        """A slot for one search, held until its answer is sent; :class:`Shed` at once when all
        ``max_in_flight`` are taken."""
        with self._lock:
            if self._in_flight >= self.options.max_in_flight:
                self.shed["in_flight"] += 1
                raise Shed(
                    f"overloaded: {self._in_flight} searches in flight (serve.max_in_flight); "
                    f"retry after {self.options.retry_after_s} s",
                    self.options.retry_after_s,
                )
            self._in_flight += 1
            self._upstream += 1
        ticket = Ticket(self.clock())
        try:
            yield ticket
        finally:
            self._arrived(ticket)
            with self._lock:
                self._in_flight -= 1

    def _arrived(self, ticket: Ticket) -> None:
        """An admitted request reached the queue, or will not (failed or answered before it)."""
        with self._lock:
            if not ticket.queued:
                ticket.queued = True
                self._upstream -= 1

    async def search(
        self,
        image: bytes,
        k: int,
        strategy: str | None,
        ticket: Ticket,
        disconnected: Callable[[], Awaitable[Any]],
    ) -> SearchResult:
        """Prepare ``image`` in the pool, queue it, and await its answer; ``disconnected()`` completes when the
        client goes away (the query is then dropped before inference). Call inside :meth:`admit`."""
        self.start()
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self._pool, self.cascade.prepare, image)
            item = _Item(
                Query(prepared, k, strategy),
                loop,
                loop.create_future(),
                ticket.admitted + self.options.deadline_ms * MS,
                ticket.admitted,
            )
            self._queue.put(item)
        finally:
            self._arrived(ticket)
        watch = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({item.future, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if not item.future.done():
            item.gone = True  # the worker drops it (or it is being answered; the answer is then discarded)
            raise Shed("the client disconnected before its answer", self.options.retry_after_s)
        return item.future.result()

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._refuse_queued()
                return
            batch, stop = self._collect(first)
            self._answer(batch)
            if stop:
                self._refuse_queued()
                return

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        """``first`` and what follows it into one batch: no wait while nothing more is on its way."""
        batch = [first]
        until = self.clock() + self.options.max_wait_ms * MS
        while len(batch) < self.options.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = until - self.clock()
                if self._upstream <= 0 or left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _answer(self, batch: list[_Item]) -> None:
        """Drop the gone and the expired, then one model pass and one ranking for the rest."""
        now, live = self.clock(), []
        for item in batch:
            if item.gone:
                self.shed["gone"] += 1
                self._reply(item, exc=Shed("the client disconnected", self.options.retry_after_s))
            elif now > item.deadline:
                self.shed["deadline"] += 1
                waited = (now - item.admitted) / MS
                detail = (
                    f"overloaded: waited {waited:.0f} ms for the models, past the {self.options.deadline_ms:g} ms "
                    f"deadline (serve.deadline_ms); retry after {self.options.retry_after_s} s"
                )
                self._reply(item, exc=Shed(detail, self.options.retry_after_s))
            else:
                live.append(item)
        if not live:
            return
        queries = [item.query for item in live]
        try:
            results = self.cascade.rank_batch(queries, self.cascade.infer_batch(queries))
        except Exception as err:  # every request of the batch gets it (a store that is down: 503)
            log.exception("a batch of %d searches failed", len(live))
            for item in live:
                self._reply(item, exc=err)
            return
        self.batch_sizes[len(live)] += 1
        for item, result in zip(live, results, strict=True):
            self._reply(item, result)

    def _refuse_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._reply(item, exc=Shed("the service is shutting down", self.options.retry_after_s))

    @staticmethod
    def _reply(item: _Item, result: SearchResult | None = None, exc: BaseException | None = None) -> None:
        def settle() -> None:
            if item.future.done():
                return
            if exc is not None:
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)  # type: ignore[arg-type]

        with suppress(RuntimeError):  # its event loop has closed: nobody waits for the answer
            item.loop.call_soon_threadsafe(settle)
