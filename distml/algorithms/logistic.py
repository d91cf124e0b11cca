"""Penalised logistic regression (binary and multinomial), distributed.

The objective is scikit-learn's, scaled by ``1/n`` as scikit-learn scales it:
``mean(loss) + (l1_ratio·||W||₁ + ½(1 - l1_ratio)·||W||²) / (C n)`` (the intercept is
not penalised), which has the same minimiser as ``C Σ loss + l1_ratio·||W||₁ +
½(1 - l1_ratio)·||W||²``. Every objective/gradient evaluation is one ``map_reduce``; the
solver runs on the driver, and both solvers stop by scikit-learn's rule (max |projected
gradient| ≤ ``tol``):

* **L-BFGS**: SciPy's L-BFGS-B with the options scikit-learn's ``lbfgs`` solver uses, so
  both stop at the same point. With an L1 term each penalised weight is split as
  ``w = w⁺ - w⁻`` with ``w⁺, w⁻ ≥ 0``: the L1 norm becomes the linear ``Σ(w⁺ + w⁻)``, the
  problem smooth with simple bounds, and weights whose optimum is 0 land exactly on the
  bound — still one ``map_reduce`` per evaluation.
* **Newton with a sampled Hessian** (no L1 term; the default above
  :data:`~distml.algorithms.sampling.SAMPLE_ROWS` rows): the pass that finds the classes also brings one row per
  stratum of ``n / SAMPLE_ROWS`` rows to the driver. The problem is solved on that sample
  first (no pass), then Newton steps take the full data's gradient (one pass each) and the
  sample's Hessian, with an Armijo line search: the sample's Hessian is within a few per
  cent of the data's, so each step gains about two digits — 2-4 passes at 10⁷ rows, where
  L-BFGS takes 10 (Byrd et al. 2011, "On the use of stochastic Hessian information").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from distml.algorithms.engine import BLOCK_ROWS, Engine, Partition
from distml.algorithms.sampling import (
    as_engine,
    dataset_offsets,
    join_lists,
    sample_stride,
    sampled_rows,
)
from distml.errors import ConvergenceWarning, DataError

SAMPLE_SEED = 0
#: ``fit_logistic``'s solvers (``"auto"`` chooses between the other two).
METHODS = ("auto", "newton", "lbfgs")
#: Newton steps over the full data before L-BFGS takes over: a sampled Hessian gains about
#: two digits a step (1-3 steps at 10⁷ rows); needing more means no curvature to use
#: (separable data without a penalty, where the optimum is at infinity), as L-BFGS stops.
NEWTON_STEPS = 10
#: ``method="auto"`` takes Newton while one sample Hessian is at most this many
#: multiply-adds (rows × width² × the Hessian's class blocks; ~0.2 s here): 2 classes up to
#: ~140 features, 3 up to ~80, 10 up to ~30. Wider problems keep L-BFGS.
MAX_HESSIAN_WORK = 2e9


def partition_classes(part: Partition) -> np.ndarray:
    """This partition's distinct labels; a continuous (non-integral float) label is refused."""
    assert part.y is not None
    y = part.y
    # the few labels of a classification found from the first rows, then confirmed by
    # counting (a comparison per class): a sort of every label took 70% of a gradient pass
    classes = np.unique(y[:1024])
    if not 0 < len(classes) <= 8 or sum(int(np.count_nonzero(y == c)) for c in classes) != len(y):
        classes = np.unique(y)
    if classes.dtype.kind == "f":
        fractional = classes[classes != np.round(classes)]
        if fractional.size:
            raise DataError(
                f"the label has continuous values (e.g. {fractional[0]:.6g}); logistic regression "
                "needs class labels (integers or strings); use linear_regression for a continuous target"
            )
    return classes.astype(part.label_dtype, copy=False)  # the label column's type, not y's


def find_classes(engine: Engine) -> np.ndarray:
    """Sorted distinct labels (one pass)."""
    return engine.map_reduce(partition_classes, combine=np.union1d)


def classes_and_sample(part: Partition, offsets: np.ndarray, stride: int, seed: int) -> tuple:
    """This partition's labels (:func:`partition_classes`) and its rows of the stratified
    sample (:func:`~distml.algorithms.sampling.sampled_rows`): one pass gives the classes
    and the Newton solver's sample."""
    return partition_classes(part), sampled_rows(part, offsets, stride, seed)


def _join_classes_and_rows(a: tuple, b: tuple) -> tuple:
    return np.union1d(a[0], b[0]), join_lists(a[1], b[1])


def _split_weights(w: np.ndarray, n_features: int, fit_intercept: bool):
    coef = w[:n_features]
    intercept = w[n_features] if fit_intercept else 0.0
    return coef, intercept


def binary_loss_grad(
    part: Partition, w: np.ndarray, positive: object, fit_intercept: bool
) -> tuple[float, np.ndarray]:
    """Sum of log-losses and its gradient for labels ``y == positive``."""
    X = part.X
    assert part.y is not None
    d = X.shape[1]
    coef, intercept = _split_weights(w, d, fit_intercept)
    loss = 0.0
    grad = np.zeros_like(w)
    for lo in range(0, X.shape[0], BLOCK_ROWS):
        rows = X[lo : lo + BLOCK_ROWS]  # read once, used for the scores and the gradient
        t = (part.y[lo : lo + BLOCK_ROWS] == positive).astype(np.float64)
        z = rows @ coef + intercept
        # log(1 + e^z) and the sigmoid from one exp(-|z|) in (0, 1]: both stable, and 4x
        # faster than np.logaddexp (not vectorised) plus scipy's expit; they agree to 1 ulp
        e = np.exp(-np.abs(z))
        loss += float(np.maximum(z, 0.0).sum() + np.log1p(e).sum() - t @ z)
        residual = np.where(z >= 0.0, 1.0, e)
        residual /= 1.0 + e  # sigmoid(z): 1 / (1 + e^-z) for z >= 0, e^z / (1 + e^z) below
        residual -= t
        grad[:d] += rows.T @ residual
        if fit_intercept:
            grad[d] += residual.sum()
    return loss, grad


def multinomial_loss_grad(
    part: Partition, w: np.ndarray, classes: np.ndarray, fit_intercept: bool
) -> tuple[float, np.ndarray]:
    """Sum of multinomial log-losses and its gradient; ``w`` is ``(K, d [+1])`` flattened."""
    from scipy.special import logsumexp

    X = part.X
    assert part.y is not None
    d = X.shape[1]
    k = len(classes)
    W = w.reshape(k, -1)
    loss = 0.0
    G = np.zeros_like(W)
    for lo in range(0, X.shape[0], BLOCK_ROWS):
        rows = X[lo : lo + BLOCK_ROWS]
        Z = rows @ W[:, :d].T
        if fit_intercept:
            Z += W[:, d]
        target = np.searchsorted(classes, part.y[lo : lo + BLOCK_ROWS])
        at = np.arange(rows.shape[0])
        lse = logsumexp(Z, axis=1)
        loss += float(np.sum(lse) - np.sum(Z[at, target]))
        P = np.exp(Z - lse[:, None])
        P[at, target] -= 1.0
        G[:, :d] += P.T @ rows
        if fit_intercept:
            G[:, d] += P.sum(axis=0)
    return loss, G.ravel()


@dataclass
class LogisticSolution:
    coef: np.ndarray  # (1, d) binary or (K, d) multinomial
    intercept: np.ndarray  # (1,) or (K,)
    classes: np.ndarray
    n_iter: int
    objective: float
    converged: bool


def penalty_strengths(C: float, l1_ratio: float, n: float) -> tuple[float, float]:
    """``(l1, l2)`` weights of ``||W||₁`` and ``½||W||²`` in the ``1/n``-scaled objective."""
    if np.isinf(C):
        return 0.0, 0.0
    return l1_ratio / (C * n), (1.0 - l1_ratio) / (C * n)


def sample_hessian(X: np.ndarray, w: np.ndarray, n_classes: int, fit_intercept: bool) -> np.ndarray:
    """The mean log-loss's Hessian over the rows ``X`` (the driver's sample) at ``w``:
    ``Aᵀ diag(p(1-p)) A / m`` with ``A = [X, 1]`` (the ones implicit) for two classes; for
    more, block ``(a, b)`` is ``Aᵀ diag(p_a(δ_ab - p_b)) A / m``, ``w`` flattened class by
    class as :func:`multinomial_loss_grad` takes it."""
    d = X.shape[1]
    width = d + int(fit_intercept)
    m = max(len(X), 1)
    if n_classes == 2:
        z = X @ w[:d] + (w[d] if fit_intercept else 0.0)
        e = np.exp(-np.abs(z))
        p = np.where(z >= 0.0, 1.0, e) / (1.0 + e)  # the sigmoid, as binary_loss_grad takes it
        return _weighted_gram(X, p * (1.0 - p), fit_intercept) / m
    W = w.reshape(n_classes, width)
    Z = X @ W[:, :d].T
    if fit_intercept:
        Z += W[:, d]
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    H = np.zeros((n_classes * width, n_classes * width))
    for a in range(n_classes):
        for b in range(a, n_classes):
            block = _weighted_gram(X, P[:, a] * (float(a == b) - P[:, b]), fit_intercept)
            H[a * width : (a + 1) * width, b * width : (b + 1) * width] = block
            H[b * width : (b + 1) * width, a * width : (a + 1) * width] = block.T
    return H / m


def _weighted_gram(X: np.ndarray, h: np.ndarray, fit_intercept: bool) -> np.ndarray:
    """``Aᵀ diag(h) A`` with ``A = [X, 1]``, block by block (a block's weighted copy is the
    only temporary: no widened copy of the sample)."""
    d = X.shape[1]
    G = np.zeros((d + int(fit_intercept),) * 2)
    for lo in range(0, len(h), BLOCK_ROWS):
        rows = X[lo : lo + BLOCK_ROWS]
        weighted = rows * h[lo : lo + BLOCK_ROWS, None]
        G[:d, :d] += np.dot(weighted.T, rows)
        if fit_intercept:
            G[:d, d] += weighted.sum(axis=0)
    if fit_intercept:
        G[d, :d] = G[:d, d]
        G[d, d] = h.sum()
    return G


def newton_direction(hessian: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``H⁻¹ g`` by eigen-decomposition, directions of (numerically) zero curvature dropped:
    defined also when the sample's features are collinear and nothing is penalised."""
    values, vectors = np.linalg.eigh(hessian)
    keep = values > max(float(values[-1]), np.finfo(float).tiny) * 1e-12
    inverse = np.where(keep, 1.0 / np.where(keep, values, 1.0), 0.0)
    return vectors @ (inverse * (vectors.T @ grad))


@dataclass
class NewtonState:
    w: np.ndarray
    value: float
    grad: np.ndarray
    n_iter: int = 0
    converged: bool = False
    failed: bool = False  # no descent direction, or the line search found no decrease


def newton(
    objective,  # type: ignore[no-untyped-def]
    hessian,  # type: ignore[no-untyped-def]
    state: NewtonState,
    tol: float,
    max_iter: int,
    ftol: float,
) -> NewtonState:
    """Newton iterations with a backtracking (Armijo) line search until max |gradient| ≤
    ``tol`` (scikit-learn's rule), the objective stops decreasing (relative ``ftol``, as
    L-BFGS-B stops) or ``max_iter``; ``objective(w)`` gives ``(value, gradient)``."""
    w, value, grad = state.w, state.value, state.grad
    n_iter = state.n_iter
    while np.max(np.abs(grad), initial=0.0) > tol:
        if n_iter >= max_iter:
            return NewtonState(w, value, grad, n_iter)
        step = newton_direction(hessian(w), grad)
        slope = float(grad @ step)
        if not slope > 0:
            return NewtonState(w, value, grad, n_iter, failed=True)
        t = 1.0
        for _ in range(40):
            trial = w - t * step
            trial_value, trial_grad = objective(trial)
            if trial_value <= value - 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            return NewtonState(w, value, grad, n_iter, failed=True)
        n_iter += 1
        stalled = value - trial_value <= ftol * max(abs(value), abs(trial_value), 1.0)
        w, value, grad = trial, trial_value, trial_grad
        if stalled and np.max(np.abs(grad)) > tol:
            # no decrease left along the steps, yet the gradient is above tol: a direction
            # the sample has no curvature in (a category none of its rows has, with no
            # penalty) — L-BFGS, which follows the gradient itself, goes on from here
            return NewtonState(w, value, grad, n_iter, failed=True)
        if stalled:
            break
    return NewtonState(w, value, grad, n_iter, converged=True)


def fit_logistic(
    engine: Engine,
    C: float = 1.0,
    penalty: str | None = "l2",
    fit_intercept: bool = True,
    tol: float = 1e-4,
    max_iter: int = 100,
    l1_ratio: float = 0.0,
    method: str = "auto",
) -> LogisticSolution:
    """Minimise the penalised log-loss, one ``map_reduce`` pass per objective evaluation,
    over cached partitions or, for data bigger than memory, partitions re-read on every pass.

    ``penalty`` is ``"l2"``, ``"l1"``, ``"elasticnet"`` (mixing by ``l1_ratio``) or
    ``None``; ``C=inf`` also means no penalty. ``method``: ``"newton"`` (no L1
    term) takes full-data gradients and a Hessian from a sample held on the driver, starting
    from the sample's own optimum: 2-4 passes at 10⁷ rows where L-BFGS took 10;
    ``"lbfgs"`` is L-BFGS(-B) with scikit-learn's ``lbfgs`` options, which stops where
    scikit-learn does. ``"auto"`` is Newton above
    :data:`~distml.algorithms.sampling.SAMPLE_ROWS` rows (no L1 term) while one sample
    Hessian costs at most :data:`MAX_HESSIAN_WORK`, L-BFGS otherwise.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    n = float(engine.n_rows)
    d = engine.n_features
    ratio = {"l1": 1.0, "l2": 0.0, "elasticnet": float(l1_ratio)}.get(penalty)  # type: ignore[arg-type]
    l1, l2 = (0.0, 0.0) if ratio is None else penalty_strengths(C, ratio, n)
    stride = sample_stride(engine.n_rows)
    # auto: L-BFGS where it costs little (it ends where scikit-learn's lbfgs does) or where
    # the sample's Hessian would cost seconds; Newton otherwise
    newton_wanted = l1 == 0 and (
        method == "newton"
        or (method == "auto" and stride > 1 and _hessian_is_cheap(engine, stride, 1, fit_intercept))
    )
    if newton_wanted:
        classes, sample_rows = engine.map_reduce(
            classes_and_sample,
            dataset_offsets(engine),
            stride,
            SAMPLE_SEED,
            combine=_join_classes_and_rows,
        )
    else:
        classes = find_classes(engine)
    if len(classes) < 2:
        raise DataError(
            f"the label has only one class ({classes[0] if len(classes) else 'none'}); "
            "classification needs at least 2"
        )
    width = d + int(fit_intercept)
    binary = len(classes) == 2
    k = 1 if binary else len(classes)
    penalised = np.ones((k, width), dtype=bool)
    if fit_intercept:
        penalised[:, d] = False
    mask = penalised.ravel()

    def penalised_loss(on: Engine):  # type: ignore[no-untyped-def]
        """Mean loss + the L2 term and their gradient in ``w``, one pass over ``on``."""
        rows = float(on.n_rows)

        def value_and_gradient(w: np.ndarray) -> tuple[float, np.ndarray]:
            if binary:
                loss, grad = on.map_reduce(binary_loss_grad, w, classes[1], fit_intercept)
            else:
                loss, grad = on.map_reduce(multinomial_loss_grad, w, classes, fit_intercept)
            reg = np.where(mask, w, 0.0)
            return loss / rows + 0.5 * l2 * float(reg @ reg), grad / rows + l2 * reg

        return value_and_gradient

    smooth = penalised_loss(engine)
    state: NewtonState | None = None
    if newton_wanted and (
        method == "newton"
        or binary
        or _hessian_is_cheap(engine, stride, k * (k + 1) // 2, fit_intercept)
    ):
        sample = as_engine(sample_rows, d)
        del sample_rows  # the partitions' pieces: the sample engine holds one joined copy
        X = sample.partitions[0].X
        curvature = np.diag(np.where(mask, l2, 0.0))

        def hessian(w: np.ndarray) -> np.ndarray:
            return sample_hessian(X, w, len(classes), fit_intercept) + curvature

        state = _sampled_newton(
            smooth,
            penalised_loss(sample),
            hessian,
            k * width,
            len(classes),
            stride == 1,
            tol,
            max_iter,
        )
    if state is not None and not state.failed:
        w, objective, pgrad = state.w, state.value, state.grad
        n_iter, converged = state.n_iter, state.converged
    else:
        start = np.zeros(k * width) if state is None else state.w
        done = 0 if state is None else state.n_iter
        w, objective, pgrad, n_iter, converged = _lbfgs(
            smooth, start, k * width, mask, l1, tol, max(max_iter - done, 1)
        )
        n_iter += done
    if not converged and n_iter >= max_iter:
        warnings.warn(
            f"logistic regression did not converge in max_iter={max_iter} iterations "
            f"(gradient norm {np.max(np.abs(pgrad)):.3g} > tol={tol}); "
            "increase max_iter or scale the features",
            ConvergenceWarning,
            stacklevel=3,
        )
    W = w.reshape(k, width)
    intercept = W[:, d].copy() if fit_intercept else np.zeros(k)
    return LogisticSolution(
        coef=W[:, :d].copy(),
        intercept=intercept,
        classes=classes,
        n_iter=n_iter,
        objective=objective,
        converged=converged,
    )


def _hessian_is_cheap(engine: Engine, stride: int, blocks: int, fit_intercept: bool) -> bool:
    """Whether one sample Hessian (``blocks`` class blocks of width²) is within
    :data:`MAX_HESSIAN_WORK` — decided before the sample is fetched (its size is known from
    the stride), so wide data never ships ~100,000 wide rows to the driver for nothing.
    The classes are not known then: the first check assumes two (one block); with more,
    the check is made again once the classes pass has brought the sample, which is then
    dropped if its Hessian would cost too much (one sample fetched for nothing)."""
    rows = -(-engine.n_rows // stride)
    width = engine.n_features + int(fit_intercept)
    return rows * width**2 * blocks <= MAX_HESSIAN_WORK


def _sampled_newton(  # type: ignore[no-untyped-def]
    smooth, on_sample, hessian, size: int, n_classes: int, complete: bool, tol: float, max_iter: int
) -> NewtonState:
    """Newton on the full data (``smooth``: one pass per evaluation) with the sample's
    Hessian, from the sample's own optimum (``on_sample``; not when the sample is
    ``complete``: every row); ``failed`` hands over to L-BFGS."""
    ftol = 64 * np.finfo(float).eps
    w = np.zeros(size)
    if not complete:  # start from the sample's optimum (no pass over the data)
        value, grad = on_sample(w)
        warm = newton(on_sample, hessian, NewtonState(w, value, grad), tol / 10, max_iter, ftol)
        if not warm.failed:
            w = warm.w
    value, grad = smooth(w)
    if not complete and value > np.log(n_classes):  # worse than all-zero weights
        w = np.zeros(size)
        value, grad = smooth(w)
    steps = min(max_iter, NEWTON_STEPS)
    state = newton(smooth, hessian, NewtonState(w, value, grad), tol, steps, ftol)
    if not state.converged and state.n_iter < max_iter:
        state.failed = True  # slow here (separable data, no penalty): L-BFGS goes on
    return state


def _lbfgs(smooth, start, size, mask, l1, tol, max_iter):  # type: ignore[no-untyped-def]
    """L-BFGS(-B) from ``start`` with scikit-learn's ``lbfgs`` options: ``(w, objective,
    projected gradient, iterations, converged)``."""
    import scipy.optimize  # the driver's optimiser; workers only evaluate losses

    options = {"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps}
    if l1 == 0:
        result = scipy.optimize.minimize(
            smooth, start, jac=True, method="L-BFGS-B", options=options
        )
        return result.x, float(result.fun), result.jac, int(result.nit), bool(result.success)
    m = int(mask.sum())

    def join(x: np.ndarray) -> np.ndarray:
        w = np.empty(size)
        w[mask] = x[:m] - x[m : 2 * m]
        w[~mask] = x[2 * m :]
        return w

    def split_objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, g = smooth(join(x))
        gp = g[mask]
        grad = np.concatenate([gp + l1, l1 - gp, g[~mask]])
        return value + l1 * float(np.sum(x[: 2 * m])), grad

    bounds = [(0.0, None)] * (2 * m) + [(None, None)] * (size - m)
    x0 = np.concatenate([np.maximum(start[mask], 0.0), np.maximum(-start[mask], 0.0), start[~mask]])
    result = scipy.optimize.minimize(
        split_objective, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=options
    )
    x = result.x
    # u + v = |u - v| + 2·min(u, v): the objective at w itself
    objective = float(result.fun) - 2.0 * l1 * float(np.sum(np.minimum(x[:m], x[m : 2 * m])))
    at_bound = np.zeros(len(x), dtype=bool)
    at_bound[: 2 * m] = (x[: 2 * m] <= 0) & (result.jac[: 2 * m] > 0)
    pgrad = np.where(at_bound, 0.0, result.jac)
    return join(x), objective, pgrad, int(result.nit), bool(result.success)
