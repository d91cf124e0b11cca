"""A published run folder read as what MLflow records: params, metrics, per-epoch history,
search candidates and the model's kind. Reads files only (``metrics.json``,
``model/model.json``, ``search.csv``), so a run can be logged long after it finished."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distml.errors import DataError
from distml.report import load_run

#: MLflow's longest parameter value.
MAX_PARAM = 6000
#: Top-level metrics.json entries that describe the run (params), not measure it.
_PARAM_KEYS = (
    "job", "task", "backend", "solver", "rows_train", "rows_test", "strategy", "replicas",
    "architecture", "epochs", "batch_size", "global_batch_size", "learning_rate",
)  # fmt: skip


@dataclass
class Candidate:
    """One row of ``search.csv``: its parameters and scores."""

    params: dict[str, str]
    metrics: dict[str, float]


@dataclass
class RunRecord:
    folder: Path
    summary: dict[str, Any]
    params: dict[str, str]
    metrics: dict[str, float]
    history: dict[str, list[float]] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    model_kind: str | None = None  # "distml" (model/), "keras" (model.keras) or None


def read_run(folder: str | Path) -> RunRecord:
    """The record of a run folder; a :class:`DataError` naming it when it is not one."""
    folder = Path(folder).resolve()
    summary = load_run(folder)
    params = {k: _text(summary[k]) for k in _PARAM_KEYS if summary.get(k) is not None}
    model_kind = None
    if (folder / "model" / "model.json").is_file():
        model_kind = "distml"
        params.update(_model_params(folder / "model" / "model.json"))
    elif (folder / "model.keras").is_file():
        model_kind = "keras"
        params["model.type"] = "keras"
    metrics: dict[str, float] = {}
    for key in ("read_seconds", "fit_seconds", "samples_per_second"):
        _add_metric(metrics, key, summary.get(key))
    _flatten(metrics, "", summary.get("metrics") or {})
    cv = summary.get("cv")
    if isinstance(cv, dict):
        for key in ("metric", "folds", "seed", "candidates"):
            if cv.get(key) is not None:
                params[f"cv.{key}"] = _text(cv[key])
        for key, value in (cv.get("best_params") or {}).items():
            params[f"best.{key}"] = _text(value)
        _add_metric(metrics, "cv.best_score", cv.get("best_score"))
        _add_metric(metrics, "cv.best_std", cv.get("best_std"))
    history = {
        _key(name): [float(v) for v in values if _number(v)]
        for name, values in (summary.get("history") or {}).items()
        if isinstance(values, list)
    }
    return RunRecord(
        folder,
        summary,
        {_key(k): v[:MAX_PARAM] for k, v in params.items()},
        metrics,
        {k: v for k, v in history.items() if v},
        _candidates(folder / "search.csv"),
        model_kind,
    )


def _model_params(path: Path) -> dict[str, str]:
    """``model.type``, ``model.<param>``, ``data.*`` and a pipeline's ``preprocess``."""
    try:
        outer = json.loads(path.read_text())
        meta = outer
        params: dict[str, str] = {}
        if outer.get("type") == "pipeline":
            params["preprocess"] = _text(
                [{s["stage"]: s.get("params", {})} for s in outer.get("stages", [])]
            )
            params["features_out"] = _text(outer.get("features_out"))
            meta = json.loads((path.parent / "estimator" / "model.json").read_text())
        params["model.type"] = str(meta["type"])
        for name, value in (meta.get("params") or {}).items():
            params[f"model.{name}"] = _text(value)
        provenance = outer.get("provenance") or meta.get("provenance") or {}
        for key in ("train", "label"):
            if provenance.get(key) is not None:
                params[f"data.{key}"] = _text(provenance[key])
        if outer.get("features") is not None:
            params["data.features"] = _text(outer["features"])
        return params
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: invalid model metadata ({exc})") from None


def _candidates(path: Path) -> list[Candidate]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return []
    header = rows[0]
    first = next((i for i, h in enumerate(header) if h.startswith("split0_")), len(header))
    out = []
    for row in rows[1:]:
        params = {_key(h): v for h, v in zip(header[:first], row[:first], strict=False) if v != ""}
        metrics: dict[str, float] = {}
        for h, v in zip(header[first:], row[first:], strict=False):
            try:
                _add_metric(metrics, h, float(v))
            except ValueError:
                continue
        out.append(Candidate(params, metrics))
    return out


def _flatten(out: dict[str, float], prefix: str, value: Any) -> None:
    """Numbers at any depth of ``metrics`` become ``a.b.c`` metrics (lists are skipped:
    the confusion matrix and curves travel as artifacts)."""
    if isinstance(value, dict):
        for key, child in value.items():
            _flatten(out, f"{prefix}{key}.", child)
        return
    _add_metric(out, prefix.rstrip("."), value)


def _add_metric(out: dict[str, float], name: str, value: Any) -> None:
    if _number(value) and math.isfinite(float(value)):
        out[_key(name)] = float(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _key(name: str) -> str:
    """A name MLflow accepts (letters, digits, ``_ - . / space``)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name)) or "_"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
