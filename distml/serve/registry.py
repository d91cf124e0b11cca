"""MODEL arguments → named models, loaded once per server process.

A MODEL is a run folder (``distml run --out``: ``model/`` or ``model.keras``), a model
folder (``model.json`` + ``arrays.npz``), or a ``.keras`` file, optionally named
``name=PATH``; by default a model is named by its job (``metrics.json`` of its run),
else by its folder. :func:`resolve` checks every argument before a server starts;
:class:`Registry` loads what is not loaded yet in a background thread, so the
server is live at once and ready (``/v2/health/ready``) when every model is loaded.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distml import teardown
from distml.errors import DistmlError, ModelError
from distml.serve.errors import NotFound, Unavailable
from distml.serve.served import EstimatorModel, KerasModel, PipelineModel, ServedModel

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class ModelSource:
    """Where a served model comes from: ``kind`` is ``distml`` (a model folder) or ``keras``."""

    name: str
    path: Path
    kind: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "path": str(self.path), "kind": self.kind}


def resolve(args: list[str]) -> list[ModelSource]:
    """Every MODEL argument checked (the path holds a model, names are valid and distinct)."""
    if not args:
        raise ModelError("name at least one model to serve (a run folder or name=DIR)")
    sources = [_resolve_one(arg) for arg in args]
    seen: dict[str, ModelSource] = {}
    for source in sources:
        if source.name in seen:
            raise ModelError(
                f"two models are named '{source.name}' ({seen[source.name].path} and "
                f"{source.path}); name them with NAME=DIR"
            )
        seen[source.name] = source
    return sources


def _resolve_one(arg: str) -> ModelSource:
    name: str | None = None
    target = arg
    head, sep, rest = arg.partition("=")
    if sep and rest and not Path(arg).exists():
        if not NAME.match(head):
            raise ModelError(
                f"{arg}: the model name '{head[:60]}' may hold only letters, digits, '.', '_' "
                "and '-'"
            )
        name, target = head, rest
    path = Path(target).expanduser()
    if not path.exists():
        raise ModelError(
            f"{target}: no such model (a run folder, its model/ folder or model.keras)"
        )
    run_dir: Path | None = None
    if path.is_dir() and (path / "model.json").is_file():
        kind, model_path, run_dir = "distml", path, path.parent
    elif path.is_dir() and (path / "model" / "model.json").is_file():
        kind, model_path, run_dir = "distml", path / "model", path
    elif path.is_dir() and (path / "model.keras").is_file():
        kind, model_path, run_dir = "keras", path / "model.keras", path
    elif path.is_file() and path.suffix == ".keras":
        kind, model_path, run_dir = "keras", path, path.parent
    else:
        raise ModelError(
            f"{target}: not a saved model (no model.json, model/model.json or model.keras in it)"
        )
    if kind == "keras":
        _check_keras_file(model_path)
    if name is None:
        name = _job_name(run_dir) or (path.stem if path.is_file() else path.resolve().name)
        if not NAME.match(name):
            raise ModelError(f"{target}: '{name[:60]}' is not a usable model name; use NAME=DIR")
    return ModelSource(name, model_path.resolve(), kind)


def _job_name(run_dir: Path | None) -> str | None:
    if run_dir is None:
        return None
    try:
        job = json.loads((run_dir / "metrics.json").read_text()).get("job")
    except (OSError, ValueError, AttributeError):
        return None
    return job if isinstance(job, str) and job else None


def _check_keras_file(path: Path) -> None:
    """A ``.keras`` file is a zip holding ``config.json`` (checked without TensorFlow)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        raise ModelError(f"{path}: not a Keras model file (not a .keras zip archive)") from None
    if "config.json" not in names:
        raise ModelError(f"{path}: not a Keras model file (config.json missing)")


def load(source: ModelSource) -> ServedModel:
    """Load one model (distml errors name the file)."""
    if source.kind == "keras":
        return KerasModel(source.name, source.path)
    from distml.loading import load_model

    model = load_model(source.path, scikit_learn=False)  # served by its kernel
    if hasattr(model, "input_kinds_"):
        return PipelineModel(source.name, source.path, model)
    return EstimatorModel(source.name, source.path, model)


class Registry:
    """The served models by name; the first is ``/invocations``' default."""

    def __init__(self, sources: list[ModelSource], loaded: dict[str, ServedModel] | None = None):
        self.sources = list(sources)
        self.names = [s.name for s in sources]
        self.default = self.names[0]
        self.models: dict[str, ServedModel] = dict(loaded or {})
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return len(self.models) == len(self.sources)

    def start_loading(self, on_error: Callable[[str], None] | None = None) -> None:
        """Load the models not loaded yet in a background thread (once)."""
        if self.ready or self._thread is not None:
            return

        def run() -> None:
            for source in self.sources:
                if source.name in self.models:
                    continue
                try:
                    with teardown.native_work():  # TensorFlow's, for a Keras model
                        self.models[source.name] = load(source)
                except Exception as exc:  # noqa: BLE001 - reported, the server stops
                    kind = "" if isinstance(exc, DistmlError) else f"{type(exc).__name__}: "
                    self.error = f"model '{source.name}' failed to load: {kind}{exc}"
                    log.error(self.error)
                    if on_error is not None:
                        on_error(self.error)
                    return

        # not a daemon: nothing tears the interpreter down under it (a daemon thread inside
        # TensorFlow then aborts the process); a stopping server waits for it (app.py)
        self._thread = threading.Thread(target=run, name="distml-serve-load")
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the loading to end (at most ``timeout`` s); whether every model loaded."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready

    def get(self, name: str | None = None) -> ServedModel:
        """The model named ``name`` (default: the first): 404 unknown, 503 still loading."""
        name = self.default if name is None else name
        model = self.models.get(name)
        if model is not None:
            return model
        if name not in self.names:
            raise NotFound(
                f"no model named '{name[:60]}'; this server serves {', '.join(self.names[:20])}"
            )
        raise Unavailable(f"model '{name}' is still loading")
