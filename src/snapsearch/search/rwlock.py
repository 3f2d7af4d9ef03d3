"""A readers-writer lock for the live catalog: searches read it concurrently, a catalog change writes it alone.

Writer-preferring: once a change waits, new searches wait behind it, so a steady stream of searches cannot
starve catalog changes (a change holds the lock for microseconds; a search's read section is its ranking).
Not reentrant: a thread must not take the read side while it holds either side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType


class _Side:
    """One side of the lock as a reusable context manager (``with lock.reader:``)."""

    def __init__(self, acquire: Callable[[], None], release: Callable[[], None]) -> None:
        self._acquire, self._release = acquire, release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._release()


class RWLock:
    """Many readers or one writer. ``reader`` and ``writer`` are context managers, shareable across threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0  # readers inside
        self._writing = False
        self._writers_waiting = 0
        self.reader = _Side(self._acquire_read, self._release_read)
        self.writer = _Side(self._acquire_write, self._release_write)

    def _acquire_read(self) -> None:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def _release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def _acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True

    def _release_write(self) -> None:
        with self._cond:
            self._writing = False
            self._cond.notify_all()

    @property
    def readers(self) -> int:
        """Readers inside now (for tests and diagnostics)."""
        with self._cond:
            return self._readers
