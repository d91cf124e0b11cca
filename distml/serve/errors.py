"""Request errors: each class is one HTTP status, its message names the culprit.

Messages name a column, key, input or dtype and never quote the request's data
(mlflow#16537); the app turns them into a JSON error body in the protocol's own
format. Anything else raised while scoring is a fault in distml: status 500.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status code."""

    status = 400
    code = "BAD_REQUEST"  # MLflow's error_code spelling

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RequestError):
    """Malformed JSON or CSV, wrong keys, missing or extra columns, dtypes, shapes."""


class NotFound(RequestError):
    status = 404
    code = "RESOURCE_DOES_NOT_EXIST"


class PayloadTooLarge(RequestError):
    status = 413
    code = "REQUEST_LIMIT_EXCEEDED"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "BAD_REQUEST"


class Unavailable(RequestError):
    """Over ``--max-concurrency``, or the models are still loading."""

    status = 503
    code = "TEMPORARILY_UNAVAILABLE"


class TimedOut(RequestError):
    status = 504
    code = "DEADLINE_EXCEEDED"


def type_name(value: object) -> str:
    """The JSON type of a value, for messages that must not quote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
