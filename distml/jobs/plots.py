"""The PNG plots of a run folder (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def predicted_vs_actual(y: np.ndarray, y_pred: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, y_pred, s=12, alpha=0.6)
    lo, hi = float(min(y.min(), y_pred.min())), float(max(y.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], color="red", linewidth=1, label="perfect prediction")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual")
    ax.legend(loc="upper left")
    return _save(fig, path)


def confusion_matrix(confusion: dict[str, Any], path: Path) -> Path:
    labels = [str(v) for v in confusion["labels"]]
    counts = np.asarray(confusion["counts"])
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 3, 1.2 * len(labels) + 2.5))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    threshold = counts.max() / 2 if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        color = "white" if value > threshold else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=color)
    ax.set_title("Confusion matrix")
    return _save(fig, path)


def clusters(
    X: np.ndarray, labels: np.ndarray, centers: np.ndarray, names: list[str], path: Path
) -> Path:
    """The seed's plot: points coloured by cluster, red × at the centres (first two features)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    second = 1 if X.shape[1] > 1 else 0
    ax.scatter(X[:, 0], X[:, second], c=labels, cmap="viridis", s=30)
    ax.scatter(centers[:, 0], centers[:, second], s=300, c="red", marker="x", label="centres")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[second])
    ax.set_title("K-means clusters")
    ax.legend(loc="best")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
