"""Run the app on uvicorn: the listening socket, one process or ``--workers N``, signals.

The socket is bound here, before anything starts, so a port in use is one line (exit
2) rather than a uvicorn traceback, and ``--port 0`` picks a free port (announced).
SIGTERM and SIGINT stop accepting connections, let the requests in flight finish
(up to ``--timeout`` + 5 s), then return normally: exit code 0. With ``--workers N``
uvicorn's supervisor runs N processes on the one socket, each loading the models
itself (their settings travel in an environment variable); Prometheus metrics are
then summed over the processes through a temporary folder.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from distml.errors import BackendError, ModelError
from distml.serve.app import ServeApp, Settings, create_app
from distml.serve.metrics import MULTIPROCESS_ENV
from distml.serve.registry import ModelSource, Registry, load, resolve

CONFIG_ENV = "DISTML_SERVE_CONFIG"
STARTUP_FAILURE = 3  # uvicorn's supervisor stops every worker when one exits with it


def check_installed() -> None:
    """The serve extra's packages, or one line saying how to install them."""
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            f"distml serve needs the serve extra ({exc.name} is missing): "
            "pip install 'distml[serve]'"
        ) from None


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BackendError(
                f"port {port} on {host} is in use; choose another with --port"
            ) from None
        raise BackendError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def serve_models(
    models: list[str],
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    settings: Settings | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Check the MODEL arguments, bind, and serve until SIGTERM/SIGINT (then return)."""
    check_installed()
    settings = settings or Settings()
    sources = resolve(models)
    preloaded = {s.name: load(s) for s in sources if s.kind == "distml"}  # errors: exit 2
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    announce(
        f"distml serve: {', '.join(s.name for s in sources)} on http://{where}:{bound} "
        f"({workers} worker{'s' if workers > 1 else ''}; MLflow /invocations, "
        "Open Inference Protocol /v2, docs /docs, metrics /metrics)"
    )
    try:
        if workers == 1:
            _run_one(sources, preloaded, settings, sock)
        else:
            _run_workers(sources, settings, sock, workers)
    finally:
        sock.close()


def _config(app: Any, settings: Settings, **extra: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        loop="auto",  # uvloop and httptools when installed (the serve extra brings them)
        http="auto",
        lifespan="on",
        log_level="info" if settings.debug else "warning",
        access_log=settings.debug,
        server_header=False,
        timeout_graceful_shutdown=int(settings.timeout) + 5,
        **extra,
    )


def _run_one(
    sources: list[ModelSource], preloaded: dict[str, Any], settings: Settings, sock: socket.socket
) -> None:
    import uvicorn

    failures: list[str] = []
    server: Any = None

    def on_load_error(message: str) -> None:
        failures.append(message)
        server.should_exit = True

    app = create_app(Registry(sources, preloaded), settings, on_load_error)
    server = uvicorn.Server(_config(app, settings))
    with _signals_end_quietly():
        server.run(sockets=[sock])
    if failures:
        raise ModelError(failures[0])


def _run_workers(
    sources: list[ModelSource], settings: Settings, sock: socket.socket, workers: int
) -> None:
    from uvicorn.supervisors import Multiprocess

    metrics_dir = tempfile.mkdtemp(prefix="distml-serve-metrics-")
    saved = {key: os.environ.get(key) for key in (CONFIG_ENV, MULTIPROCESS_ENV)}
    os.environ[CONFIG_ENV] = json.dumps(
        {"models": [s.as_dict() for s in sources], "settings": asdict(settings)}
    )
    os.environ[MULTIPROCESS_ENV] = metrics_dir
    try:
        config = _config(
            f"{__name__}:app_from_environment", settings, factory=True, workers=workers
        )
        with _signals_end_quietly():
            if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.36
                import uvicorn

                target = uvicorn.Server(config).run
                supervisor = Multiprocess(config, target=target, sockets=[sock])  # type: ignore[call-arg]
            else:
                supervisor = Multiprocess(config, sockets=[sock])
            supervisor.run()
        if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
            raise ModelError("a worker could not load the models (the lines above say which)")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)


def app_from_environment() -> ServeApp:
    """A worker's app (``--workers N``): settings from the parent's environment variable."""
    config = json.loads(os.environ[CONFIG_ENV])
    sources = [ModelSource(m["name"], Path(m["path"]), m["kind"]) for m in config["models"]]

    def on_load_error(message: str) -> None:
        os._exit(STARTUP_FAILURE)  # the supervisor then stops the others

    return create_app(Registry(sources), Settings(**config["settings"]), on_load_error)


@contextlib.contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """While serving, SIGTERM/SIGINT belong to uvicorn (graceful shutdown); it re-raises
    them afterwards to the previous handlers, which here do nothing: a clean exit 0."""
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(signum: int, frame: Any) -> None:
    return None
