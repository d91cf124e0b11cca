"""distml: scalable distributed training with one job spec and three engines.

The Python API mirrors the CLI: ``Dataset`` describes partitioned Parquet,
estimators follow scikit-learn, backends run them (``get_backend``), and
``run_job`` runs a job spec end to end.
"""

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that ``import distml.<light module>`` on a worker
# does not pull scikit-learn, pandas or pydantic in through this package.
_LAZY = {
    "get_backend": "distml.backends",
    "Dataset": "distml.data",
    "Split": "distml.data",
    "DistmlError": "distml.errors",
    "load_spec": "distml.jobs",
    "parse_spec": "distml.jobs",
    "run_job": "distml.jobs",
    "KMeans": "distml.models",
    "LinearRegression": "distml.models",
    "LogisticRegression": "distml.models",
    "load_model": "distml.loading",
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
    "Dataset",
    "DistmlError",
    "KMeans",
    "LinearRegression",
    "LogisticRegression",
    "Split",
    "__version__",
    "get_backend",
    "load_model",
    "load_spec",
    "parse_spec",
    "run_job",
]
