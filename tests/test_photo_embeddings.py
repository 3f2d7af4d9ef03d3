"""A cascade's opening embeds each of the source's photos once: a classified pass (the conformal calibration)
also serves the references that only need embeddings of the same photos."""

from __future__ import annotations

from types import SimpleNamespace

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


def test_the_tempered_copy_keeps_every_pass_and_tempers_its_probabilities(calls: list) -> None:
    """The novelty temperature wraps the runtime after the validation photos were classified: the copy serves
    them again without a pass, with the probabilities the tempered runtime would have given."""

    class Halve:  # stands in for NoveltyTemperature: a deterministic change of the probabilities
        def apply(self, probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
            return probs * 0.5 + embeddings[:, :2]

    memo = PhotoEmbeddings(runtime=None, labels=None, io=None)  # type: ignore[arg-type]
    val = _frame(["a", "b"])
    classified = memo.embed(val, "validation photos", classify=True)
    plain = memo.embed(_frame(["c"]), "training photos")
    wrapped = SimpleNamespace(temperature=Halve())
    tempered = memo.tempered(wrapped)  # type: ignore[arg-type]
    assert tempered.runtime is wrapped
    again = tempered.embed(val, "calibration photos", classify=True)
    np.testing.assert_array_equal(again.embeddings, classified.embeddings)
    np.testing.assert_allclose(again.probs, classified.probs * 0.5 + classified.embeddings[:, :2])
    assert tempered.embed(_frame(["c"]), "training photos") is plain  # embeddings only: nothing to temper
    assert calls == [(("a", "b"), True), (("c",), False)]  # no second pass
