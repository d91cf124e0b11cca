"""Engines behind one abstraction, resolved by name through a registry."""

# Imported on first use (PEP 562), so that ``import distml.<light module>`` on a worker
# does not pull scikit-learn, pandas or pydantic in through this package.
_LAZY = {
    "Backend": "distml.backends.base",
    "LoadedData": "distml.backends.base",
    "get_backend": "distml.backends.registry",
    "parse_backend": "distml.backends.registry",
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


__all__ = ["Backend", "LoadedData", "get_backend", "parse_backend"]
