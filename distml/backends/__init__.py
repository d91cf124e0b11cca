"""Engines behind one abstraction, resolved by name through a registry."""

from distml.backends.base import Backend, LoadedData
from distml.backends.registry import get_backend, parse_backend

__all__ = ["Backend", "LoadedData", "get_backend", "parse_backend"]
