"""One exception hierarchy for every fault a user can fix.

Errors are raised where the fault is found and name the culprit (file, column,
key, address). The CLI prints ``str(error)`` on one line and exits with code 2;
anything that is not a :class:`DistmlError` is an internal error (exit code 1).

Bad values are also ``ValueError`` (and wrong types ``TypeError``), the classes
scikit-learn raises for the same inputs, so code written against scikit-learn's
estimators catches distml's errors unchanged.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DistmlError(Exception):
    """Base class: bad input the user can correct (exit code 2)."""


class SpecError(DistmlError, ValueError):
    """A job spec or a command-line override is invalid."""


class DataError(DistmlError, ValueError):
    """A dataset is missing, unreadable or does not fit the job (names the file/column)."""


class ModelError(DistmlError, ValueError):
    """Invalid estimator parameters, an unfitted model, or input that does not match it."""


class NotFittedError(ModelError, AttributeError):
    """The estimator is used before ``fit`` (scikit-learn's NotFittedError is one too)."""


class InputTypeError(DataError, TypeError):
    """Input of a kind distml does not take (sparse matrices, objects that are not numbers)."""


class BackendError(DistmlError):
    """An engine is unknown, not installed, or unreachable (names the backend/address)."""


class DistmlWarning(UserWarning):
    """Base class of distml's warnings (the test suite turns them into errors)."""


class ConvergenceWarning(DistmlWarning):
    """An iterative solver stopped at ``max_iter`` before meeting its tolerance."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix for an unknown name, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
