"""tf.data iterators of a distributed dataset, released off the training thread.

Dropping a ``tf.distribute`` dataset iterator can block the dropping thread for up to a
minute: its C++ destructor waits for a tf.data autotuning thread that sleeps through
its whole optimisation period (which doubles up to 60 s) instead of waking when the
iterator is cancelled. Seen with TensorFlow 2.20 on ``MirroredStrategy`` (with or
without fetching to devices, with or without ``autotune.enabled = False`` on the
dataset) and ``MultiWorkerMirroredStrategy``; a plain ``iter(dataset)`` does not do it.
Keras drops its validation iterator at the start of every epoch's validation and its
training iterator when ``fit`` returns, so an epoch or a run's end could stall 2–60 s
(``docs/keras_multiworker.md``).

:func:`released_in_background` makes every iterator of a distributed dataset hand
itself, when its last reference goes, to one daemon thread that drops it there: the
wait no longer holds the GIL or the caller (measured: the main thread runs at full speed
while a drop waits 28 s). Whatever is still waiting to be dropped when the process
exits is left to the operating system, so an exit does not wait for it.

A drop is native work (:mod:`distml.teardown`): the one in progress at exit is waited
for, or skipped by a command that leaves with :func:`distml.teardown.exit_without_waiting`;
a drop that ended during the interpreter's teardown would abort the process.
"""

from __future__ import annotations

import atexit
import ctypes
import queue
import sys
import threading
from typing import Any

from distml import teardown

_PENDING: queue.SimpleQueue[Any] = queue.SimpleQueue()
_LEFT_AT_EXIT: list[Any] = []
_LOCK = threading.Lock()
#: Guards the exit's hand-over; re-entrant, as a finalizer can run on a thread holding it.
_EXIT_LOCK = threading.RLock()
_THREAD: threading.Thread | None = None
_CLASSES: dict[tuple[type, tuple[str, ...]], type] = {}
_EXITING = False


def released_in_background(distributed_dataset: Any) -> Any:
    """``distributed_dataset`` itself, whose iterators are dropped by the background thread."""
    _start_thread()  # now, never from a finalizer: at exit a new thread would never start
    dataset_class = type(distributed_dataset)
    if getattr(dataset_class, "_distml_released", False):
        return distributed_dataset
    distributed_dataset.__class__ = _subclass(
        dataset_class,
        {
            "__iter__": lambda self: _handed_over(dataset_class.__iter__(self)),
            "_distml_released": True,
        },
    )
    return distributed_dataset


def _handed_over(iterator: Any) -> Any:
    if hasattr(type(iterator), "__del__"):  # a finalizer of its own would never run: leave it
        return iterator
    iterator.__class__ = _subclass(type(iterator), {"__del__": _resurrect_into_queue})
    return iterator


def _subclass(base: type, members: dict[str, Any]) -> type:
    """One subclass of ``base`` per base and purpose, with the same name (as TF shows it)."""
    key = (base, tuple(sorted(members)))
    with _LOCK:
        made = _CLASSES.get(key)
        if made is None:
            made = type(base.__name__, (base,), dict(members))
            _CLASSES[key] = made
    return made


def _resurrect_into_queue(iterator: Any) -> None:
    """``__del__``: the last reference went; keep the object alive and let the thread drop it
    (Python runs a finalizer once, so the thread's drop frees it for good). From the
    interpreter's exit on (an iterator in a traceback's frames is collected then), it is
    kept for good instead."""
    with _EXIT_LOCK:  # never queued behind the exit's sentinel, where nothing would drop it
        if _EXITING or sys.is_finalizing():
            _LEFT_AT_EXIT.append(iterator)
        else:
            _PENDING.put(iterator)


def _start_thread() -> None:
    global _THREAD
    with _LOCK:
        if _THREAD is None:
            _THREAD = threading.Thread(
                target=_drop_forever, name="distml-iterator-drops", daemon=True
            )
            _THREAD.start()


def _drop_forever() -> None:
    while True:
        iterator = _PENDING.get()
        if iterator is None:
            return
        with teardown.native_work():
            del iterator  # the destructor's wait happens here, without the GIL


@atexit.register
def _leave_the_rest() -> None:
    """At exit the queue would be emptied on the main thread (each drop a wait): keep what
    is left referenced for good instead (one reference more than the interpreter's
    teardown drops); the process's end frees the memory. Then wait for the thread to end
    after its drop in progress, if any (an item it has just taken is not yet marked as
    native work) — unless the process is leaving now."""
    global _EXITING
    with _EXIT_LOCK:
        _EXITING = True
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_LEFT_AT_EXIT))
        while True:
            try:
                _LEFT_AT_EXIT.append(_PENDING.get_nowait())
            except queue.Empty:
                break
        _PENDING.put(None)
    with _LOCK:  # not inside _EXIT_LOCK: _start_thread holds _LOCK and may run a finalizer
        thread = _THREAD  # started, if set: _start_thread starts it before letting go
    if thread is None or thread is threading.current_thread() or teardown.leaving_now():
        return
    try:
        thread.join(teardown.EXIT_WAIT_SECONDS)
    except KeyboardInterrupt:  # Ctrl-C while waiting: leave now, not abort in the teardown
        teardown.leave_at_once(130)
