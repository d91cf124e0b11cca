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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distml.errors import DistmlError, SpecError, did_you_mean
from distml.models import model_class, model_types


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
    seed: int = 0
    classes: int = 2
    centers: int = 5


class DataSpec(_Strict):
    train: str
    test: str | None = None
    label: str | None = None
    features: list[str] | None = None
    filters: list[Any] | None = None
    generate: GenerateSpec | None = None


class SplitSpec(_Strict):
    test_size: float = 0.2
    seed: int = 42


class BackendSpec(_Strict):
    name: str = "local"
    threads: int | None = None
    address: str | None = None
    workers: int | None = None
    master: str | None = None
    memory_limit: str | int | None = None
    dashboard: bool = False
    conf: dict[str, Any] = Field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Engine options for the backend constructor (unset ones omitted)."""
        values = self.model_dump(exclude={"name"}, exclude_defaults=True)
        return values


class OutputSpec(_Strict):
    predictions: bool = True
    plots: bool = True


class JobSpec(_Strict):
    name: str
    model: ModelSpec
    data: DataSpec
    split: SplitSpec | None = None
    backend: BackendSpec = Field(default_factory=BackendSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)

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
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    return parse_spec(
        raw, source=str(path), base_dir=path.parent, overrides=overrides, backend=backend
    )


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
    """The estimator a spec describes (parameters validated)."""
    cls = model_class(spec.model.type)
    estimator = cls(**{**spec.model.params, "solver": spec.model.solver})
    return estimator.validate()


def _validate_model(spec: JobSpec) -> None:
    source = spec.source
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
    try:
        build_estimator(spec)
    except DistmlError as exc:
        raise SpecError(f"{source}: model: {exc}") from None
    if cls.supervised and spec.data.label is None:
        raise SpecError(f"{source}: data.label is required for {spec.model.type}")


def _apply_override(raw: dict[str, Any], item: str, source: str) -> None:
    if "=" not in item:
        raise SpecError(f"--set {item!r}: expected key.path=value")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
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
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "str", "int"))]
    where = ".".join(loc) or "spec"
    if error["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        allowed = _fields_at(loc[:-1])
        suggestion = did_you_mean(loc[-1], allowed)
        scope = f" in {parent}" if parent else ""
        return f"unknown key '{loc[-1]}'{scope}{suggestion}; allowed: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


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
