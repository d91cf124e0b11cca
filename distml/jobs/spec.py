"""Job specs: YAML → validated :class:`JobSpec`, before anything runs.

Unknown keys (with a did-you-mean), wrong types, unknown model types and model
parameters are all reported as one :class:`~distml.errors.SpecError` line naming
the spec file and the key path. Relative data paths resolve against the spec
file's folder.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from distml.deep.models import ARCHITECTURES as KERAS_ARCHITECTURES
from distml.deep.models import PARAMS as KERAS_PARAMS
from distml.errors import DistmlError, SpecError, did_you_mean
from distml.models import model_class, model_types
from distml.units import parse_bytes

KERAS = "keras"  # model.type of Keras jobs, which distml.deep runs
SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32 - 1]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class ModelSpec(_Strict):
    type: str
    solver: str = "auto"
    params: dict[str, Any] = Field(default_factory=dict)


class GenerateSpec(_Strict):
    """How to create the training data when ``data.train`` does not exist yet."""

    kind: Literal["regression", "classification", "blobs", "example1", "example2", "example3"]
    rows: int = 100_000
    features: int = 20
    partitions: int = 4
    seed: int = Field(0, ge=0, le=SEED_MAX)
    classes: int = 2
    centers: int = 5


class StorageOptionsSpec(_Strict):
    """How to reach an object store (``s3://``, ``gs://``, ``abfs://`` data); unset keys come
    from the environment."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    account_name: str | None = None  # Azure
    account_key: str | None = None  # Azure
    anonymous: bool = False


class DataSpec(_Strict):
    train: str
    test: str | None = None
    label: str | None = None
    features: list[str] | None = None
    filters: list[Any] | None = None
    generate: GenerateSpec | None = None
    storage_options: StorageOptionsSpec | None = None


class SplitSpec(_Strict):
    test_size: float = Field(0.2, gt=0, lt=1)
    seed: int = Field(42, ge=0, le=SEED_MAX)


class BackendSpec(_Strict):
    name: str = "local"
    threads: int | None = Field(None, ge=1)
    address: str | None = None
    workers: int | None = Field(None, ge=1)
    master: str | None = None
    memory_limit: str | int | None = None
    dashboard: bool = False
    driver_memory: str | None = None
    ui: bool = False
    timeout: float | None = Field(None, gt=0)
    executor_timeout: float | None = Field(None, gt=0)
    cache: bool | None = None
    tls: dict[str, str] | None = None
    conf: dict[str, Any] = Field(default_factory=dict)

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit_is_a_size(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            try:
                parse_bytes(value)
            except DistmlError as exc:
                raise ValueError(str(exc).removeprefix("memory_limit: ")) from None
        return value

    def options(self) -> dict[str, Any]:
        """Engine options for the backend constructor (unset ones omitted)."""
        values = self.model_dump(exclude={"name"}, exclude_defaults=True)
        return values


class OutputSpec(_Strict):
    predictions: bool = True
    plots: bool = True


class TrainSpec(_Strict):
    """How a Keras job trains (``model.type: keras`` only)."""

    epochs: int = Field(2, ge=1)
    batch_size: int = Field(32, ge=1)  # per replica; the global batch is this x replicas
    devices: int | None = Field(None, ge=1)  # None: all GPUs, else 2 logical CPU devices
    shuffle_buffer: int = Field(10_000, ge=0)  # rows; 0 reads in file order
    seed: int = 0
    # train.workers only: training steps per call into TensorFlow (Keras's
    # steps_per_execution): fewer Python round trips and host syncs, the same weights
    steps_per_execution: int | None = Field(None, ge=1)  # None: 64
    # MultiWorkerMirroredStrategy: N worker processes started by the backend (distml.deep.launch)
    workers: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1)  # CPU threads per worker; None: the slot's cores
    # backend: local only: each worker runs on its own `threads` cores when they fit
    bind_cpus: bool = True
    max_restarts: int = Field(3, ge=0)  # gangs started again after a lost worker
    collective_timeout: float = Field(300.0, gt=0)  # seconds one all-reduce may wait
    start_timeout: float = Field(120.0, gt=0)  # seconds for every worker to start


class CVSpec(_Strict):
    """k-fold cross-validation: folds chosen by global row number and ``seed``."""

    folds: int = Field(default=5, ge=2)
    seed: int = Field(0, ge=0, le=SEED_MAX)


class SearchSpec(_Strict):
    """Grid or random search over ``model.<param>`` / ``<stage>.<param>`` values."""

    grid: dict[str, list[Any]] | None = None
    random: dict[str, Any] | None = None
    trials: int = Field(default=10, ge=1)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    metric: str | None = None
    parallel: int = Field(default=4, ge=1)


class TrackingSpec(_Strict):
    """Log the finished run to MLflow (:mod:`distml.tracking`); ``uri`` None: MLflow's default."""

    uri: str | None = None
    experiment: str | None = None  # None: the job's name
    run_name: str | None = None  # None: the run folder's name
    tags: dict[str, str] = Field(default_factory=dict)


class InterpretSpec(_Strict):
    """Explanations written into the run folder (:mod:`distml.interpret`)."""

    shap: bool = False
    rows: bool = False  # per-row SHAP values as Parquet in shap/, beside predictions/
    plot_rows: int = Field(1000, ge=1)  # the deterministic sample drawn in the summary plot
    # Keras (kernel SHAP): images explained, and coalitions evaluated per image (shap's
    # nsamples); the cost grows with their product
    samples: int = Field(20, ge=1)
    coalitions: int = Field(1000, ge=10)


class JobSpec(_Strict):
    name: str
    model: ModelSpec
    data: DataSpec
    split: SplitSpec | None = None
    backend: BackendSpec = Field(default_factory=BackendSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    train: TrainSpec | None = None  # Keras jobs; see distml.deep
    preprocess: list[dict[str, dict[str, Any] | None]] | None = None  # [{stage: {params}}]
    cv: CVSpec | None = None
    search: SearchSpec | None = None
    tracking: TrackingSpec | None = None
    interpret: InterpretSpec | None = None

    # set by load_spec, not part of the YAML
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    source: str = Field(default="<spec>", exclude=True)
    split_given: bool = Field(default=False, exclude=True)

    def resolve(self, path: str | None) -> str | None:
        """A data path from the spec, relative paths taken from the spec's folder."""
        if path is None or "://" in path or Path(path).is_absolute():
            return path
        return str((self.base_dir / path).resolve())

    def effective_split(self, task: str) -> SplitSpec | None:
        """The split to use: the spec's, else the default for supervised jobs without test data."""
        if self.data.test is not None:
            return None
        if self.split_given:
            return self.split
        return SplitSpec() if task != "clustering" else None


def load_spec(
    path: str | Path, overrides: list[str] | None = None, backend: str | None = None
) -> JobSpec:
    """Read, override (``key.path=value``) and validate a job spec file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: job spec not found")
    raw = read_yaml(path)
    return parse_spec(
        raw, source=str(path), base_dir=path.parent, overrides=overrides, backend=backend
    )


MAX_SPEC_BYTES = 1 << 20  # a job spec is a page of YAML; 1 MiB is far beyond any real one


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors and aliases (no "billion laughs" expansion)."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(
                f"aliases (*name) are not allowed in job specs (line {event.start_mark.line + 1})"
            )
        return super().compose_node(parent, index)


def read_yaml(path: Path) -> Any:
    """A YAML file's contents: UTF-8, at most 1 MiB, no aliases; errors are one SpecError line."""
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: {size:,} bytes is too large for a job spec (at most 1 MiB)")
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"{path}: invalid YAML ({_short(first, 160)})") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML (nested too deeply)") from None


def _short(value: Any, limit: int = 60) -> str:
    """What the user wrote, cut to a short prefix for error lines."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_spec(
    raw: Any,
    source: str = "<spec>",
    base_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    backend: str | None = None,
) -> JobSpec:
    """Validate a spec given as a mapping (see :func:`load_spec`)."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a job spec must be a mapping of keys, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    if isinstance(raw.get("backend"), str):
        raw["backend"] = {"name": raw["backend"]}
    for item in overrides or []:
        _apply_override(raw, item, source)
    if backend is not None:
        raw["backend"] = {**(raw.get("backend") or {}), "name": backend}
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_describe(exc)}") from None
    spec.base_dir = Path(base_dir or Path.cwd()).resolve()
    spec.source = source
    spec.split_given = "split" in raw
    _validate_model(spec)
    return spec


def build_estimator(spec: JobSpec):  # type: ignore[no-untyped-def]
    """The model a spec describes (distml's own :class:`~distml.models.base.Model`, parameters
    validated): a Pipeline around it with ``preprocess``."""
    cls = model_class(spec.model.type)
    estimator = cls(**{**spec.model.params, "solver": spec.model.solver}).validate()
    if spec.preprocess:
        from distml.preprocess import build_pipeline

        return build_pipeline(spec.preprocess, estimator)
    return estimator


def _validate_search(spec: JobSpec, estimator: Any) -> None:
    from distml.selection.search import TASK_METRICS, candidates, set_candidate

    search, source = spec.search, spec.source
    assert search is not None
    if (search.grid is None) == (search.random is None):
        raise SpecError(f"{source}: search: give exactly one of grid or random")
    task = estimator.task
    if search.metric is not None and search.metric not in TASK_METRICS[task]:
        raise SpecError(
            f"{source}: search.metric: '{search.metric}' is not a {task} metric"
            f"{did_you_mean(search.metric, TASK_METRICS[task])}; "
            f"choose one of {', '.join(TASK_METRICS[task])}"
        )
    where = "grid" if search.grid is not None else "random"
    for key, values in (search.grid or {}).items():
        if not values:
            raise SpecError(
                f"{source}: search.grid.{key}: an empty list of values; give at least one"
            )
    try:
        for params in candidates(search.grid, search.random, min(search.trials, 3), search.seed)[
            :3
        ]:
            set_candidate(estimator, params)
    except DistmlError as exc:
        raise SpecError(f"{source}: search.{where}: {exc}") from None


def _validate_preprocess(spec: JobSpec) -> None:
    from distml.preprocess.stages import make_stage

    if spec.preprocess and spec.model.solver == "mllib":
        raise SpecError(
            f"{spec.source}: model.solver: mllib fits the Parquet data as Spark reads it, not a "
            "preprocessing pipeline's output; use solver native (or sklearn, dask-ml)"
        )
    for i, item in enumerate(spec.preprocess or []):
        if len(item) != 1:
            raise SpecError(
                f"{spec.source}: preprocess[{i}]: each step is one stage, like "
                f"{{impute: {{strategy: median}}}}; got {sorted(item)}"
            )
        ((name, params),) = item.items()
        try:
            make_stage(name, dict(params or {}))
        except DistmlError as exc:
            raise SpecError(f"{spec.source}: preprocess[{i}]: {exc}") from None


def _validate_model(spec: JobSpec) -> None:
    source = spec.source
    if spec.model.type == KERAS:
        _validate_keras(spec)
        return
    if spec.train is not None:
        raise SpecError(
            f"{source}: train: only Keras jobs (model.type: {KERAS}) have a train section"
        )
    if spec.model.type not in model_types():
        raise SpecError(
            f"{source}: model.type: unknown model type '{spec.model.type}'"
            f"{did_you_mean(spec.model.type, model_types())}; choose one of {', '.join(model_types())}"
        )
    cls = model_class(spec.model.type)
    allowed = [p for p in cls().get_params() if p != "solver"]
    for key in spec.model.params:
        if key not in allowed:
            raise SpecError(
                f"{source}: model.params: unknown parameter '{key}' for {spec.model.type}"
                f"{did_you_mean(key, allowed)}; parameters: {', '.join(allowed)}"
            )
    _validate_preprocess(spec)
    try:
        estimator = build_estimator(spec)
    except DistmlError as exc:
        raise SpecError(f"{source}: model: {exc}") from None
    if spec.search is not None:
        _validate_search(spec, estimator)
    if cls.supervised and spec.data.label is None:
        raise SpecError(f"{source}: data.label is required for {spec.model.type}")


def _validate_keras(spec: JobSpec) -> None:
    """Keras jobs: MirroredStrategy on this machine, Parquet train and test folders."""
    source = spec.source
    if spec.model.solver not in ("auto", "mirrored"):
        raise SpecError(
            f"{source}: model.solver: Keras jobs train with 'mirrored' (or 'auto'), "
            f"got '{spec.model.solver}'"
        )
    for key, value in spec.model.params.items():
        if key not in KERAS_PARAMS:
            raise SpecError(
                f"{source}: model.params: unknown parameter '{key}' for {KERAS}"
                f"{did_you_mean(key, KERAS_PARAMS)}; parameters: {', '.join(KERAS_PARAMS)}"
            )
        if key == "architecture" and value not in KERAS_ARCHITECTURES:
            raise SpecError(
                f"{source}: model.params.architecture: unknown architecture '{value}'"
                f"{did_you_mean(value, KERAS_ARCHITECTURES)}; "
                f"choose one of {', '.join(KERAS_ARCHITECTURES)}"
            )
        if key == "learning_rate" and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            raise SpecError(
                f"{source}: model.params.learning_rate must be a positive number, got {value!r}"
            )
    workers = spec.train.workers if spec.train is not None else None
    if spec.interpret is not None and spec.interpret.shap and workers:
        raise SpecError(
            f"{source}: interpret.shap: not available for Keras jobs on several workers; "
            "explain the run folder afterwards with `distml explain RUN --data TEST`"
        )
    if workers is None and not spec.backend.name.startswith("local"):
        raise SpecError(
            f"{source}: backend: Keras jobs run on the local backend (MirroredStrategy over "
            f"this machine's devices) unless train.workers is set (N worker processes with "
            f"MultiWorkerMirroredStrategy, started by '{spec.backend.name}'), got no train.workers"
        )
    if workers is None and spec.train is not None and spec.train.steps_per_execution is not None:
        raise SpecError(
            f"{source}: train.steps_per_execution is for train.workers jobs (their own training "
            "loop); Keras 3.15's fit fails with it under MirroredStrategy (one process)"
        )
    if workers is not None and spec.train is not None and spec.train.devices is not None:
        raise SpecError(
            f"{source}: train.devices is for one process (MirroredStrategy); with "
            "train.workers each worker uses one device (a GPU if it has one, else its CPU)"
        )
    data = spec.data
    for key, value in (
        ("generate", data.generate),
        ("filters", data.filters),
        ("split", spec.split),
    ):
        if value is not None:
            where = key if key == "split" else f"data.{key}"
            raise SpecError(f"{source}: {where}: not supported for Keras jobs")
    if data.test is None:
        raise SpecError(
            f"{source}: data.test is required for Keras jobs (`distml data mnist` writes train/ and test/)"
        )
    if data.label is None:
        raise SpecError(f"{source}: data.label is required for Keras jobs")
    if data.features is not None and len(data.features) != 1:
        raise SpecError(
            f"{source}: data.features: Keras jobs read one image column (e.g. [pixels]), "
            f"got {data.features}"
        )


def _apply_override(raw: dict[str, Any], item: str, source: str) -> None:
    if "=" not in item:
        raise SpecError(f"--set {item!r}: expected key.path=value")
    key, text = item.split("=", 1)
    try:
        value = yaml.load(text, Loader=_NoAliasLoader) if text != "" else ""  # noqa: S506
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    if parts[:2] == ["backend", "conf"] and len(parts) > 3:  # Spark settings have dots in them
        parts = [*parts[:2], ".".join(parts[2:])]
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise SpecError(f"--set {key}: '{where}' in {source} is not a mapping")
        node = child
    node[parts[-1]] = value


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    # pydantic's union tags ("str", "int", "function-...") are not keys ("interpret" is)
    loc = [
        str(p)
        for p in error["loc"]
        if str(p) not in ("str", "int") and not str(p).startswith("function-")
    ]
    where = ".".join(loc) or "spec"
    if error["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        allowed = _fields_at(loc[:-1])
        suggestion = did_you_mean(loc[-1], allowed)
        scope = f" in {parent}" if parent else ""
        return f"unknown key '{loc[-1]}'{scope}{suggestion}; allowed: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    if error["type"] == "value_error":
        return f"{where}: {error['msg'].removeprefix('Value error, ')}"
    return f"{where}: {error['msg']} (got {_short(repr(error.get('input')))})"


def _fields_at(loc: list[str]) -> list[str]:
    model: Any = JobSpec
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            return []
    return [name for name, f in model.model_fields.items() if not f.exclude]
