"""Fitted models as the workers use them: numpy arrays and the arithmetic of prediction.

A kernel is what travels to the workers (Dask tasks, Spark executors, local threads)
to predict, evaluate and score: it imports numpy only, so a worker never pays for
scikit-learn. Estimators (:mod:`distml.models`) validate user input, then call their
kernel; engine-side code, whose inputs are already validated partitions, calls the
kernel directly. Attribute names are the estimators' (``coef_``, ``classes_``,
``cluster_centers_``), so metrics read either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


def _expit(z: np.ndarray) -> np.ndarray:
    """The logistic function, stable for large |z| (as scipy.special.expit)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))  # exp(-z) for z >= 0, exp(z) below: both in (0, 1]
    out = np.where(z >= 0, 1.0, e)
    out /= 1.0 + e  # 1 / (1 + exp(-z)) for z >= 0, exp(z) / (1 + exp(z)) below
    return out


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def affine(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """``X @ coef + intercept`` with every row summed in feature order, so a row's value has
    the same bits whatever batch it is scored in, in whichever memory layout (BLAS's
    matrix-vector product blocks rows, and its last bit changes with the row count)."""
    out = np.multiply(X[:, 0], coef[0]) if len(coef) else np.zeros(X.shape[0])
    term = np.empty_like(out)
    for j in range(1, len(coef)):
        np.multiply(X[:, j], coef[j], out=term)
        out += term
    out += intercept
    return out


def _row_squares(X: np.ndarray) -> np.ndarray:
    """``‖x‖²`` of every row summed in feature order (``affine(X * X, 1, 0)``'s bits, without
    the ``X * X`` copy)."""
    out = np.multiply(X[:, 0], X[:, 0]) if X.shape[1] else np.zeros(X.shape[0])
    term = np.empty_like(out)
    for j in range(1, X.shape[1]):
        np.multiply(X[:, j], X[:, j], out=term)
        out += term
    return out


@dataclass(frozen=True)
class LinearKernel:
    """``X @ coef + intercept``."""

    coef_: np.ndarray
    intercept_: float
    task: ClassVar[str] = "regression"

    def predict(self, X: np.ndarray) -> np.ndarray:
        return affine(X, self.coef_, self.intercept_)


@dataclass(frozen=True)
class LogisticKernel:
    """Binary (one row of ``coef_``) or multinomial logistic regression."""

    coef_: np.ndarray
    intercept_: np.ndarray
    classes_: np.ndarray
    task: ClassVar[str] = "classification"

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        scores = np.column_stack(
            [affine(X, w, b) for w, b in zip(self.coef_, self.intercept_, strict=True)]
        )
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            positive = _expit(scores)
            return np.column_stack([1.0 - positive, positive])
        return _softmax(scores)

    def predict(self, X: np.ndarray) -> np.ndarray:
        scores = self.decision_function(X)
        index = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]


@dataclass(frozen=True)
class KMeansKernel:
    """Distances to the centres; the nearest centre is the cluster."""

    cluster_centers_: np.ndarray
    task: ClassVar[str] = "clustering"

    def transform(self, X: np.ndarray) -> np.ndarray:
        centers = self.cluster_centers_
        squares = _row_squares(X)  # row by row, as affine: the same bits in any batch
        d2 = np.empty((X.shape[0], len(centers)))
        for k, c in enumerate(centers):
            d2[:, k] = affine(X, c, 0.0)
        d2 *= 2.0  # ‖x‖² - 2 x·c + ‖c‖², in place: no (rows × k) temporaries
        np.subtract(squares[:, None], d2, out=d2)
        d2 += (centers**2).sum(1)
        np.maximum(d2, 0.0, out=d2)
        return np.sqrt(d2, out=d2)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.transform(X).argmin(axis=1).astype(np.int32)

    def score(self, X: np.ndarray) -> float:
        return -float((self.transform(X).min(axis=1) ** 2).sum())


Kernel = LinearKernel | LogisticKernel | KMeansKernel
