"""Datasets (partitioned Parquet), splits, generators and the seed examples."""

# Imported on first use (PEP 562), so that ``import distml.<light module>`` on a worker
# does not pull scikit-learn, pandas or pydantic in through this package.
_LAZY = {
    "Dataset": "distml.data.dataset",
    "PartitionSpec": "distml.data.dataset",
    "write_example": "distml.data.examples",
    "write_examples": "distml.data.examples",
    "Recipe": "distml.data.generate",
    "generate": "distml.data.generate",
    "Split": "distml.data.split",
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
    "PartitionSpec",
    "Recipe",
    "Split",
    "generate",
    "write_example",
    "write_examples",
]
