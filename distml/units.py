"""Byte sizes as users write them (``512MB``, ``2GiB``): parsed in specs and backends alike."""

from __future__ import annotations

import re

from distml.errors import BackendError

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(value: int | str) -> int:
    """``512MB``, ``2GiB`` or a plain number of bytes."""
    if isinstance(value, bool):
        raise BackendError(f"memory_limit: expected a size like 512MB or 2GiB, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise BackendError(f"memory_limit: {value} is not a positive size")
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise BackendError(
            f"memory_limit: cannot parse {str(value)[:40]!r} (use e.g. 512MB or 2GiB)"
        )
    number = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not 0 < number < 2**63:
        raise BackendError(f"memory_limit: {str(value)[:40]!r} is not a positive size")
    return int(number)
