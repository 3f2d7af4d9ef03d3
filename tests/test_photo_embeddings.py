"""A cascade's opening embeds each of the source's photos once: a classified pass (the conformal calibration)
also serves the references that only need embeddings of the same photos."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from snapsearch.runtime.batch import Outputs
from snapsearch.search import photo_embeddings
from snapsearch.search.photo_embeddings import PhotoEmbeddings


def _frame(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ids, "product_id": ["p"] * len(ids)})


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], bool]]:
    """Every inference PhotoEmbeddings asks for: (image ids, classify)."""
    seen: list[tuple[tuple[str, ...], bool]] = []

    def fake(runtime, frame, labels, *, classify, io, what):
        seen.append((tuple(frame["image_id"]), classify))
        n = len(frame)
        probs = np.full((n, 2), 0.5, np.float32) if classify else None
        return Outputs(rows=np.arange(n), embeddings=np.eye(n, 4, dtype=np.float32), probs=probs, skipped=0)

    monkeypatch.setattr(photo_embeddings, "run_inference", fake)
    return seen


def test_a_classified_pass_serves_later_embeddings(calls: list) -> None:
    memo = PhotoEmbeddings(runtime=None, labels=None, io=None)  # type: ignore[arg-type]
    val = _frame(["a", "b"])
    classified = memo.embed(val, "calibration photos", classify=True)
    assert memo.embed(val, "validation photos") is classified
    assert memo.embed(_frame(["a", "b"]), "again") is classified  # the same rows, another frame object
    assert calls == [(("a", "b"), True)]


def test_an_embedding_pass_does_not_answer_a_classification(calls: list) -> None:
    memo = PhotoEmbeddings(runtime=None, labels=None, io=None)  # type: ignore[arg-type]
    val = _frame(["a", "b"])
    plain = memo.embed(val, "validation photos")
    assert plain.probs is None
    classified = memo.embed(val, "calibration photos", classify=True)
    assert classified.probs is not None
    memo.embed(_frame(["a"]), "a subset is other rows")
    assert calls == [(("a", "b"), False), (("a", "b"), True), (("a",), False)]
