"""L2-regularised logistic regression (binary and multinomial) by distributed L-BFGS.

The objective is scikit-learn's, scaled by ``1/n`` as scikit-learn scales it:
``mean(loss) + ||W||² / (2 C n)`` (the intercept is not penalised), which has the
same minimiser as ``½||W||² + C Σ loss``. Every objective/gradient evaluation is
one ``map_reduce``; SciPy's L-BFGS-B drives the iterations on the driver with the
options scikit-learn's ``lbfgs`` solver uses, so both stop at the same point.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.optimize
from scipy.special import expit, logsumexp

from distml.algorithms.engine import Engine, Partition
from distml.errors import ConvergenceWarning, DataError


def partition_classes(part: Partition) -> np.ndarray:
    assert part.y is not None
    return np.unique(part.y)


def find_classes(engine: Engine) -> np.ndarray:
    """Sorted distinct labels (one pass)."""
    return engine.map_reduce(partition_classes, combine=np.union1d)


def _split_weights(w: np.ndarray, n_features: int, fit_intercept: bool):
    coef = w[:n_features]
    intercept = w[n_features] if fit_intercept else 0.0
    return coef, intercept


def binary_loss_grad(
    part: Partition, w: np.ndarray, positive: object, fit_intercept: bool
) -> tuple[float, np.ndarray]:
    """Sum of log-losses and its gradient for labels ``y == positive``."""
    X = part.X
    d = X.shape[1]
    t = (part.y == positive).astype(np.float64)
    coef, intercept = _split_weights(w, d, fit_intercept)
    z = X @ coef + intercept
    loss = float(np.sum(np.logaddexp(0.0, z)) - t @ z)
    residual = expit(z) - t
    grad = np.empty_like(w)
    grad[:d] = X.T @ residual
    if fit_intercept:
        grad[d] = residual.sum()
    return loss, grad


def multinomial_loss_grad(
    part: Partition, w: np.ndarray, classes: np.ndarray, fit_intercept: bool
) -> tuple[float, np.ndarray]:
    """Sum of multinomial log-losses and its gradient; ``w`` is ``(K, d [+1])`` flattened."""
    X = part.X
    d = X.shape[1]
    k = len(classes)
    W = w.reshape(k, -1)
    Z = X @ W[:, :d].T
    if fit_intercept:
        Z += W[:, d]
    target = np.searchsorted(classes, part.y)
    rows = np.arange(X.shape[0])
    lse = logsumexp(Z, axis=1)
    loss = float(np.sum(lse) - np.sum(Z[rows, target]))
    P = np.exp(Z - lse[:, None])
    P[rows, target] -= 1.0
    G = np.empty_like(W)
    G[:, :d] = P.T @ X
    if fit_intercept:
        G[:, d] = P.sum(axis=0)
    return loss, G.ravel()


@dataclass
class LogisticSolution:
    coef: np.ndarray  # (1, d) binary or (K, d) multinomial
    intercept: np.ndarray  # (1,) or (K,)
    classes: np.ndarray
    n_iter: int
    objective: float
    converged: bool


def fit_logistic(
    engine: Engine,
    C: float = 1.0,
    penalty: str | None = "l2",
    fit_intercept: bool = True,
    tol: float = 1e-4,
    max_iter: int = 100,
) -> LogisticSolution:
    """Minimise the regularised log-loss; needs the partitions cached in memory."""
    classes = find_classes(engine)
    if len(classes) < 2:
        raise DataError(
            f"the label has a single class ({classes[0] if len(classes) else 'none'}); "
            "classification needs at least 2"
        )
    n = float(engine.n_rows)
    d = engine.n_features
    width = d + int(fit_intercept)
    binary = len(classes) == 2
    k = 1 if binary else len(classes)
    l2 = 0.0 if penalty is None else 1.0 / (C * n)
    penalised = np.ones((k, width), dtype=bool)
    if fit_intercept:
        penalised[:, d] = False
    mask = penalised.ravel()

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        if binary:
            loss, grad = engine.map_reduce(binary_loss_grad, w, classes[1], fit_intercept)
        else:
            loss, grad = engine.map_reduce(multinomial_loss_grad, w, classes, fit_intercept)
        reg = np.where(mask, w, 0.0)
        return loss / n + 0.5 * l2 * float(reg @ reg), grad / n + l2 * reg

    result = scipy.optimize.minimize(
        objective,
        np.zeros(k * width),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps},
    )
    converged = bool(result.success)
    if not converged and result.nit >= max_iter:
        warnings.warn(
            f"logistic regression did not converge in max_iter={max_iter} iterations "
            f"(gradient norm {np.max(np.abs(result.jac)):.3g} > tol={tol}); "
            "increase max_iter or scale the features",
            ConvergenceWarning,
            stacklevel=3,
        )
    W = result.x.reshape(k, width)
    intercept = W[:, d].copy() if fit_intercept else np.zeros(k)
    return LogisticSolution(
        coef=W[:, :d].copy(),
        intercept=intercept,
        classes=classes,
        n_iter=int(result.nit),
        objective=float(result.fun),
        converged=converged,
    )
