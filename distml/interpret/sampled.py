"""SHAP for k-means: shap's own model-agnostic explainer on a deterministic sample.

What is explained is each cluster's score ``s_k(x) = -‖x - c_k‖²`` (the nearest centre
has the highest), one output per cluster. ``shap.KernelExplainer`` runs over a
deterministic sample of the rows against a deterministic background sample. With up to
11 features it enumerates every feature subset, so its values are exact for these
samples (each score is a sum of per-feature terms: ``φ_jk = E_b[(b_j - c_kj)²] -
(x_j - c_kj)²``); with more it samples subsets (``nsamples="auto"``) and is approximate.
(shap's permutation explainer is exact here with one permutation, but its numba kernels
compile for ~20 s in every new process.)
"""

from __future__ import annotations

import numpy as np

#: Rows explained and background rows (deterministic samples, seed 0).
EXPLAIN_ROWS = 100
BACKGROUND_ROWS = 50


def cluster_scores(centres: np.ndarray):  # type: ignore[no-untyped-def]
    """``X ↦ -‖x - c_k‖²`` for every centre (``(n, k)``)."""

    def scores(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return -(((X[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2))

    return scores


def kmeans_shap(
    centres: np.ndarray, X: np.ndarray, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(values (n, d, k), base values (k,))`` from ``shap.KernelExplainer``."""
    import shap

    centres = np.asarray(centres, dtype=np.float64)
    explainer = shap.KernelExplainer(cluster_scores(centres), np.asarray(background))
    d, k = X.shape[1], len(centres)
    if len(X) == 0:
        return np.zeros((0, d, k)), np.asarray(explainer.expected_value, dtype=np.float64)
    values = np.asarray(explainer.shap_values(X, silent=True), dtype=np.float64)
    return values.reshape(len(X), d, k), np.asarray(explainer.expected_value, dtype=np.float64)
