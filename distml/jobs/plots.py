"""The PNG plots of a run folder (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), imported at the first plot: a
    run without plots, and every ``distml`` command that draws none, skips its ~0.3 s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def predicted_vs_actual(y: np.ndarray, y_pred: np.ndarray, path: Path) -> Path:
    plt = pyplot()
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
    plt = pyplot()
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
    """The seed's plot: points coloured by cluster, red × at the centres. With more than
    two features, the axes are the sample's first two principal components."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    if X.shape[1] > 2:
        (X, centers), axes = principal_components(X, centers)
    else:
        second = 1 if X.shape[1] > 1 else 0
        X, centers = X[:, [0, second]], centers[:, [0, second]]
        axes = [names[0], names[second]]
    ax.scatter(X[:, 0], X[:, 1], c=labels, cmap="viridis")
    ax.scatter(centers[:, 0], centers[:, 1], s=200, color="red", marker="x", label="centres")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title("K-means clusters")
    ax.legend(loc="best")
    return _save(fig, path)


def principal_components(X: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """``X`` and ``others`` projected on ``X``'s first two principal components (signs
    fixed so each component's largest loading is positive), and the axis labels."""
    mean = X.mean(axis=0)
    _, singular, vt = np.linalg.svd(X - mean, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    variance = singular**2 / max(float((singular**2).sum()), np.finfo(float).tiny)
    axes = [f"PC{i + 1} ({100 * variance[i]:.1f}% of variance)" for i in range(2)]
    return [(a - mean) @ components.T for a in (X, *others)], axes


def residuals(fitted: np.ndarray, residual: np.ndarray, path: Path) -> Path:
    plt = pyplot()
    """Residuals (actual − fitted) against fitted values, with the zero line."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(fitted, residual, s=12, alpha=0.6)
    ax.axhline(0.0, color="red", linewidth=1)
    ax.set_xlabel("fitted")
    ax.set_ylabel("residual (actual − fitted)")
    ax.set_title("Residuals vs fitted")
    return _save(fig, path)


def roc_curve(curves: list[tuple[str, np.ndarray, np.ndarray, float]], path: Path) -> Path:
    plt = pyplot()
    """ROC curves: the positive class (binary) or every class against the rest."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, fpr, tpr, auc in curves[:12]:
        keep = _thin(len(fpr))
        ax.plot(fpr[keep], tpr[keep], linewidth=1.5, label=f"{label} (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve" if len(curves) == 1 else "ROC curves (one vs rest)")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def bar_chart(
    names: list[str],
    values: np.ndarray,
    path: Path,
    title: str,
    xlabel: str,
    errors: np.ndarray | None = None,
    groups: list[str] | None = None,
    top: int = 20,
) -> Path:
    """Horizontal bars of the ``top`` largest ``|values|`` (rows = features; columns of a
    2-D ``values`` = ``groups``, e.g. classes), largest at the top."""
    plt = pyplot()
    values = np.atleast_2d(np.asarray(values, dtype=float).T).T  # (features, groups)
    order = np.argsort(-np.abs(values).max(axis=1), kind="stable")[:top][::-1]
    n_groups = values.shape[1]
    height = 0.8 / n_groups
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(order) * max(1, n_groups / 2)))
    positions = np.arange(len(order))
    for g in range(n_groups):
        offset = (g - (n_groups - 1) / 2) * height
        err = None if errors is None else np.asarray(errors, dtype=float)[order]
        label = groups[g] if groups else None
        ax.barh(positions + offset, values[order, g], height=height, xerr=err, label=label)
    ax.set_yticks(positions, [names[i] for i in order])
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if groups:
        ax.legend(loc="best", fontsize="small", title="class")
    return _save(fig, path)


def _thin(n: int, most: int = 2000) -> np.ndarray:
    """Indices of at most ``most`` points of a curve of ``n``, keeping both ends."""
    return np.arange(n) if n <= most else np.unique(np.linspace(0, n - 1, most).astype(int))


def _save(fig: Any, path: Path) -> Path:
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
