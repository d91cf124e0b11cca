"""The ASGI app: a scoring fast path in front of a FastAPI app.

``POST /invocations`` and ``POST /v2/models/{name}/infer`` are answered by
:meth:`ServeApp.score` directly — body read with its limit, parsed with the standard
library's ``json``, scored with the model's numpy kernel — because FastAPI's routing
and response machinery cost as much as the whole prediction of a small model (a
FastAPI route measured about half the requests/s of the bare path, docs/benchmarks.md).
Everything else (health, metadata, ``/metrics``, ``/version``, OpenAPI docs at
``/docs``, which also describe the two scoring routes) is a FastAPI route.

Small bodies of numpy models are scored on the event loop (microseconds); large
ones and Keras models in a thread pool, so the loop keeps answering health checks.
``--max-concurrency`` counts scoring requests in flight (503 above it, before the
body is read); ``--timeout`` bounds reading, parsing and scoring (504 past it; work
already running in a thread finishes in the background, its slot held until then).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from distml.serve import mlflow_protocol, v2_protocol
from distml.serve.errors import (
    NotFound,
    PayloadTooLarge,
    RequestError,
    TimedOut,
    Unavailable,
    UnsupportedMediaType,
)
from distml.serve.metrics import ServeMetrics, endpoint_of
from distml.serve.registry import Registry
from distml.serve.served import ServedModel

log = logging.getLogger("distml.serve")

INLINE_BYTES = 32 * 1024  # numpy models score smaller bodies on the event loop
#: How long a stopping server waits for a model still loading (a Keras model: seconds).
LOAD_WAIT_SECONDS = 120.0
SCORING = ("/invocations", "/v2/models/{name}/infer")


@dataclass(frozen=True)
class Settings:
    """What ``distml serve``'s options set for each server process."""

    timeout: float = 60.0
    max_body_bytes: int = 64 * 2**20
    max_concurrency: int = 256
    debug: bool = False
    threads: int = 4


class ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


class ServeApp:
    """The ASGI callable uvicorn runs (one per server process)."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        on_load_error: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = ServeMetrics()
        self.active = 0  # scoring requests admitted and not finished (threads included)
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="distml-score")
        self.on_load_error = on_load_error
        self.api = build_api(self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan: FastAPI's, which starts the model loading
            await self.api(scope, receive, send)
            return
        endpoint = endpoint_of(scope["path"])
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            if endpoint in SCORING and scope["method"] == "POST":
                status = await self.score(scope, receive, send, endpoint == SCORING[0], started)
            else:
                await self.api(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe(endpoint, status, time.perf_counter() - started)

    # -- scoring -----------------------------------------------------------------------------
    async def score(
        self, scope: dict[str, Any], receive: Any, send: Any, mlflow: bool, started: float
    ) -> int:
        """Answer one scoring request; returns the status sent."""
        protocol: Any = mlflow_protocol if mlflow else v2_protocol
        admitted = False
        try:
            model = self.registry.get(_model_name(scope, mlflow))
            headers = dict(scope["headers"])
            parse = _parser(mlflow, headers.get(b"content-type", b"").decode("latin-1"))
            if self.active >= self.settings.max_concurrency:
                raise Unavailable(
                    f"the server is busy: {self.active} scoring requests in flight "
                    f"(--max-concurrency {self.settings.max_concurrency}); retry later"
                )
            self.active += 1
            admitted = True
            timeout = self.settings.timeout
            try:
                body = await asyncio.wait_for(self._body(receive, headers), timeout)
            except asyncio.TimeoutError:
                raise TimedOut(f"the body did not arrive within --timeout {timeout:g} s") from None
            job = functools.partial(_work, model, parse, body, mlflow)
            if len(body) < INLINE_BYTES and not model.slow:
                reply, rows = job(None)
                if time.perf_counter() - started > timeout:
                    raise TimedOut(f"scoring took longer than --timeout {timeout:g} s")
            else:
                cancel = threading.Event()
                future = asyncio.get_running_loop().run_in_executor(self.pool, job, cancel)
                admitted = False  # the slot is freed when the work ends, even after a 504
                future.add_done_callback(self._release)
                remaining = max(timeout - (time.perf_counter() - started), 0.0)
                try:
                    reply, rows = await asyncio.wait_for(asyncio.shield(future), remaining)
                except asyncio.TimeoutError:
                    cancel.set()
                    raise TimedOut(f"scoring took longer than --timeout {timeout:g} s") from None
            self.metrics.rows.labels(model.name).inc(rows)
            await _respond(send, 200, reply)
            return 200
        except RequestError as error:
            extra = [(b"retry-after", b"1")] if isinstance(error, Unavailable) else []
            await _respond(send, error.status, protocol.error_body(error), extra)
            return error.status
        except ClientGone:
            return 499
        except Exception as exc:  # noqa: BLE001 - a fault in distml: 500, details in the log
            log.error("internal error scoring a request: %s: %s", type(exc).__name__, exc)
            message = f"internal error in distml ({type(exc).__name__}); see the server log"
            if self.settings.debug:
                log.error("%s", traceback.format_exc())
                message += "\n" + traceback.format_exc()
            await _respond(send, 500, protocol.error_body(RequestError(message)))
            return 500
        finally:
            if admitted:
                self.active -= 1

    def _release(self, future: asyncio.Future[Any]) -> None:
        self.active -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a 504's late failure is not logged as unhandled

    async def _body(self, receive: Any, headers: dict[bytes, bytes]) -> bytes:
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"the body has {int(declared):,} bytes; this server takes at most {limit:,} "
                "(--max-body-mb)"
            )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"the body is over {limit:,} bytes, the most this server takes (--max-body-mb)"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _model_name(scope: dict[str, Any], mlflow: bool) -> str | None:
    if mlflow:  # /invocations scores the first model, or ?model=NAME
        names = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("model")
        return names[0] if names else None
    return unquote(scope["path"].split("/")[3])


def _parser(mlflow: bool, content_type: str) -> Callable[[bytes], Any]:
    mime = content_type.split(";")[0].strip().lower()
    if mlflow:
        if mime == "application/json":
            return mlflow_protocol.parse_json
        if mime == "text/csv":
            return mlflow_protocol.parse_csv
        raise UnsupportedMediaType(
            f"Content-Type '{mime[:60]}' is not supported; send application/json or text/csv"
            if mime
            else "the Content-Type header is missing; send application/json or text/csv"
        )
    if mime in ("application/json", ""):
        return v2_protocol.parse_infer
    raise UnsupportedMediaType(
        f"Content-Type '{mime[:60]}' is not supported; send application/json"
    )


def _work(
    model: ServedModel,
    parse: Callable[[bytes], Any],
    body: bytes,
    mlflow: bool,
    cancel: threading.Event | None,
) -> tuple[bytes, int]:
    """Parse and score one body (on the loop or in a thread): ``(reply, rows)``."""
    parsed = parse(body)
    if cancel is not None and cancel.is_set():
        raise TimedOut("cancelled after --timeout")
    if mlflow:
        batch, method = parsed
        model.check_method(method, "params.method")
        return mlflow_protocol.reply(model.score(batch, method)), batch.n_rows
    batch, outputs, request_id = parsed
    for name in outputs:
        model.check_method(name, "outputs")
    results = {name: model.score(batch, name) for name in outputs}
    return v2_protocol.reply(model, results, request_id), batch.n_rows


async def _respond(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


# -- everything else: FastAPI ----------------------------------------------------------------
MLFLOW_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "examples": {
                    "dataframe_split": {
                        "value": {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}
                    },
                    "dataframe_records": {"value": {"dataframe_records": [{"x": 1.0}]}},
                    "instances": {"value": {"instances": [[1.0]]}},
                    "inputs": {"value": {"inputs": {"x": [1.0]}}},
                    "predict_proba": {
                        "value": {
                            "dataframe_split": {"columns": ["x"], "data": [[1.0]]},
                            "params": {"method": "predict_proba"},
                        }
                    },
                },
            },
            "text/csv": {"schema": {"type": "string"}, "example": "x\n1.0\n"},
        },
    }
}
V2_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "id": "42",
                    "inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}],
                    "outputs": [{"name": "predict"}],
                },
            }
        },
    }
}


def build_api(app: ServeApp) -> Any:
    """The FastAPI app: health, metadata, metrics, version, docs."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse, Response

    from distml import __version__

    registry = app.registry

    @asynccontextmanager
    async def lifespan(api: Any) -> Any:
        registry.start_loading(app.on_load_error)
        yield
        app.pool.shutdown(wait=False)
        # a server stopped while a model loads lets the load end first: an exit under way
        # would fail TensorFlow's import (it still registers exit handlers) and then crash
        # in the interpreter's teardown (exit -11, seen); loading is seconds, the wait bounded
        if not registry.wait(LOAD_WAIT_SECONDS) and registry.error is None:
            log.warning(
                "a model was still loading %g s after the server began to stop; "
                "stopping without it",
                LOAD_WAIT_SECONDS,
            )

    api = FastAPI(
        title="distml serve",
        version=__version__,
        debug=app.settings.debug,
        lifespan=lifespan,
        description="MLflow's scoring protocol and the Open Inference Protocol (v2) "
        f"for {', '.join(registry.names)}.",
    )

    def error(exc: RequestError) -> Any:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    def ready_or_503() -> Any:
        return PlainTextResponse("\n", status_code=200 if registry.ready else 503)

    api.get("/ping", summary="MLflow health check: 200 when every model is loaded")(ready_or_503)
    api.get("/health", summary="MLflow health check (same as /ping)")(ready_or_503)

    @api.get("/version", summary="The distml version serving", response_class=PlainTextResponse)
    def version() -> str:
        return __version__

    @api.get("/v2", summary="Server metadata (Open Inference Protocol)")
    def server_metadata() -> dict[str, Any]:
        return {"name": "distml", "version": __version__, "extensions": []}

    @api.get("/v2/health/live", summary="Liveness: the process answers")
    def live() -> dict[str, bool]:
        return {"live": True}

    @api.get("/v2/health/ready", summary="Readiness: 503 until every model is loaded")
    def ready() -> Any:
        return JSONResponse({"ready": registry.ready}, status_code=200 if registry.ready else 503)

    @api.get("/v2/models/{name}", summary="A model's inputs and outputs")
    def model_metadata(name: str) -> Any:
        try:
            return v2_protocol.metadata(registry.get(name))
        except RequestError as exc:
            return error(exc)

    @api.get("/v2/models/{name}/ready", summary="Whether a model is loaded")
    def model_ready(name: str) -> Any:
        if name not in registry.names:
            return error(NotFound(f"no model named '{name[:60]}'"))
        loaded = name in registry.models
        return JSONResponse({"name": name, "ready": loaded}, status_code=200 if loaded else 503)

    @api.get("/metrics", summary="Prometheus metrics")
    def metrics() -> Any:
        text, content_type = app.metrics.render()
        return Response(text, media_type=content_type)

    @api.post("/invocations", summary="Score rows (MLflow's protocol)", openapi_extra=MLFLOW_BODY)
    def invocations() -> Any:
        """Answered by the scoring fast path (``ServeApp.score``); described here for /docs.

        Query ``?model=NAME`` picks a model other than the first."""
        raise AssertionError("unreachable: ServeApp.score answers POST /invocations")

    @api.post(
        "/v2/models/{name}/infer",
        summary="Score tensors (Open Inference Protocol)",
        openapi_extra=V2_BODY,
    )
    def infer(name: str) -> Any:
        """Answered by the scoring fast path (``ServeApp.score``); described here for /docs."""
        raise AssertionError("unreachable: ServeApp.score answers POST /v2/models/{name}/infer")

    return api


def create_app(
    registry: Registry, settings: Settings, on_load_error: Callable[[str], None] | None = None
) -> ServeApp:
    """The ASGI app serving ``registry``'s models."""
    return ServeApp(registry, settings, on_load_error)
