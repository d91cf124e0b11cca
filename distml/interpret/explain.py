"""SHAP explanations of a fitted model, written into a folder (a run folder, or
``distml explain``'s output).

Linear and logistic regression: exact interventional SHAP values of every row, on the
workers (:mod:`distml.algorithms.shapley`: one pass for the background mean, one for the
summary, one more for per-row Parquet files when asked). k-means: shap's kernel
explainer on a deterministic sample (:mod:`distml.interpret.sampled`). A pipeline is
explained in the space its model sees: the assembled features after preprocessing.

Files: ``shap_summary.json`` (method, output explained, feature space, background, base
value, mean |SHAP| per feature and output), ``shap_summary.csv``, ``shap_summary.png``
(beeswarm of a deterministic sample; bars per output for several outputs) and, with
``per_row``, ``shap/part-NNNNN.parquet`` (``row`` = global row number, ``shap_<feature>``).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from distml.algorithms import metrics as metrics_module
from distml.algorithms import shapley
from distml.algorithms.engine import Engine
from distml.backends.base import Backend, model_input
from distml.errors import ModelError
from distml.interpret import plot, sampled
from distml.preprocess import Pipeline

log = logging.getLogger(__name__)

SUMMARY_JSON = "shap_summary.json"
SUMMARY_CSV = "shap_summary.csv"
SUMMARY_PNG = "shap_summary.png"
ROWS_DIR = "shap"
SEED = 0


def write_shap(
    backend: Backend,
    model: Any,
    rows: Engine,
    out: Path,
    background: Engine | None = None,
    background_from: str = "training rows",
    per_row: bool = False,
    plot_rows: int = 1000,
    plots_too: bool = True,
) -> dict[str, Any]:
    """Explain ``model`` on ``rows`` into ``out`` (background: ``background``'s rows, else
    ``rows`` themselves) and return what ``shap_summary.json`` holds."""
    if not (hasattr(model, "kernel") and hasattr(model, "task")):
        raise ModelError("SHAP explanations are for distml's linear, logistic and k-means models")
    backend.progress.start("explaining (SHAP)")
    bg_engine = background if background is not None else rows
    with model_input(model, rows) as (fitted, explained), model_input(model, bg_engine) as (_, bg):
        names = _feature_names(fitted)
        if hasattr(fitted, "coef_"):
            info, sample_phi, sample_X = _linear(
                fitted, explained, bg, names, out, per_row, plot_rows, plots_too
            )
        elif hasattr(fitted, "cluster_centers_"):
            info, sample_phi, sample_X = _kmeans(fitted, explained, bg, names)
            if per_row:
                info["per_row_note"] = (
                    "per-row SHAP files are written for linear models only; k-means is "
                    "explained on a sample"
                )
        else:
            raise ModelError(f"SHAP explanations are not available for {fitted.model_type}")
    info["background"] = {
        "rows": info.pop("_background_rows"),
        "from": background_from if background is not None else "the explained rows",
    }
    info["space"] = (
        "assembled features (after preprocessing: the model's own inputs)"
        if isinstance(model, Pipeline)
        else "input features"
    )
    _write_tables(info, out)
    if plots_too and len(sample_X):
        info["plot"] = {"file": SUMMARY_PNG, "sample_rows": int(len(sample_X)), "seed": SEED}
        mean_abs = np.asarray(info["_mean_abs"])
        if mean_abs.ndim == 1:
            order = np.argsort(-mean_abs, kind="stable")
            plot.beeswarm(names, sample_phi, sample_X, order, out / SUMMARY_PNG, _title(info))
        else:
            plot.bars(names, mean_abs, info["outputs"], out / SUMMARY_PNG, _title(info))
    info.pop("_mean_abs")
    (out / SUMMARY_JSON).write_text(json.dumps(_finite(info), indent=2, allow_nan=False))
    backend.progress.finish()
    return info


def _linear(
    fitted: Any,
    explained: Engine,
    bg: Engine,
    names: list[str],
    out: Path,
    per_row: bool,
    plot_rows: int,
    plots_too: bool,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    mean, bg_rows = shapley.background_mean(bg)
    explainer = shapley.LinearShap.from_kernel(fitted.kernel(), mean)
    outputs, output = _outputs(fitted, explainer)
    columns = shapley.column_names(names, outputs)
    folder = str(out / ROWS_DIR) if per_row else None
    n, mean_abs, mean_phi, files = shapley.explain(explained, explainer, folder, columns)
    info: dict[str, Any] = {
        "method": "linear",
        "exact": True,
        "explainer": "shap.LinearExplainer(feature_perturbation='interventional'): "
        "phi_ij = w_j (x_ij - mean_j), computed on the workers",
        "model": fitted.model_type,
        "output": output,
        "outputs": outputs,
        "explained_rows": n,
        "base_value": explainer.base_value,
        "background_mean": mean,
        "features": names,
        "rows": _rows(names, outputs, mean_abs, mean_phi),
        "_mean_abs": mean_abs,
        "_background_rows": bg_rows,
    }
    if per_row:
        info["per_row"] = {"folder": ROWS_DIR, "files": len(files), "columns": ["row", *columns]}
    if not plots_too:
        return info, np.zeros((0, len(names))), np.zeros((0, len(names)))
    drawn = metrics_module.sample(explained, plot_rows, SEED)
    return info, explainer.values(drawn.X), drawn.X


def _kmeans(
    fitted: Any, explained: Engine, bg: Engine, names: list[str]
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    drawn = metrics_module.sample(explained, sampled.EXPLAIN_ROWS, SEED)
    background = metrics_module.sample(bg, sampled.BACKGROUND_ROWS, SEED)
    centres = np.asarray(fitted.cluster_centers_, dtype=np.float64)
    values, base = sampled.kmeans_shap(centres, drawn.X, background.X)
    outputs = [str(k) for k in range(len(centres))]
    mean_abs = np.abs(values).mean(axis=0) if len(values) else np.zeros((len(names), len(centres)))
    mean_phi = values.mean(axis=0) if len(values) else np.zeros_like(mean_abs)
    info: dict[str, Any] = {
        "method": "kernel",
        "exact": len(names) <= 11,  # every feature subset enumerated
        "explainer": "shap.KernelExplainer on deterministic samples (seed 0): "
        f"{len(drawn)} explained rows, {len(background)} background rows",
        "model": fitted.model_type,
        "output": "-squared distance to each cluster centre (one output per cluster)",
        "outputs": outputs,
        "explained_rows": int(len(drawn)),
        "base_value": base,
        "features": names,
        "rows": _rows(names, outputs, mean_abs, mean_phi),
        "_mean_abs": mean_abs,
        "_background_rows": int(len(background)),
    }
    return info, values, drawn.X


def _outputs(fitted: Any, explainer: shapley.LinearShap) -> tuple[list[str] | None, str]:
    if fitted.task == "regression":
        return None, "prediction"
    classes = [str(c) for c in np.asarray(fitted.classes_).tolist()]
    if explainer.outputs == 1:
        return None, f"log-odds of class {classes[-1]} (the decision function)"
    return classes, "log-odds score of each class (the multinomial decision function)"


def _rows(
    names: list[str], outputs: list[str] | None, mean_abs: np.ndarray, mean_phi: np.ndarray
) -> list[dict[str, Any]]:
    if outputs is None:
        return [
            {"feature": f, "mean_abs_shap": float(a), "mean_shap": float(m)}
            for f, a, m in zip(names, mean_abs, mean_phi, strict=True)
        ]
    return [
        {
            "feature": f,
            "output": o,
            "mean_abs_shap": float(mean_abs[j, k]),
            "mean_shap": float(mean_phi[j, k]),
        }
        for k, o in enumerate(outputs)
        for j, f in enumerate(names)
    ]


def _write_tables(info: dict[str, Any], out: Path) -> None:
    rows = info["rows"]
    with (out / SUMMARY_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _title(info: dict[str, Any]) -> str:
    kind = "exact linear SHAP" if info["method"] == "linear" else "kernel SHAP (sampled rows)"
    return f"{kind}: {info['output']}"


def _feature_names(model: Any) -> list[str]:
    if hasattr(model, "feature_names_in_"):
        return [str(n) for n in model.feature_names_in_]
    return [f"x{i}" for i in range(int(model.n_features_in_))]


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
