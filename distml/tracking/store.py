"""Where runs are tracked: the MLflow URI, reaching it within a bounded time.

Without a URI, MLflow's own choice holds: ``$MLFLOW_TRACKING_URI``, else its default
local store in the working directory (``sqlite:///mlflow.db`` since MLflow 3.7; ``./mlruns``
when that folder already holds file-store runs). A server URL is probed (``/health``)
before anything is logged, and MLflow's HTTP retries are bounded while logging, so a
server that is down fails in seconds, not after MLflow's minutes of back-off.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distml.errors import DistmlError

#: Seconds to wait for a tracking server to answer its health check.
PROBE_TIMEOUT = 10.0
#: MLflow's HTTP settings while distml logs (each kept when the user set it).
_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no progress bars among distml's lines
}


class TrackingError(DistmlError):
    """MLflow is missing, or the tracking store is unreachable or refuses the run."""


def require_mlflow() -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise TrackingError(
            'MLflow tracking needs the mlflow extra: pip install "distml[mlflow]"'
        ) from None


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use: ``uri``; else ``$MLFLOW_TRACKING_URI``; else MLflow's
    default. Local stores become absolute, so the record names one place."""
    if not uri:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    if not uri:
        try:  # MLflow's default, without setting it process-wide
            from mlflow.tracking._tracking_service.utils import _get_default_tracking_uri

            uri = _get_default_tracking_uri()
        except ImportError:  # older MLflow: the URI it reports
            import mlflow

            uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    if "://" not in uri and not uri.startswith(("sqlite:", "databricks", "file:")):
        return Path(uri).resolve().as_uri()  # a folder: MLflow's file store
    return uri


def check_reachable(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise :class:`TrackingError` naming ``uri`` when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            if response.status != 200:
                raise TrackingError(
                    f"MLflow tracking server {uri}: /health answered {response.status}"
                )
    except urllib.error.HTTPError as exc:
        raise TrackingError(f"MLflow tracking server {uri}: /health answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}) within {timeout:g}s"
        ) from None


@contextmanager
def bounded_http() -> Iterator[None]:
    """MLflow's HTTP retries and timeouts bounded for the block (user settings kept), and
    its INFO chatter (database set-up, example validation) kept below the user's view."""
    saved = {key: os.environ.get(key) for key in _HTTP}
    for key, value in _HTTP.items():
        os.environ.setdefault(key, value)
    mlflow_log = logging.getLogger("mlflow")
    level = mlflow_log.level
    if not mlflow_log.isEnabledFor(logging.DEBUG):
        mlflow_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        mlflow_log.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to ``uri`` for the block, then restored
    (``log_model`` only speaks through the fluent API)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous, env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # also exports MLFLOW_TRACKING_URI
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
