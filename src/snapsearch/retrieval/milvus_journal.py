"""An append-only journal of JSON events in a small Milvus collection beside the store's
(``<collection>__changes``): what service replicas sharing one collection read each other's catalog changes
from. Sequence numbers are the writer's clock in nanoseconds (one writer per event, no coordination); a
reader re-reads a window back (``journal_window_s``) so an event committed late is still seen, and applies
each sequence number once."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from snapsearch.retrieval.milvus_client import QUERY_WINDOW, MilvusConnection, MilvusSpec

SEQ, EVENT, DUMMY = "seq", "event", "v"
SUFFIX = "__changes"
MAX_EVENT_CHARS = 65_535  # Milvus's longest VARCHAR
DUMMY_DIM = 2  # Milvus needs a vector field in every collection; the journal never searches it
NS = 1_000_000_000


class MilvusJournal:
    """Events (JSON objects) by sequence number, shared by every process that opens the same collection."""

    def __init__(self, spec: MilvusSpec) -> None:
        self.spec = replace(spec, collection=spec.collection + SUFFIX)
        self.db = MilvusConnection(self.spec)
        self._opened = False

    def _open(self) -> None:
        if self._opened:
            return
        if not self.db.has():
            self.db.call("create_collection", self._create)
        self._opened = True

    def _create(self, client: Any) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, description="snapsearch catalog journal")
        schema.add_field(SEQ, DataType.INT64, is_primary=True)
        schema.add_field(EVENT, DataType.VARCHAR, max_length=MAX_EVENT_CHARS)
        schema.add_field(DUMMY, DataType.FLOAT_VECTOR, dim=DUMMY_DIM)
        index = client.prepare_index_params()
        index.add_index(field_name=DUMMY, index_type="FLAT", metric_type="L2")
        client.create_collection(
            self.spec.collection,
            schema=schema,
            index_params=index,
            consistency_level=self.spec.consistency,
            timeout=self.spec.load_timeout_s,
        )

    def append(self, event: dict[str, Any]) -> int:
        """Write one event; returns its sequence number (durable in the server when this returns)."""
        self._open()
        text = json.dumps(event)
        if len(text) > MAX_EVENT_CHARS:
            raise ValueError(f"a journal event holds at most {MAX_EVENT_CHARS} characters, not {len(text)}")
        seq = time.time_ns()
        row = {SEQ: seq, EVENT: text, DUMMY: [0.0] * DUMMY_DIM}
        self.db.call("insert", lambda c: c.insert(self.spec.collection, [row], timeout=self.spec.timeout_s))
        return seq

    def since(self, seq: int | None) -> list[tuple[int, dict[str, Any]]]:
        """Events after ``seq`` minus the window (None: all), oldest first. Refused past QUERY_WINDOW events
        at once (Milvus's query limit): a journal that long wants compacting into a new collection."""
        self._open()
        lo = -1 if seq is None else seq - int(self.spec.journal_window_s * NS)
        rows = self.db.call(
            "query",
            lambda c: c.query(
                self.spec.collection,
                filter=f"{SEQ} > {lo}",
                output_fields=[SEQ, EVENT],
                limit=QUERY_WINDOW,
                timeout=self.spec.timeout_s,
            ),
        )
        if len(rows) >= QUERY_WINDOW:
            raise RuntimeError(f"journal {self.spec.collection} holds {QUERY_WINDOW}+ events to read at once")
        return sorted((int(r[SEQ]), json.loads(r[EVENT])) for r in rows)
