"""Checks shared by the penalised linear models: one-line errors naming the parameter."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from distml.errors import ModelError, did_you_mean


def _describe(choices: Sequence[str | None]) -> str:
    names = [f"'{c}'" for c in choices if c is not None]
    if None in choices:
        names.append("null")
    return ", ".join(names[:-1]) + " or " + names[-1]


def check_penalty(penalty: Any, choices: Sequence[str | None]) -> None:
    """``penalty`` is one of ``choices`` (``None`` meaning no penalty)."""
    if penalty is None and None in choices:
        return
    if not isinstance(penalty, str) or penalty not in choices:
        names = [c for c in choices if c]
        hint = ""
        if isinstance(penalty, str):
            lower = penalty.lower()
            hint = f" (did you mean '{lower}'?)" if lower in names else did_you_mean(penalty, names)
        raise ModelError(f"penalty must be {_describe(choices)}, got {penalty!r}{hint}")


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float,
    strict: bool = False,
    integer: bool = False,
    allow_inf: bool = False,
) -> None:
    """``value`` is a real (an integer if ``integer``) ``>= minimum`` (``>`` if ``strict``)."""
    kind = numbers.Integral if integer else numbers.Real
    relation = ">" if strict else ">="
    what = "an integer" if integer else "a number"
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        number = float(value)
        ok = not math.isnan(number) and (allow_inf or not math.isinf(number))
        ok = ok and (number > minimum if strict else number >= minimum)
    if not ok:
        bound = int(minimum) if integer or float(minimum).is_integer() else minimum
        raise ModelError(f"{name} must be {what} {relation} {bound}, got {value!r}")


def check_l1_ratio(value: Any) -> None:
    """``l1_ratio`` is a number in ``[0, 1]``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0.0 <= float(value) <= 1.0:
        raise ModelError(f"l1_ratio must be a number between 0 and 1, got {value!r}")
