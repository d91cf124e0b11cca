"""The SHAP summary plot: a beeswarm-style scatter (one output) or bars per output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distml.jobs import plots


def beeswarm(
    names: list[str], phi: np.ndarray, X: np.ndarray, order: np.ndarray, path: Path, title: str
) -> Path:
    """One row per feature (``order``: most important first, at most 20): each sampled row
    is a dot at its SHAP value, spread vertically where dots crowd, coloured by the
    feature's value (rank within the sample: blue low, red high), as shap's summary plot."""
    plt = plots.pyplot()
    top = list(order[:20])
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.38 * len(top)))
    rng = np.random.default_rng(0)  # the jitter only: the sample itself is deterministic
    scatter = None
    for position, j in enumerate(reversed(top)):
        values = phi[:, j]
        if len(values) == 0:
            continue
        ranks = np.argsort(np.argsort(X[:, j], kind="stable"), kind="stable")
        colour = ranks / max(1, len(ranks) - 1)
        # spread dots by the local density of their SHAP values (a histogram of 50 bins)
        span = float(values.max() - values.min()) or 1.0
        bins = np.clip(((values - values.min()) / span * 49).astype(int), 0, 49)
        density = np.bincount(bins, minlength=50)[bins] / max(1, len(values))
        spread = 0.4 * density / max(float(density.max()), 1e-12)
        y = position + rng.uniform(-1.0, 1.0, len(values)) * spread
        scatter = ax.scatter(values, y, c=colour, cmap="coolwarm", s=8, alpha=0.8, linewidths=0)
    ax.set_yticks(np.arange(len(top)), [names[j] for j in reversed(top)])
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("SHAP value (effect on the model output)")
    ax.set_title(title)
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=ax, ticks=[0, 1], pad=0.02)
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("feature value")
    return plots._save(fig, path)


def bars(
    names: list[str], mean_abs: np.ndarray, outputs: list[str], path: Path, title: str
) -> Path:
    """Mean |SHAP| per feature, one bar per output (classes, clusters)."""
    return plots.bar_chart(names, mean_abs, path, title, "mean |SHAP value|", groups=outputs)
