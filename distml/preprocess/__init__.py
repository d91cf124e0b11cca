"""Preprocessing stages (impute, scale, one_hot, select) and the pipeline that runs them."""

# Imported on first use (PEP 562), so that ``import distml.<light module>`` on a worker
# does not pull scikit-learn, pandas or pydantic in through this package.
_LAZY = {
    "Pipeline": "distml.preprocess.pipeline",
    "build_pipeline": "distml.preprocess.pipeline",
    "STAGES": "distml.preprocess.stages",
    "Impute": "distml.preprocess.stages",
    "OneHot": "distml.preprocess.stages",
    "Scale": "distml.preprocess.stages",
    "Select": "distml.preprocess.stages",
    "Stage": "distml.preprocess.stages",
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


__all__ = ["STAGES", "Impute", "OneHot", "Pipeline", "Scale", "Select", "Stage", "build_pipeline"]
