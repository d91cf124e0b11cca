"""Linear regression: least squares, ridge, lasso and elastic net."""

from __future__ import annotations

import numpy as np

from distml.algorithms.engine import Engine
from distml.algorithms.linear import fit_elastic_net, fit_linear
from distml.errors import ModelError
from distml.models.base import Model
from distml.models.kernels import LinearKernel
from distml.models.penalties import check_l1_ratio, check_number, check_penalty

PENALTIES = ("l2", "l1", "elasticnet", None)


class LinearRegressionModel(Model):
    """Least squares with an optional penalty, each with scikit-learn's meaning.

    ``penalty`` names the scikit-learn estimator whose objective (and ``alpha``) is used:

    * ``"l2"`` (default) — ``Ridge``: ``||y - Xw - b||² + alpha·||w||²``; ``alpha=0`` (the
      default) is ``LinearRegression``. Collinear or constant features then give the
      minimum-norm solution, as scikit-learn does.
    * ``"l1"`` — ``Lasso``: ``1/(2n)·||y - Xw - b||² + alpha·||w||₁``.
    * ``"elasticnet"`` — ``ElasticNet``: ``1/(2n)·||y - Xw - b||² + alpha·l1_ratio·||w||₁
      + ½·alpha·(1 - l1_ratio)·||w||²``; ``l1_ratio`` defaults to ``ElasticNet``'s 0.5.
    * ``None`` — plain least squares (``alpha`` must stay 0).

    The intercept is never penalised. ``tol`` and ``max_iter`` are ``Lasso``'s: coordinate
    descent sweeps stop when the duality gap is at most ``tol·||y - ȳ||²``; the L2 penalty
    is solved exactly and ignores them. Every penalty reads the data once (streaming
    partitions work): the L1 ones run coordinate descent on the ``d × d`` Gram matrix.
    """

    model_type = "linear_regression"
    task = "regression"
    _array_attributes = ("coef_", "singular_")
    _scalar_attributes = ("intercept_", "rank_", "n_iter_", "dual_gap_")

    def __init__(
        self,
        *,
        fit_intercept: bool = True,
        alpha: float = 0.0,
        penalty: str | None = "l2",
        l1_ratio: float | None = None,
        tol: float = 1e-4,
        max_iter: int = 1000,
        solver: str = "auto",
    ):
        self.fit_intercept = fit_intercept
        self.alpha = alpha
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise ModelError(f"fit_intercept must be true or false, got {self.fit_intercept!r}")
        check_penalty(self.penalty, PENALTIES)
        check_number("alpha", self.alpha, minimum=0.0)
        if self.l1_ratio is not None:
            check_l1_ratio(self.l1_ratio)
            if self.penalty != "elasticnet":
                raise ModelError(
                    f"l1_ratio is only used with penalty 'elasticnet' (got l1_ratio="
                    f"{self.l1_ratio!r} with penalty {self.penalty!r}); set penalty: elasticnet "
                    "or leave l1_ratio out"
                )
        if self.penalty is None and self.alpha != 0:
            raise ModelError(
                f"alpha={self.alpha!r} is ignored by penalty null (plain least squares); "
                "leave alpha out or choose a penalty"
            )
        check_number("tol", self.tol, minimum=0.0)
        check_number("max_iter", self.max_iter, minimum=1, integer=True)

    def effective_l1_ratio(self) -> float:
        """The L1 share of the penalty: 1 for ``l1``, ``l1_ratio`` (0.5 if unset) for
        ``elasticnet``, 0 otherwise."""
        if self.penalty == "l1":
            return 1.0
        if self.penalty == "elasticnet":
            return 0.5 if self.l1_ratio is None else float(self.l1_ratio)
        return 0.0

    def fit_engine(self, engine: Engine) -> LinearRegressionModel:
        self._check_params()
        if self.penalty in ("l1", "elasticnet"):
            solution = fit_elastic_net(
                engine,
                alpha=float(self.alpha),
                l1_ratio=self.effective_l1_ratio(),
                fit_intercept=bool(self.fit_intercept),
                tol=float(self.tol),
                max_iter=int(self.max_iter),
            )
        else:
            solution = fit_linear(engine, bool(self.fit_intercept), float(self.alpha))
        self.coef_ = solution.coef
        self.intercept_ = solution.intercept
        self.rank_ = solution.rank
        self.singular_ = solution.singular
        self._set_iterations(solution.n_iter, solution.dual_gap)
        return self

    def _set_iterations(self, n_iter: int | None, dual_gap: float | None) -> None:
        """Record coordinate descent's sweeps and final gap; a closed-form fit is one
        iteration (one pass over the data) and has no gap."""
        self.n_iter_ = 1 if n_iter is None else n_iter
        if dual_gap is not None:
            self.dual_gap_ = dual_gap
        elif hasattr(self, "dual_gap_"):
            del self.dual_gap_

    def kernel(self) -> LinearKernel:
        self._check_fitted()
        return LinearKernel(np.asarray(self.coef_, dtype=np.float64), float(self.intercept_))
