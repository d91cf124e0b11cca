"""Engine-neutral estimators; a fitted estimator is the portable model."""

from distml.models.base import DistmlEstimator, load_model, model_class, model_types
from distml.models.kmeans import KMeans
from distml.models.linear import LinearRegression
from distml.models.logistic import LogisticRegression

__all__ = [
    "DistmlEstimator",
    "KMeans",
    "LinearRegression",
    "LogisticRegression",
    "load_model",
    "model_class",
    "model_types",
]
