"""``solver: sklearn``: fit with scikit-learn itself and keep distml's portable model."""

from __future__ import annotations

import numpy as np

from distml.models.base import Model


def fit_with_sklearn(model: Model, X: np.ndarray, y: np.ndarray | None) -> None:
    """Fit the scikit-learn twin of ``model`` on in-memory arrays and copy its attributes."""
    from sklearn import cluster, linear_model

    params = model.get_params()
    if model.model_type == "linear_regression":
        penalty, alpha = params["penalty"], params["alpha"]
        common = {"fit_intercept": params["fit_intercept"]}
        iterative = {"tol": params["tol"], "max_iter": params["max_iter"]}
        ratio = model.effective_l1_ratio()
        if alpha > 0 and penalty == "l1":
            est = linear_model.Lasso(alpha=alpha, **common, **iterative)
        elif alpha > 0 and penalty == "elasticnet" and ratio > 0:
            est = linear_model.ElasticNet(alpha=alpha, l1_ratio=ratio, **common, **iterative)
        elif alpha > 0 and penalty == "elasticnet":  # no L1 term: ElasticNet's ridge
            est = linear_model.Ridge(alpha=alpha * len(X), **common)
        elif alpha > 0 and penalty == "l2":
            est = linear_model.Ridge(alpha=alpha, **common)
        else:  # alpha == 0: every penalty is plain least squares
            est = linear_model.LinearRegression(**common)
        est.fit(X, y)
        model.coef_ = np.asarray(est.coef_, dtype=float)
        model.intercept_ = float(est.intercept_)
        model.rank_ = int(getattr(est, "rank_", X.shape[1]))
        model.singular_ = np.asarray(getattr(est, "singular_", np.zeros(0)))
        if isinstance(est, linear_model.ElasticNet):
            model._set_iterations(int(est.n_iter_), float(est.dual_gap_))
        else:
            model._set_iterations(None, None)
    elif model.model_type == "logistic_regression":
        penalty, l1_ratio = model.effective_penalty()
        est = linear_model.LogisticRegression(
            C=np.inf if penalty is None else params["C"],
            l1_ratio=l1_ratio,
            # lbfgs where it applies (scikit-learn's default); saga is its L1 solver
            solver="lbfgs" if l1_ratio == 0 else "saga",
            random_state=0,
            fit_intercept=params["fit_intercept"],
            tol=params["tol"],
            max_iter=params["max_iter"],
        )
        est.fit(X, y)
        model.coef_ = est.coef_
        model.intercept_ = est.intercept_
        model.classes_ = est.classes_
        model.n_iter_ = int(np.max(est.n_iter_))
    elif model.model_type == "kmeans":
        init = params["init"]
        est = cluster.KMeans(
            n_clusters=params["n_clusters"],
            init="k-means++" if isinstance(init, str) and init in ("k-means||", "auto") else init,
            n_init=params["n_init"],
            max_iter=params["max_iter"],
            tol=params["tol"],
            random_state=params["random_state"],
        )
        est.fit(X)
        model.cluster_centers_ = est.cluster_centers_
        model.inertia_ = float(est.inertia_)
        model.n_iter_ = int(est.n_iter_)
    else:  # pragma: no cover - every registered model type is handled above
        raise NotImplementedError(model.model_type)
