"""Engine-neutral models (:mod:`~distml.models.base`, no scikit-learn) and their
scikit-learn estimators (:mod:`~distml.models.estimators`); a fitted model is portable."""

# Imported on first use (PEP 562), so that ``import distml.<light module>`` on a worker
# does not pull scikit-learn, pandas or pydantic in through this package.
_LAZY = {
    "DistmlEstimator": "distml.models.estimators",
    "Model": "distml.models.base",
    "load_model": "distml.loading",
    "model_class": "distml.models.base",
    "model_types": "distml.models.base",
    "KMeans": "distml.models.estimators",
    "LinearRegression": "distml.models.estimators",
    "LogisticRegression": "distml.models.estimators",
}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "DistmlEstimator",
    "Model",
    "KMeans",
    "LinearRegression",
    "LogisticRegression",
    "load_model",
    "model_class",
    "model_types",
]
