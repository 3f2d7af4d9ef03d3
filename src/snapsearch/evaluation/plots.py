"""Figures for the evaluation report: the gate's confusion matrix and a grid of example queries."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix

from snapsearch.data.image_io import ImageReadError, read_rgb

CELL_INCHES = 0.3
MIN_INCHES = 6.0
THUMB_INCHES = 1.6
THUMB_MAX_PIXELS = 40_000_000


def confusion_matrix_figure(probs: np.ndarray, labels: np.ndarray, names: list[str]) -> Figure:
    metric = MulticlassConfusionMatrix(len(names))
    metric.update(torch.from_numpy(probs), torch.from_numpy(labels).long())
    fig, _ = metric.plot(labels=names)
    side = max(MIN_INCHES, len(names) * CELL_INCHES)
    fig.set_size_inches(side, side)
    return fig


def _thumb(ax: plt.Axes, path: str, title: str, colour: str) -> None:
    try:
        ax.imshow(read_rgb(path, max_pixels=THUMB_MAX_PIXELS))
    except ImageReadError as err:
        ax.text(0.5, 0.5, err.reason, ha="center", va="center", fontsize=6)
    ax.set_title(title, fontsize=7, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3 if colour == "green" else 1)


def examples_figure(
    query_paths: list[str],
    true_products: list[int],
    ranked: list[list[int]],
    product_image: dict[int, str],
    product_names: list[str],
    top: int,
) -> Figure:
    """One row per query: the photo, then its top results (a green frame marks the right product)."""
    fig, axes = plt.subplots(
        len(query_paths), top + 1, figsize=((top + 1) * THUMB_INCHES, len(query_paths) * THUMB_INCHES), squeeze=False
    )
    for row, (path, truth, results) in enumerate(zip(query_paths, true_products, ranked, strict=True)):
        _thumb(axes[row, 0], path, f"query: {product_names[truth]}", "black")
        for col in range(top):
            ax = axes[row, col + 1]
            if col < len(results):
                prod = results[col]
                _thumb(
                    ax, product_image[prod], f"{col + 1}. {product_names[prod]}", "green" if prod == truth else "red"
                )
            else:
                ax.axis("off")
    fig.tight_layout()
    return fig
