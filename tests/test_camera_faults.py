"""The camera-faults study's scores: retention and the gate's ECE with intervals clustered by product, the
same draws for every corruption and strategy, and the ECE exactly torchmetrics' on the photos as drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from snapsearch.evaluation.camera_faults import ece_interval, fault_photos, fault_scores
from snapsearch.models.classifier_metrics import classifier_metrics

N_PRODUCTS, PHOTOS_EACH = 40, 12


@pytest.fixture()
def study() -> dict:
    """A clean run where 80% of photos are found, and a fault that costs a quarter of the products all their
    photos (a fault that hits some products and spares others, as dark photos of dark produce do)."""
    rng = np.random.default_rng(0)
    products = np.repeat(np.arange(N_PRODUCTS), PHOTOS_EACH)
    part = products // 4
    clean = (rng.random(len(products)) < 0.8).astype(np.float64)
    faulted = np.where(products < N_PRODUCTS // 4, 0.0, clean)
    probs = rng.dirichlet(np.full(N_PRODUCTS // 4, 0.3), size=len(products))
    hits = {"clean": {"global": clean, "top1": clean}, "dark": {"global": faulted, "top1": clean}}
    gate = {"clean": (probs, part), "dark": (probs, part)}
    return {"hits": hits, "gate": gate, "products": products}


def test_retention_and_ece_have_product_clustered_intervals(study: dict) -> None:
    scores = fault_scores(study["hits"], study["gate"], study["products"], unit="product", resamples=400, seed=0)
    clean, dark = scores["clean"], scores["dark"]
    assert clean["R@1_kept_ci"]["global"] == [1.0, 1.0]  # the anchor keeps all of itself in every resample
    kept = dark["R@1_kept"]["global"]
    assert kept == pytest.approx(dark["R@1"]["global"] / clean["R@1"]["global"])
    assert 0.65 < kept < 0.85  # a quarter of the products lost
    low, high = dark["R@1_kept_ci"]["global"]
    assert low < kept < high and high < 0.95
    assert dark["R@1_kept_ci"]["top1"] == [1.0, 1.0]  # a strategy the fault spared: paired, no spread
    assert scores["dark"]["gate_ece"] == pytest.approx(classifier_metrics(*study["gate"]["dark"])["ece"])
    ece_low, ece_high = dark["gate_ece_ci"]
    assert ece_low < dark["gate_ece"] < ece_high
    photo = fault_scores(study["hits"], study["gate"], study["products"], unit="photo", resamples=400, seed=0)
    width = np.diff(dark["R@1_kept_ci"]["global"])[0]
    assert np.diff(photo["dark"]["R@1_kept_ci"]["global"])[0] < 0.8 * width  # photos of a product move together


def test_ece_interval_reweights_photos_exactly_as_torchmetrics_scores_them(study: dict) -> None:
    """With one resample that draws a single product, the interval collapses to that product's ECE."""
    probs, part = study["gate"]["clean"]
    products = study["products"]
    rows = products == 3
    only = np.where(rows, 0, 1)  # two clusters: product 3 and the rest
    ece = ece_interval(probs[rows], part[rows], only[rows], unit="product", resamples=5, seed=0)
    assert ece == pytest.approx([classifier_metrics(probs[rows], part[rows])["ece"]] * 2)


def test_no_resamples_no_intervals(study: dict) -> None:
    scores = fault_scores(study["hits"], study["gate"], study["products"], unit="product", resamples=0, seed=0)
    assert "R@1_kept_ci" not in scores["dark"] and "gate_ece_ci" not in scores["dark"]


def test_fault_photos_are_test_or_validation_photos() -> None:
    """``camera_faults.photos`` picks the study's frame; a typo or a run without validation photos is a clear
    error, not an empty study."""
    queries, calib = pd.DataFrame({"path": ["q.jpg"]}), pd.DataFrame({"path": ["v.jpg"]})
    assert fault_photos("test", queries, calib) is queries
    assert fault_photos("val", queries, calib) is calib
    with pytest.raises(ValueError, match="use one of"):
        fault_photos("train", queries, calib)
    with pytest.raises(ValueError, match="no validation photos"):
        fault_photos("val", queries, calib.iloc[:0])
