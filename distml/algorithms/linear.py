"""Least squares, ridge, lasso and elastic net from one pass of sufficient statistics.

Each partition computes its row count, means and *centred* cross-products; the
combine step merges them with the parallel co-moment update (Chan, Golub and
LeVeque), which stays accurate when features have large means. The small
``d × d`` system is solved by Cholesky, or — when features are collinear or
constant — by an eigen-decomposition pseudo-inverse that gives the same
minimum-norm solution as scikit-learn's ``lstsq``. L1 and elastic-net penalties
are solved on the driver by coordinate descent on that ``d × d`` Gram matrix
(scikit-learn's ``precompute=True`` path, with its duality-gap stopping rule),
so they too read the data once and work when partitions stream.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from distml.algorithms.engine import BLOCK_ROWS, Engine, Partition
from distml.errors import ConvergenceWarning

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
    y = np.asarray(y, dtype=np.float64)  # an integer label's yᵀy would wrap around
    n = X.shape[0]
    if n == 0:
        d = X.shape[1]
        return Moments(0.0, np.zeros(d), 0.0, np.zeros((d, d)), np.zeros(d), 0.0)
    if not centred:
        xtx, _, xty = raw_products(X, y)
        return Moments(float(n), np.zeros(X.shape[1]), 0.0, xtx, xty, float(np.dot(y, y)))
    raw = _raw_centred_moments(X, y)
    if raw is not None:
        return raw
    mean_x = X.mean(axis=0)
    mean_y = float(y.mean())
    d = X.shape[1]
    xtx, xty, yty = np.zeros((d, d)), np.zeros(d), 0.0
    # centred block by block: each block's copy stays in cache, where one centred copy of
    # the whole partition would be fresh memory as large as X (page faults, another pass)
    for start in range(0, n, BLOCK_ROWS):
        Xc = X[start : start + BLOCK_ROWS] - mean_x
        yc = y[start : start + BLOCK_ROWS] - mean_y
        xtx += np.dot(Xc.T, Xc)  # np.dot, not @: matmul holds the GIL (see engine.py)
        xty += np.dot(Xc.T, yc)
        yty += float(np.dot(yc, yc))
    return Moments(float(n), mean_x, mean_y, xtx, xty, yty)


#: The raw (uncentred) products are used when centring them cancels at most this factor of
#: each column's sum of squares: a column's mean within 4 standard deviations of 0.
MAX_CANCELLATION = 17.0


#: Rows per block of :func:`raw_products`, at most: ``[X | y | 1]`` of 2,048 rows and 20
#: features is 352 KB, in a core's L2 cache while one matrix product takes everything from it.
PRODUCT_ROWS = 2048
#: Multiply-adds of one block's product, at most: OpenBLAS takes products this small
#: without packing their operands (a block of 2,048 rows and 24 features took twice as long
#: as one of 20 until the rows were cut to fit).
SMALL_PRODUCT = 950_000
#: Up to this many features the compact blocks beat one SYRK over the whole partition,
#: although a GEMM computes the whole symmetric product: 0.75-0.83x the time at 8-24
#: features, 0.89-1.06x at 32, 1.4x and more from 48 (``benchmarks/moments_width.py``).
COMPACT_MAX_FEATURES = 24


def raw_products(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``XᵀX``, the column sums of ``X`` and ``Xᵀy``.

    Up to :data:`COMPACT_MAX_FEATURES` features, in one sweep over ``X``: each block of rows
    is copied, with ``y`` and a column of ones, into a compact buffer ``[X | y | 1]``, and
    one GEMM (``np.dot``: it releases the GIL) takes all three from it while it is in
    cache. OpenBLAS's SYRK over the whole partition plus a sweep each for the sums and
    ``Xᵀy`` took ~1.35x as long at 20 features: a thin symmetric product runs at ~12
    GFLOP/s there. Wider partitions take that path.
    """
    n, d = X.shape
    if d == 0 or d > COMPACT_MAX_FEATURES:
        return np.dot(X.T, X), X.sum(axis=0), np.dot(X.T, y)
    rows = max(1, min(PRODUCT_ROWS, SMALL_PRODUCT // (d * (d + 2)), n))
    buffer = np.empty((rows, d + 2), order="F")
    buffer[:, d + 1] = 1.0
    products = np.zeros((d, d + 2))
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        block = buffer
        if hi - lo < rows:  # buffer[:k] would keep the full column stride: np.dot copies it
            block = np.empty((hi - lo, d + 2), order="F")
            block[:, d + 1] = 1.0
        np.copyto(block[:, :d], X[lo:hi])  # any real type; complex or objects are refused
        block[:, d] = y[lo:hi]
        products += np.dot(block[:, :d].T, block)
    xtx = products[:, :d]
    return xtx / 2 + xtx.T / 2, products[:, d + 1], products[:, d]  # halves: no overflow


def _raw_centred_moments(X: np.ndarray, y: np.ndarray) -> Moments | None:
    """Centred moments from the raw products ``XᵀX``, ``Xᵀy``, ``yᵀy`` and column sums
    (:func:`raw_products`), no centred copy: half the time of the block-by-block path —
    or ``None`` when centring cancels more than :data:`MAX_CANCELLATION` of a column's raw
    sum of squares (a mean far from 0 next to its spread), where only centring the data
    itself keeps the digits."""
    n, d = X.shape
    contiguous = X.flags.f_contiguous or X.flags.c_contiguous
    if d > COMPACT_MAX_FEATURES and not contiguous:
        return None  # np.dot would copy the whole partition first
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught below
        xtx, sum_x, xty = raw_products(X, y)
        sum_y = float(y.sum())
        mean_x, mean_y = sum_x / n, sum_y / n
        cxx = xtx - np.outer(sum_x, mean_x)
        raw_yy = float(np.dot(y, y))
        cyy = raw_yy - sum_y * mean_y
    diagonal = np.diagonal(xtx)
    bounded = np.all(np.diagonal(cxx) * MAX_CANCELLATION >= diagonal)
    finite = np.isfinite(xtx).all() and np.isfinite(raw_yy)
    if not (bounded and cyy * MAX_CANCELLATION >= raw_yy and finite):
        return None  # also where a raw product overflowed (inf - inf is NaN: never >=)
    cxy = xty - sum_x * mean_y
    return Moments(float(n), mean_x, mean_y, cxx, cxy, cyy)


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
    n_iter: int | None = None  # coordinate-descent sweeps (None: closed form)
    dual_gap: float | None = None  # final duality gap, in scikit-learn's ``1/n`` units


def solve_normal_equations(moments: Moments, alpha: float, fit_intercept: bool) -> LinearSolution:
    """Minimise ``||y - Xw - b||² + alpha ||w||²`` given the moments."""
    d = moments.cxx.shape[0]
    A = moments.cxx + alpha * np.eye(d)
    b = moments.cxy
    eigenvalues = np.linalg.eigvalsh(A)
    top = max(float(eigenvalues[-1]), 0.0)
    well_conditioned = top > 0 and eigenvalues[0] > top * 1e-10
    if well_conditioned:  # LAPACK's LU solve (numpy's: SciPy's import is 0.2 s, the solve µs)
        coef = np.linalg.solve(A, b)
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


def fit_elastic_net(
    engine: Engine,
    alpha: float,
    l1_ratio: float = 1.0,
    fit_intercept: bool = True,
    tol: float = 1e-4,
    max_iter: int = 1000,
) -> LinearSolution:
    """Fit scikit-learn's ``ElasticNet`` (``Lasso`` when ``l1_ratio == 1``) in one pass."""
    moments = compute_moments(engine, fit_intercept)
    return solve_elastic_net(moments, alpha, l1_ratio, fit_intercept, tol, max_iter)


def solve_elastic_net(
    moments: Moments,
    alpha: float,
    l1_ratio: float,
    fit_intercept: bool,
    tol: float = 1e-4,
    max_iter: int = 1000,
) -> LinearSolution:
    """Minimise ``1/(2n)||y - Xw - b||² + alpha·l1_ratio·||w||₁ + ½·alpha·(1 - l1_ratio)·||w||²``.

    Without an L1 term the problem is a ridge (``Ridge(alpha=n·alpha)``) and is solved
    exactly; ``alpha == 0`` is least squares. Otherwise coordinate descent on the Gram
    matrix stops as scikit-learn's does: once the largest coefficient update of a sweep
    is at most ``tol`` times the largest coefficient (or at ``max_iter``), the duality
    gap must be at most ``tol·||y - ȳ||²``; a :class:`ConvergenceWarning` says when it
    is not after ``max_iter`` sweeps.
    """
    n = moments.n
    l1 = alpha * l1_ratio * n
    l2 = alpha * (1.0 - l1_ratio) * n
    if l1 == 0:
        return solve_normal_equations(moments, l2, fit_intercept)
    coef, gap, n_iter, converged = enet_coordinate_descent_gram(
        moments.cxx, moments.cxy, moments.cyy, l1, l2, tol, max_iter
    )
    if not converged:
        warnings.warn(
            f"coordinate descent did not converge in max_iter={max_iter} sweeps (duality gap "
            f"{gap / n:.3g} > tol·||y||²/n = {tol * moments.cyy / n:.3g}); increase max_iter, "
            "raise tol or scale the features",
            ConvergenceWarning,
            stacklevel=3,
        )
    eigenvalues = np.linalg.eigvalsh(moments.cxx)
    top = max(float(eigenvalues[-1]), 0.0)
    rank = int(np.sum(eigenvalues > max(top, np.finfo(float).tiny) * RANK_RTOL))
    intercept = float(moments.mean_y - moments.mean_x @ coef) if fit_intercept else 0.0
    return LinearSolution(
        coef=coef,
        intercept=intercept,
        rank=rank,
        singular=np.sqrt(np.clip(eigenvalues[::-1], 0, None)),
        n_iter=n_iter,
        dual_gap=gap / n,
    )


def _duality_gap(
    w: np.ndarray, Qw: np.ndarray, q: np.ndarray, y_norm2: float, l1: float, l2: float
) -> tuple[float, np.ndarray, float]:
    """Elastic-net duality gap from the Gram matrix (scikit-learn's formulation A).

    Returns the gap, ``XᵀR - l2·w`` and its largest absolute entry (used by screening).
    """
    q_dot_w = float(q @ w)
    r_norm2 = y_norm2 + float(w @ Qw) - 2.0 * q_dot_w  # ||y - Xw||²
    ry = y_norm2 - q_dot_w  # (y - Xw)·y
    w_l2 = float(w @ w) if l2 > 0 else 0.0
    xta = q - Qw - l2 * w
    dual_norm = float(np.max(np.abs(xta))) if len(xta) else 0.0
    primal = 0.5 * (r_norm2 + l2 * w_l2) + l1 * float(np.sum(np.abs(w)))
    scale = l1 / dual_norm if dual_norm > l1 else 1.0
    dual = -0.5 * scale**2 * (r_norm2 + l2 * w_l2) + scale * ry
    return primal - dual, xta, dual_norm


def enet_coordinate_descent_gram(
    Q: np.ndarray,
    q: np.ndarray,
    y_norm2: float,
    l1: float,
    l2: float,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, float, int, bool]:
    """Cyclic coordinate descent for ``½wᵀQw - qᵀw + l1·||w||₁ + ½·l2·||w||²``.

    A transcription of scikit-learn's ``enet_coordinate_descent_gram`` (``l1 > 0``):
    the same sweep order, stopping rule and gap-safe screening of features that are
    provably zero. Returns ``(w, gap, n_iter, converged)``; ``gap`` is unscaled.
    """
    d = len(q)
    w = np.zeros(d)
    Qw = np.zeros(d)
    diag = np.diag(Q).copy()
    gap_tol = tol * y_norm2
    active = np.arange(d)
    excluded = np.zeros(d, dtype=bool)

    def screen(xta: np.ndarray, dual_norm: float, gap: float) -> np.ndarray:
        """Gap-safe rule (Fercoq et al. 2015, eq. 11): drop features whose optimum is 0."""
        radius = math.sqrt(2.0 * abs(gap)) / l1
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = (1.0 - np.abs(xta / max(l1, dual_norm))) / np.sqrt(diag + l2)
        drop = ~excluded & ((diag == 0) | (distance > radius))
        for j in np.flatnonzero(drop & (w != 0)):
            Qw[:] -= w[j] * Q[j]
            w[j] = 0.0
        excluded[drop] = True
        return np.flatnonzero(~excluded)

    gap, xta, dual_norm = _duality_gap(w, Qw, q, y_norm2, l1, l2)
    if 0 <= gap <= gap_tol:
        return w, gap, 0, True
    active = screen(xta, dual_norm, gap)
    for sweep in range(max_iter):
        w_max = 0.0
        dw_max = 0.0
        for j in active.tolist():
            q_jj = diag[j]
            if q_jj == 0.0:
                continue
            w_j = w[j]
            tmp = q[j] - Qw[j] + w_j * q_jj
            new = math.copysign(max(abs(tmp) - l1, 0.0), tmp) / (q_jj + l2)
            if new != w_j:
                Qw += (new - w_j) * Q[j]
                w[j] = new
            dw_max = max(dw_max, abs(new - w_j))
            w_max = max(w_max, abs(new))
        if w_max == 0.0 or dw_max / w_max <= tol or sweep == max_iter - 1:
            gap, xta, dual_norm = _duality_gap(w, Qw, q, y_norm2, l1, l2)
            if gap <= gap_tol:
                return w, gap, sweep + 1, True
            active = screen(xta, dual_norm, gap)
    return w, gap, max_iter, False
