"""Progress for long loops: a rich bar on a terminal, a plain log line every few percent otherwise.

Batch jobs and redirected output (a SLURM log, ``> run.log``) get no bar, which would print nothing or
garbage there, but a line with the count, the rate and the time left, so hours of work are never silent.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")
log = logging.getLogger("snapsearch.progress")


def _plain(items: Iterable[T], total: int, what: str, every_pct: float, size: Callable[[T], int]) -> Iterator[T]:
    start = time.perf_counter()
    step = max(1, int(total * every_pct / 100))
    next_report = step
    done = 0
    for item in items:
        yield item
        done = min(total, done + size(item))
        if done >= next_report or done == total:
            elapsed = time.perf_counter() - start
            rate = done / elapsed if elapsed > 0 else float("inf")
            left = (total - done) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d (%.0f%%), %.1f/s, %.0f s left", what, done, total, 100 * done / total, rate, left)
            next_report = done + step


def _one(item: object) -> int:
    return 1


def track(
    items: Iterable[T],
    total: int,
    what: str,
    *,
    size: Callable[[T], int] = _one,
    every_pct: float = 5.0,
    tty: bool | None = None,
) -> Iterator[T]:
    """Yield ``items`` while showing progress over ``total`` units, ``size(item)`` units per item (e.g. the
    images of a batch). ``tty=None`` asks whether stderr is a terminal."""
    if total <= 0:
        yield from items
        return
    if tty is None:
        tty = sys.stderr.isatty()
    if not tty:
        yield from _plain(items, total, what, every_pct, size)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(what, total=total)
        for item in items:
            yield item
            bar.advance(task, size(item))
