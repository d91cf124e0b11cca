"""Predict job specs: a job spec with ``predict:`` where a training job has ``model:``.

```yaml
name: score-today
predict:
  model: ../runs/example1      # a run folder, a model/ folder or a model.keras file
  data: ../data/today          # partitioned Parquet to score (folder, file or URL)
  columns: all                 # all | none | [a, b]
  output: predict              # predict | proba | both
  filters: null                # partition filters, as in data.filters
backend: dask                  # the same backend block as a training job
```

``distml submit SPEC --cluster URL --out DIR`` (and ``--detach``) runs it on a
cluster; relative paths resolve against the spec's folder, as in training specs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from distml.errors import SpecError, did_you_mean
from distml.jobs.spec import BackendSpec, _apply_override, _Strict, read_yaml


class PredictBlock(_Strict):
    model: str
    data: str
    columns: str | list[str] = "all"
    output: Literal["predict", "proba", "both"] = "predict"
    filters: list[Any] | None = None


class PredictJobSpec(_Strict):
    name: str
    predict: PredictBlock
    backend: BackendSpec = Field(default_factory=BackendSpec)

    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    source: str = Field(default="<spec>", exclude=True)

    def resolve(self, path: str) -> str:
        """A path from the spec, relative ones taken from the spec's folder."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str((self.base_dir / path).resolve())


def is_predict_spec(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` is a predict job (a mapping with ``predict:``)."""
    try:
        raw = read_yaml(Path(path))
    except SpecError:
        return False
    return isinstance(raw, dict) and "predict" in raw and "model" not in raw


def load_predict_spec(
    path: str | Path, overrides: list[str] | None = None, backend: str | None = None
) -> PredictJobSpec:
    """Read, override (``key.path=value``) and validate a predict job spec."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: job spec not found")
    raw = read_yaml(path)
    source = str(path)
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a job spec must be a mapping of keys")
    raw = copy.deepcopy(raw)
    if isinstance(raw.get("backend"), str):
        raw["backend"] = {"name": raw["backend"]}
    for item in overrides or []:
        _apply_override(raw, item, source)
    if backend is not None:
        raw["backend"] = {**(raw.get("backend") or {}), "name": backend}
    try:
        spec = PredictJobSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_describe(exc)}") from None
    spec.base_dir = path.parent.resolve()
    spec.source = source
    return spec


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "str", "int"))]
    where = ".".join(loc) or "spec"
    if error["type"] == "extra_forbidden":
        model: Any = PredictJobSpec
        for part in loc[:-1]:
            annotation = model.model_fields[part].annotation
            model = next(
                (
                    a
                    for a in getattr(annotation, "__args__", (annotation,))
                    if hasattr(a, "model_fields")
                ),
                annotation,
            )
        allowed = [n for n in getattr(model, "model_fields", {}) if n not in ("base_dir", "source")]
        return f"unknown key '{loc[-1]}'{did_you_mean(loc[-1], allowed)}; allowed: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{where}: required"
    return f"{where}: {error['msg']}"
