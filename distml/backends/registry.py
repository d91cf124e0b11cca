"""Backends found by name or URL, imported only when used.

``local``, ``local[4]``, ``local[*]`` → :class:`LocalBackend`; ``dask``,
``dask://host:8786``, ``tcp://…``, ``tls://…`` → the Dask backend; ``spark``,
``spark://host:7077``, ``yarn``, ``k8s://…`` → the Spark backend. A backend whose
extra is not installed is a clear error naming the ``pip install`` line.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

from distml.backends.base import Backend
from distml.errors import BackendError, did_you_mean


@dataclass(frozen=True)
class BackendEntry:
    module: str
    cls: str
    extra: str | None


REGISTRY: dict[str, BackendEntry] = {
    "local": BackendEntry("distml.backends.local", "LocalBackend", None),
    "dask": BackendEntry("distml.backends.dask", "DaskBackend", "dask"),
    "spark": BackendEntry("distml.backends.spark.backend", "SparkBackend", "spark"),
}

_LOCAL = re.compile(r"^local(?:\[(\*|\d+)\])?$")
_SCHEMES = {"dask": "dask", "tcp": "dask", "tls": "dask", "spark": "spark", "k8s": "spark"}


def parse_backend(name: str) -> tuple[str, dict[str, Any]]:
    """``(registry key, options)`` for a backend name or URL."""
    text = name.strip()
    match = _LOCAL.match(text)
    if match:
        threads = match.group(1)
        if threads is None or threads == "*":
            return "local", {"threads": None}
        if int(threads) < 1:
            raise BackendError(f"backend '{name}': thread count must be >= 1")
        return "local", {"threads": int(threads)}
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme not in _SCHEMES:
            raise BackendError(
                f"backend '{name}': unknown URL scheme '{scheme}://' "
                "(expected dask://, tcp://, tls://, spark:// or k8s://)"
            )
        key = _SCHEMES[scheme]
        return key, {"address": text} if key == "dask" else {"master": text}
    if text == "yarn":
        return "spark", {"master": "yarn"}
    if text in REGISTRY:
        return text, {}
    raise BackendError(
        f"unknown backend '{name}'{did_you_mean(text, REGISTRY)}; "
        "expected local, local[N], dask, dask://HOST:PORT, spark, spark://HOST:PORT, yarn or k8s://URL"
    )


def get_backend(name: str = "local", **options: Any) -> Backend:
    """Create (not start) the backend for ``name`` with engine ``options``."""
    key, parsed = parse_backend(name)
    entry = REGISTRY[key]
    try:
        module = importlib.import_module(entry.module)
    except ModuleNotFoundError as exc:
        if exc.name == entry.module:
            raise BackendError(
                f"the {key} backend is not available in this version of distml"
            ) from None
        raise BackendError(
            f'the {key} backend needs {exc.name}: pip install "distml[{entry.extra}]"'
        ) from None
    cls = getattr(module, entry.cls)
    merged = {k: v for k, v in {**parsed, **options}.items() if v is not None}
    try:
        return cls(**merged)
    except TypeError as exc:
        raise BackendError(f"backend '{name}': invalid option ({exc})") from None
