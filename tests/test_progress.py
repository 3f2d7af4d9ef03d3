"""Progress shows in logs when there is no terminal: lines every few percent with the rate and time left."""

from __future__ import annotations

import logging

import pytest

from snapsearch.utils.lightning_progress import LogProgressBar, lightning_progress_bar
from snapsearch.utils.progress import track


def test_plain_progress_lines(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="snapsearch.progress"):
        items = list(track(range(40), 1000, "embedding the pool", size=lambda _: 25, every_pct=10, tty=False))
    assert items == list(range(40))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10  # every 10% of 1000 images, batches of 25
    assert lines[0].startswith("embedding the pool: 100/1000 (10%)") and "/s" in lines[0] and "s left" in lines[0]
    assert lines[-1].startswith("embedding the pool: 1000/1000 (100%)")


def test_lightning_bar_is_log_lines_off_a_terminal() -> None:
    assert isinstance(lightning_progress_bar(tty=False), LogProgressBar)
    assert not isinstance(lightning_progress_bar(tty=True), LogProgressBar)
