"""The ``distml`` command group: error handling, signals and logging shared by every command.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback unless
``--debug``); 1 an internal error; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from typing import Any

import click
from rich.console import Console

from distml.errors import DistmlError

console = Console()
err_console = Console(stderr=True)

#: The longest error line printed: messages never echo more than this of the user's input.
MAX_ERROR_CHARS = 600


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so cleanup (``finally``) runs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def one_line(message: object, limit: int = MAX_ERROR_CHARS) -> str:
    """A message as one line of at most ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DistmlGroup(click.Group):
    """Turns :class:`DistmlError` into one line and exit code 2; other errors into exit code 1;
    Ctrl-C into 130 and SIGTERM into 143, after the commands' own cleanup has run."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except SystemExit as done:
            if done.code is None or isinstance(done.code, int):
                _exit_without_waiting_for_tensorflow(done.code or 0)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except DistmlError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was published", err=True)
            sys.exit(130)
        except Terminated:
            click.echo("terminated: nothing was published", err=True)
            sys.exit(143)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except RecursionError:
            click.echo("error: the input nests too deeply to be read", err=True)
            sys.exit(2)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if debug:
                traceback.print_exc()
            click.echo(
                f"internal error: {type(exc).__name__}: {one_line(exc)} (rerun with --debug)",
                err=True,
            )
            sys.exit(1)


def _exit_without_waiting_for_tensorflow(code: int) -> None:
    """At a command's end, its output written or its error printed: if a thread is inside
    TensorFlow (freeing a Keras run's last tf.data iterator, up to a minute; loading a model
    for a ``distml serve`` that was forced to stop), exit now with ``code`` instead of
    waiting for it (``distml/teardown.py``)."""
    from distml import teardown

    teardown.exit_without_waiting(code)


def _engine_warnings_only(record: logging.LogRecord) -> bool:
    """Dask's, distributed's and py4j's records reach the user from WARNING up."""
    return record.levelno >= logging.WARNING or not record.name.startswith(
        ("distributed", "dask", "py4j")
    )


@click.group(cls=DistmlGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="distml")
def main(debug: bool) -> None:
    """distml: train linear, logistic and k-means models on local, Dask or Spark engines."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not debug:  # the engines set their loggers to INFO when imported: filter at our handler
        for handler in logging.getLogger().handlers:
            handler.addFilter(_engine_warnings_only)


# shared options ----------------------------------------------------------------------------------
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace the output if it is a folder distml wrote."
)
