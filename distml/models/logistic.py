"""Logistic regression: binary, or multinomial for three or more classes."""

from __future__ import annotations

import numpy as np

from distml.algorithms.engine import Engine
from distml.algorithms.logistic import METHODS, fit_logistic
from distml.errors import ModelError
from distml.models.base import Model
from distml.models.kernels import LogisticKernel
from distml.models.penalties import check_l1_ratio, check_number, check_penalty

PENALTIES = ("auto", "l2", "l1", "elasticnet", None)
# the l1_ratio each explicit penalty implies (l1_ratio must be left at 0 or equal this)
_IMPLIED_RATIO = {"l2": 0.0, "l1": 1.0, None: 0.0}


class LogisticRegressionModel(Model):
    """Penalised logistic regression with scikit-learn's ``C`` and ``l1_ratio`` semantics.

    Minimises ``C Σ log-loss + l1_ratio·||W||₁ + ½(1 - l1_ratio)·||W||²`` (the intercept
    is not penalised). As in scikit-learn ≥ 1.8, ``l1_ratio`` alone chooses the penalty —
    0 (default) L2, 1 L1, in between elastic net — and ``C=inf`` means none. The older
    ``penalty`` keyword (``"l2"``, ``"l1"``, ``"elasticnet"``, ``None``) is accepted too;
    the default ``"auto"`` reads the penalty from ``l1_ratio`` and ``C``.

    The native solver stops by scikit-learn's ``lbfgs`` rule: max |projected gradient| ≤
    ``tol`` or ``max_iter`` iterations. Its ``method``: ``"newton"`` (no L1 term)
    takes full-data gradients and the Hessian of a 100,000-row sample held on the driver,
    from the sample's own optimum — 2-4 passes over the data where L-BFGS takes 10 or more;
    ``"lbfgs"`` is L-BFGS (bounded, on ``w = w⁺ - w⁻``, when there is an L1 term) with
    scikit-learn's options, so it stops where scikit-learn's ``lbfgs`` does. ``"auto"``
    picks Newton above 100,000 rows (no L1 term; up to ~140 features for two
    classes, ~80 for three, ~30 for ten), L-BFGS otherwise.
    """

    model_type = "logistic_regression"
    task = "classification"
    _array_attributes = ("coef_", "intercept_", "classes_")
    _scalar_attributes = ("n_iter_", "objective_")

    def __init__(
        self,
        *,
        C: float = 1.0,
        l1_ratio: float = 0.0,
        penalty: str | None = "auto",
        fit_intercept: bool = True,
        tol: float = 1e-4,
        max_iter: int = 100,
        solver: str = "auto",
        method: str = "auto",
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver
        self.method = method

    def _check_params(self) -> None:
        super()._check_params()
        check_number("C", self.C, minimum=0.0, strict=True, allow_inf=True)
        check_penalty(self.penalty, PENALTIES)
        check_l1_ratio(self.l1_ratio)
        if self.penalty in _IMPLIED_RATIO and self.l1_ratio not in (
            0,
            _IMPLIED_RATIO[self.penalty],
        ):
            raise ModelError(
                f"l1_ratio={self.l1_ratio!r} is ignored by penalty {self.penalty!r}; use "
                "penalty 'elasticnet', or leave penalty out (l1_ratio alone sets the penalty)"
            )
        check_number("max_iter", self.max_iter, minimum=1, integer=True)
        check_number("tol", self.tol, minimum=0.0)
        if self.method not in METHODS:
            raise ModelError(
                f"logistic_regression: unknown method {self.method!r}; choose one of "
                f"{', '.join(METHODS)}"
            )
        if self.method == "newton" and self.effective_penalty()[1] > 0:
            raise ModelError(
                "logistic_regression: method 'newton' takes no L1 term; use method 'lbfgs' "
                "(or 'auto') with l1_ratio > 0"
            )

    def effective_penalty(self) -> tuple[str | None, float]:
        """``(penalty, l1_ratio)`` as fitted: ``penalty`` one of ``"l2"``, ``"l1"``,
        ``"elasticnet"`` or ``None`` (also for ``C=inf``), as scikit-learn resolves it."""
        if self.penalty != "auto":
            if self.penalty is None or np.isinf(self.C):
                return None, 0.0
            if self.penalty == "elasticnet":
                return "elasticnet", float(self.l1_ratio)
            return self.penalty, _IMPLIED_RATIO[self.penalty]
        if np.isinf(self.C):
            return None, 0.0
        ratio = float(self.l1_ratio)
        return ("l2" if ratio == 0 else "l1" if ratio == 1 else "elasticnet"), ratio

    def fit_engine(self, engine: Engine) -> LogisticRegressionModel:
        self._check_params()
        # data bigger than the workers' memory streams: every L-BFGS evaluation is one pass
        # that re-reads the partitions (slower per pass, same model, bounded memory)
        penalty, l1_ratio = self.effective_penalty()
        solution = fit_logistic(
            engine,
            C=float(self.C),
            penalty=penalty,
            l1_ratio=l1_ratio,
            fit_intercept=bool(self.fit_intercept),
            tol=float(self.tol),
            max_iter=int(self.max_iter),
            method=self.method,
        )
        self.coef_ = solution.coef
        self.intercept_ = solution.intercept
        self.classes_ = solution.classes
        self.n_iter_ = solution.n_iter
        self.objective_ = solution.objective
        return self

    def kernel(self) -> LogisticKernel:
        self._check_fitted()
        return LogisticKernel(
            np.asarray(self.coef_, dtype=np.float64),
            np.asarray(self.intercept_, dtype=np.float64),
            np.asarray(self.classes_),
        )
