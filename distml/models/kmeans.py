"""K-means clustering."""

from __future__ import annotations

import numpy as np

from distml.algorithms.engine import Engine
from distml.algorithms.kmeans import fit_kmeans
from distml.errors import DataError, ModelError
from distml.models.base import Model
from distml.models.kernels import KMeansKernel

INITS = ("auto", "k-means||", "k-means++", "random")


class KMeansModel(Model):
    """K-means with scikit-learn's parameters.

    ``init="k-means||"`` seeds scalably (a fixed number of passes whatever
    ``n_clusters``, as Spark MLlib); the default ``"auto"`` runs the same k-means‖ on a
    stratified 100,000-row sample held on the driver when the data has more rows and
    ``n_clusters`` ≤ 2,000 (50 sampled rows per cluster; one pass
    instead of four: the seeding only has to start Lloyd near a good optimum), on every row
    otherwise. ``"k-means++"`` reproduces scikit-learn's seeding exactly (same
    ``random_state`` → same centres) at two passes per cluster.
    ``n_init="auto"`` means 1 run for auto/k-means||/k-means++ and 10 for ``"random"``.
    """

    model_type = "kmeans"
    task = "clustering"
    supervised = False
    _array_attributes = ("cluster_centers_",)
    _scalar_attributes = ("inertia_", "n_iter_")

    def __init__(
        self,
        *,
        n_clusters: int = 8,
        init: str | np.ndarray = "auto",
        n_init: int | str = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state: int | None = None,
        solver: str = "auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.solver = solver

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.n_clusters, int) or self.n_clusters < 1:
            raise ModelError(f"n_clusters must be an integer >= 1, got {self.n_clusters!r}")
        if isinstance(self.init, str):
            if self.init not in INITS:
                raise ModelError(f"init must be one of {', '.join(INITS)} or an array")
        elif np.asarray(self.init).shape[0] != self.n_clusters:
            raise ModelError(f"init has {np.asarray(self.init).shape[0]} rows, need n_clusters")
        if self.n_init != "auto" and (not isinstance(self.n_init, int) or self.n_init < 1):
            raise ModelError(f"n_init must be 'auto' or an integer >= 1, got {self.n_init!r}")
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ModelError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")

    def _effective_n_init(self) -> int:
        if not isinstance(self.init, str):
            return 1
        if self.n_init == "auto":
            return 10 if self.init == "random" else 1
        return int(self.n_init)

    def fit_engine(self, engine: Engine) -> KMeansModel:
        self._check_params()
        if engine.n_rows < self.n_clusters:
            raise DataError(
                f"n_clusters={self.n_clusters} is larger than the number of rows ({engine.n_rows})"
            )
        init = self.init if isinstance(self.init, str) else np.asarray(self.init, dtype=float)
        solution = fit_kmeans(
            engine,
            int(self.n_clusters),
            init=init,
            n_init=self._effective_n_init(),
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            random_state=self.random_state,
        )
        self.cluster_centers_ = solution.centers
        self.inertia_ = solution.inertia
        self.n_iter_ = solution.n_iter
        return self

    def kernel(self) -> KMeansKernel:
        self._check_fitted()
        return KMeansKernel(np.asarray(self.cluster_centers_, dtype=np.float64))
