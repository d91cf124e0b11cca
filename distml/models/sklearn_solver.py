"""``solver: sklearn``: fit with scikit-learn itself and keep distml's portable model."""

from __future__ import annotations

import numpy as np

from distml.models.base import DistmlEstimator


def fit_with_sklearn(model: DistmlEstimator, X: np.ndarray, y: np.ndarray | None) -> None:
    """Fit the scikit-learn twin of ``model`` on in-memory arrays and copy its attributes."""
    from sklearn import cluster, linear_model

    params = model.get_params()
    if model.model_type == "linear_regression":
        if params["alpha"] > 0:
            est = linear_model.Ridge(alpha=params["alpha"], fit_intercept=params["fit_intercept"])
        else:
            est = linear_model.LinearRegression(fit_intercept=params["fit_intercept"])
        est.fit(X, y)
        model.coef_ = np.asarray(est.coef_, dtype=float)
        model.intercept_ = float(est.intercept_)
        model.rank_ = int(getattr(est, "rank_", X.shape[1]))
        model.singular_ = np.asarray(getattr(est, "singular_", np.zeros(0)))
    elif model.model_type == "logistic_regression":
        est = linear_model.LogisticRegression(
            C=params["C"] if params["penalty"] == "l2" else np.inf,
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
            init="k-means++" if isinstance(init, str) and init == "k-means||" else init,
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
