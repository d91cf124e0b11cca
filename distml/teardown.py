"""Leaving a process while a thread works inside TensorFlow.

Once Python 3.11 finalizes, a daemon thread that comes back from C into Python is ended
by ``pthread_exit``. Its unwinding through TensorFlow's ``noexcept`` C++ frames calls
``std::terminate``: the process aborts ("terminate called after throwing an instance of
..."; exit -6, seen in CI when a tf.data iterator was being freed). Two threads can be
inside TensorFlow when a process ends: the daemon thread that frees tf.data iterators
(``distml/deep/iterators.py``) and ``distml serve``'s model loader, which a stopping
server lets finish (an exit under way fails TensorFlow's import, which registers exit
handlers, and the half-imported library then crashed the teardown: exit -11). Each marks
that work with :func:`native_work`, and then:

- a normal exit waits for the work in progress, at most :data:`EXIT_WAIT_SECONDS`;
- a command whose work is done and written calls :func:`exit_without_waiting`: the exit
  handlers run (logging's, TensorFlow's removal of its temporary files), then
  ``os._exit`` skips the interpreter's teardown, and with it the wait.

Standard library only: the CLI calls it at the end of every command.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

#: The longest a normal exit waits: above tf.data's longest autotuning period (60 s).
EXIT_WAIT_SECONDS = 75.0

_CHANGED = threading.Condition()
_WORKING: dict[threading.Thread, int] = {}  # the threads inside native_work(), how deep
_LEAVING_NOW = False


@contextmanager
def native_work() -> Iterator[None]:
    """Marks work that may be inside TensorFlow's C++ while it lasts, on this thread."""
    thread = threading.current_thread()
    with _CHANGED:
        _WORKING[thread] = _WORKING.get(thread, 0) + 1
    try:
        yield
    finally:
        with _CHANGED:
            _WORKING[thread] -= 1
            if not _WORKING[thread]:
                del _WORKING[thread]
            _CHANGED.notify_all()


def in_progress() -> bool:
    """Whether a thread is inside :func:`native_work` now."""
    return bool(_WORKING)


def working(thread: threading.Thread | None = None) -> bool:
    """Whether ``thread`` (by default the calling one) is inside :func:`native_work`."""
    with _CHANGED:
        return (thread or threading.current_thread()) in _WORKING


def leaving_now() -> bool:
    """Whether :func:`exit_now` is running the exit handlers (they need not wait)."""
    return _LEAVING_NOW


def exit_without_waiting(code: int) -> None:
    """End the process now with ``code`` if native work is in progress (otherwise return).
    The other threads a normal exit waits for are waited for first: idle executor threads
    are told to stop (as at a normal exit), busy ones and other non-daemon threads joined.
    Ctrl-C meanwhile leaves with 130."""
    if not in_progress():
        return
    try:
        executors = sys.modules.get("concurrent.futures.thread")
        if executors is not None:
            executors._python_exit()  # noqa: SLF001 - what a normal exit runs first
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon and not working(thread):
                thread.join()
    except KeyboardInterrupt:
        exit_now(130)
    if in_progress():
        exit_now(code)


def leave_at_once(code: int) -> NoReturn:
    """End the process with ``code`` now, output flushed: for a Ctrl-C while an exit waits
    (the teardown must not be reached with native work in progress)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_now(code: int) -> NoReturn:
    """Run the exit handlers, then end the process with ``code`` without the interpreter's
    teardown and without waiting for native work in progress."""
    global _LEAVING_NOW
    _LEAVING_NOW = True
    atexit._run_exitfuncs()  # noqa: SLF001 - the handlers a normal exit runs
    leave_at_once(code)


@atexit.register
def _wait_for_native_work() -> None:
    """A normal exit: daemon threads come back from TensorFlow before the teardown (a
    non-daemon thread was waited for already). Registered at import, before the handlers
    of the modules that use it: it runs last."""
    if _LEAVING_NOW:
        return
    try:
        with _CHANGED:
            done = _CHANGED.wait_for(lambda: not _WORKING, EXIT_WAIT_SECONDS)
    except KeyboardInterrupt:  # Ctrl-C while waiting: leave now, not abort in the teardown
        leave_at_once(130)
    if not done:  # never seen: the exit goes on, and the work most likely ends with it
        print(
            f"distml: a thread was still inside TensorFlow {EXIT_WAIT_SECONDS:.0f} s after "
            "exit began; exiting without waiting for it",
            file=sys.stderr,
            flush=True,
        )
