"""Embeddings of a source's own photos while a cascade opens, each image embedded once: the prototype shift
and the novelty reference both read a seeded sample of the training photos, and the conformal calibration,
the hubness reference and the novelty ramp all read the validation photos."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.protocols import trained_photos
from snapsearch.runtime.batch import BatchIO, Outputs, run_inference
from snapsearch.runtime.models import CascadeRuntime
from snapsearch.runtime.tempered import NoveltyTemperedRuntime


class PhotoEmbeddings:
    """The runtime's embeddings of manifest rows, remembered by the rows' image ids."""

    def __init__(self, runtime: CascadeRuntime, labels: LabelMaps, io: BatchIO) -> None:
        self.runtime = runtime
        self.labels = labels
        self.io = io
        self._done: dict[tuple[tuple[str, ...], bool], Outputs] = {}

    def embed(self, frame: pd.DataFrame, what: str, *, classify: bool = False) -> Outputs:
        """Embeddings of ``frame``'s readable rows (``rows`` indexes the frame), with progress as ``what``;
        ``classify``: the category probabilities too. A classified pass also serves later embedding requests
        of the same rows (so classify first when both are wanted)."""
        ids = tuple(frame["image_id"].astype(str))
        for key in [(ids, True)] if classify else [(ids, False), (ids, True)]:
            if key in self._done:
                return self._done[key]
        out = run_inference(self.runtime, frame, self.labels, classify=classify, io=self.io, what=what)
        self._done[(ids, classify)] = out
        return out

    def tempered(self, runtime: NoveltyTemperedRuntime) -> PhotoEmbeddings:
        """The same photos through ``runtime``, this one's runtime with its probabilities tempered by novelty:
        the outputs taken so far are kept (the same embeddings), their probabilities tempered as it would."""
        other = PhotoEmbeddings(runtime, self.labels, self.io)
        other._done = {
            key: out if out.probs is None else replace(out, probs=runtime.temperature.apply(out.probs, out.embeddings))
            for key, out in self._done.items()
        }
        return other

    def trained(self, manifest: pd.DataFrame, per_product: int, seed: int) -> tuple[np.ndarray, list[str]]:
        """(embeddings, product ids) of at most ``per_product`` training photos of each product the run trained
        photos of (a seeded sample; never a held-out product's or the selection fold's); empty without any."""
        photos = sample_per_product(trained_photos(manifest, self.labels), per_product, seed)
        if photos.empty:
            return np.zeros((0, self.runtime.embedding_dim), np.float32), []
        out = self.embed(photos, "training photos")
        return out.embeddings, photos.loc[out.rows, "product_id"].astype(str).tolist()


def sample_per_product(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` rows of each product, a seeded sample, in the frame's order."""
    return frame.sample(frac=1.0, random_state=seed).groupby("product_id").head(n).sort_index()
