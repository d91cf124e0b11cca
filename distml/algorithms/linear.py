"""Least squares (optionally ridge) from one pass of sufficient statistics.

Each partition computes its row count, means and *centred* cross-products; the
combine step merges them with the parallel co-moment update (Chan, Golub and
LeVeque), which stays accurate when features have large means. The small
``d × d`` system is solved by Cholesky, or — when features are collinear or
constant — by an eigen-decomposition pseudo-inverse that gives the same
minimum-norm solution as scikit-learn's ``lstsq``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from distml.algorithms.engine import Engine, Partition

# Eigenvalues below this fraction of the largest are treated as exact zeros.
RANK_RTOL = 1e-12


@dataclass
class Moments:
    """Row count, column means and centred cross-products of ``[X, y]``."""

    n: float
    mean_x: np.ndarray
    mean_y: float
    cxx: np.ndarray
    cxy: np.ndarray
    cyy: float


def partition_moments(part: Partition, centred: bool) -> Moments:
    """Sufficient statistics of one partition (centred on its own means if ``centred``)."""
    X, y = part.X, part.y
    assert y is not None
    n = X.shape[0]
    if n == 0:
        d = X.shape[1]
        return Moments(0.0, np.zeros(d), 0.0, np.zeros((d, d)), np.zeros(d), 0.0)
    if centred:
        mean_x = X.mean(axis=0)
        mean_y = float(y.mean())
        Xc = X - mean_x
        yc = y - mean_y
    else:
        mean_x, mean_y = np.zeros(X.shape[1]), 0.0
        Xc, yc = X, y
    return Moments(float(n), mean_x, mean_y, Xc.T @ Xc, Xc.T @ yc, float(yc @ yc))


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Combine two partitions' moments exactly (co-moment update)."""
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    dx = b.mean_x - a.mean_x
    dy = b.mean_y - a.mean_y
    w = a.n * b.n / n
    return Moments(
        n=n,
        mean_x=a.mean_x + dx * (b.n / n),
        mean_y=a.mean_y + dy * (b.n / n),
        cxx=a.cxx + b.cxx + np.outer(dx, dx) * w,
        cxy=a.cxy + b.cxy + dx * (dy * w),
        cyy=a.cyy + b.cyy + dy * dy * w,
    )


def merge_uncentred(a: Moments, b: Moments) -> Moments:
    """Combine raw (uncentred) cross-products: plain sums."""
    return Moments(a.n + b.n, a.mean_x, 0.0, a.cxx + b.cxx, a.cxy + b.cxy, a.cyy + b.cyy)


def compute_moments(engine: Engine, fit_intercept: bool) -> Moments:
    """One pass over the data."""
    combine = merge_moments if fit_intercept else merge_uncentred
    return engine.map_reduce(partition_moments, fit_intercept, combine=combine)


@dataclass
class LinearSolution:
    coef: np.ndarray
    intercept: float
    rank: int
    singular: np.ndarray


def solve_normal_equations(moments: Moments, alpha: float, fit_intercept: bool) -> LinearSolution:
    """Minimise ``||y - Xw - b||² + alpha ||w||²`` given the moments."""
    d = moments.cxx.shape[0]
    A = moments.cxx + alpha * np.eye(d)
    b = moments.cxy
    eigenvalues = np.linalg.eigvalsh(A)
    top = max(float(eigenvalues[-1]), 0.0)
    well_conditioned = top > 0 and eigenvalues[0] > top * 1e-10
    if well_conditioned:
        coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(A, lower=True), b)
        rank = d
    else:
        values, vectors = np.linalg.eigh(A)
        keep = values > max(top, np.finfo(float).tiny) * RANK_RTOL
        inverse = np.where(keep, 1.0 / np.where(keep, values, 1.0), 0.0)
        coef = vectors @ (inverse * (vectors.T @ b))
        rank = int(keep.sum())
    intercept = float(moments.mean_y - moments.mean_x @ coef) if fit_intercept else 0.0
    singular = np.sqrt(np.clip(eigenvalues[::-1], 0, None))
    return LinearSolution(coef=coef, intercept=intercept, rank=rank, singular=singular)


def fit_linear(engine: Engine, fit_intercept: bool = True, alpha: float = 0.0) -> LinearSolution:
    """Fit linear (ridge when ``alpha > 0``) regression in one pass; works when streaming."""
    return solve_normal_equations(compute_moments(engine, fit_intercept), alpha, fit_intercept)
