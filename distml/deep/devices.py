"""TensorFlow's process-wide set-up: a quiet import and the MirroredStrategy devices.

Both are settled once per process, before TensorFlow initialises its runtime:
log levels are read when it is imported, and logical CPU devices can only be
declared before the first operation runs. On a CPU-only machine the CPU is split
into several logical devices so the multi-device path is exercised everywhere.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from distml.errors import BackendError, SpecError

log = logging.getLogger(__name__)

DEFAULT_CPU_DEVICES = 2


def import_tensorflow(verbose: bool = False, keras_without_sklearn: bool = False) -> ModuleType:
    """``tensorflow`` (and ``keras``), imported without start-up noise unless ``verbose``.

    TensorFlow prints oneDNN and CPU-feature notices straight to file descriptor 2
    while it loads, whatever ``TF_CPP_MIN_LOG_LEVEL`` says; they are captured and
    dropped (and shown if the import fails). Later C++ logs below ERROR are
    silenced through ``TF_CPP_MIN_LOG_LEVEL`` unless the caller set it.

    The import is what every Keras process pays first (7.3 s here), so Python's cyclic
    garbage collector is paused while it runs — it otherwise walks the growing heap
    again and again — and what was imported is then frozen out of later collections
    (:func:`gc.freeze`): 5.9 s (5.2 s with the ``tf`` extra's ``ml_dtypes<0.7``).
    ``keras_without_sklearn`` (for processes of distml's own that never use
    ``keras.wrappers``, such as a gang's workers) keeps Keras from importing
    scikit-learn for its optional wrappers: another ~1 s and 58 MB less at peak;
    scikit-learn itself stays importable afterwards (docs/benchmarks.md).
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if verbose:
        return _import(keras_without_sklearn)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _fd2_captured() as captured:
        try:
            tf = _import(keras_without_sklearn)
        except BaseException:
            sys.stderr.write(captured())
            raise
    tf.get_logger().setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def select_devices(requested: int | None = None) -> list[str]:
    """The devices to mirror over: all GPUs (or the first ``requested``), else logical CPUs.

    Without GPUs the CPU is split into ``requested`` logical devices
    (default :data:`DEFAULT_CPU_DEVICES`). That must happen before TensorFlow
    initialises; if it already has with a different count, the job needs a
    fresh process and this says so.
    """
    if requested is not None and requested < 1:
        raise SpecError(f"train.devices must be >= 1, got {requested}")
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if requested is not None and requested > len(gpus):
            raise SpecError(f"train.devices={requested}, but this machine has {len(gpus)} GPU(s)")
        names = [d.name for d in tf.config.list_logical_devices("GPU")]
        return names[: requested or len(names)]
    count = requested or DEFAULT_CPU_DEVICES
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:  # the runtime is already initialised in this process
        existing = [d.name for d in tf.config.list_logical_devices("CPU")]
        if requested is not None and len(existing) != requested:
            raise BackendError(
                f"TensorFlow is already initialised in this process with {len(existing)} "
                f"CPU device(s); train.devices={requested} must be set before it starts: "
                "run the job in a fresh process (distml run)"
            ) from None
        if len(existing) != count:
            log.warning(
                "TensorFlow is already initialised with %d CPU device(s); using them", len(existing)
            )
        return existing
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def mirrored_strategy(devices: list[str]) -> Any:
    """A ``tf.distribute.MirroredStrategy`` over ``devices`` (one replica each)."""
    tf = import_tensorflow()
    return tf.distribute.MirroredStrategy(devices=devices)


def describe(devices: list[str]) -> str:
    """``"MirroredStrategy on 2 CPU devices"`` — for metrics.json and the console."""
    kinds = sorted({name.split(":")[-2].upper() for name in devices})
    return f"MirroredStrategy on {len(devices)} {'/'.join(kinds)} device(s)"


def _import(keras_without_sklearn: bool = False) -> ModuleType:
    hide_sklearn = keras_without_sklearn and "sklearn" not in sys.modules
    collecting = gc.isenabled()
    gc.disable()
    if hide_sklearn:
        sys.modules["sklearn"] = None  # type: ignore[assignment]  # "import sklearn" fails
    try:
        tf = importlib.import_module("tensorflow")
        importlib.import_module("keras")  # Keras too, with the collector paused
    except ImportError as exc:
        raise BackendError(
            f'TensorFlow is not installed ({exc}): pip install "distml[tf]"'
        ) from None
    finally:
        if hide_sklearn and sys.modules.get("sklearn", 0) is None:
            del sys.modules["sklearn"]
        if collecting:
            gc.enable()
    gc.freeze()
    return tf


@contextlib.contextmanager
def _fd2_captured() -> Iterator[Any]:
    """Send file descriptor 2 (C and Python stderr) to a temporary file for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)

        def captured() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace")

        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
