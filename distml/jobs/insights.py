"""What a run folder says about its model beyond the metrics: interpretation tables and
the plots that go with them.

:func:`write_insights` adds to a run folder ``importance.json`` (coefficients with
feature names and standardised coefficients; permutation importance with its sample
size, repeats and seed), ``coefficients.csv``, ``permutation_importance.csv`` and the
PNGs ``roc_curve.png`` (classification), ``residuals.png`` (regression),
``coefficients.png`` and ``permutation_importance.png``.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from distml.algorithms import importance
from distml.algorithms import metrics as metrics_module
from distml.algorithms.engine import Engine
from distml.backends.base import Backend, model_input
from distml.jobs import plots

log = logging.getLogger(__name__)

#: Rows (of the evaluation data) permutation importance is computed on.
IMPORTANCE_SAMPLE = 10_000
#: Shuffles per feature.
IMPORTANCE_REPEATS = 5
#: Rows drawn in scatter plots (the first of the importance sample: a uniform sample too).
PLOT_ROWS = 2000
SEED = 0


def write_insights(
    backend: Backend,
    model: Any,
    evaluation: Engine,
    out: Path,
    train: Engine | None = None,
    plots_too: bool = True,
) -> list[Path]:
    """Write the interpretation tables (and, with ``plots_too``, their plots) into ``out``.

    ``model`` is the fitted estimator or pipeline, ``evaluation`` the rows it was scored
    on; feature standard deviations come from ``train`` (the evaluation rows without it).
    Returns the PNGs written.
    """
    backend.progress.start("interpreting")
    curves: list[Any] = []
    with model_input(model, evaluation) as (fitted, rows):
        drawn = metrics_module.sample(rows, IMPORTANCE_SAMPLE, SEED)
        if plots_too and hasattr(fitted.kernel(), "predict_proba"):
            curves = metrics_module.roc_curves(rows, fitted.kernel())
    names = _feature_names(fitted)
    info: dict[str, Any] = {"features": names}
    if hasattr(fitted, "coef_"):
        with model_input(model, train if train is not None else evaluation) as (_, rows):
            std = importance.feature_std(rows)
            std_rows = rows.n_rows
        info["coefficients"] = {
            "intercept": np.asarray(fitted.intercept_, dtype=float).tolist(),
            "std_from": "training rows" if train is not None else "evaluation rows",
            "std_rows": int(std_rows),
            "rows": importance.coefficient_rows(fitted.kernel(), names, std),
        }
        _write_csv(out / "coefficients.csv", info["coefficients"]["rows"])
    if len(drawn) >= 2:  # scores (R² first) need two rows
        permutation = importance.permutation_importance(
            fitted.kernel(), drawn.X, drawn.y, names, IMPORTANCE_REPEATS, SEED
        )
        info["permutation_importance"] = permutation
        _write_csv(out / "permutation_importance.csv", permutation["rows"])
    text = json.dumps(_finite_or_null(info), indent=2, allow_nan=False)
    (out / "importance.json").write_text(text)
    pngs = _plots(fitted, drawn, curves, info, out) if plots_too else []
    backend.progress.finish()
    return pngs


def _plots(
    fitted: Any,
    drawn: metrics_module.RowSample,
    curves: list[Any],
    info: dict[str, Any],
    out: Path,
) -> list[Path]:
    pngs = []
    if curves:
        pngs.append(plots.roc_curve(curves, out / "roc_curve.png"))
    if fitted.task == "regression" and len(drawn):
        X, y = drawn.X[:PLOT_ROWS], drawn.y[:PLOT_ROWS].astype(float)
        fitted_values = fitted.kernel().predict(X)
        pngs.append(plots.residuals(fitted_values, y - fitted_values, out / "residuals.png"))
    if "coefficients" in info:
        rows = info["coefficients"]["rows"]
        names = info["features"]
        classes = list(dict.fromkeys(str(r["class"]) for r in rows)) if "class" in rows[0] else []
        values = np.array([r["standardized_coef"] for r in rows])
        values = values.reshape(max(1, len(classes)), len(names)).T
        title = "Standardised coefficients (coefficient × feature std)"
        if len(classes) == 1:
            title = f"Standardised coefficients, class {classes[0]}"
        pngs.append(
            plots.bar_chart(
                names,
                values,
                out / "coefficients.png",
                title,
                "change for one standard deviation of the feature",
                groups=classes if len(classes) > 1 else None,
            )
        )
    if "permutation_importance" in info:
        perm = info["permutation_importance"]
        pngs.append(
            plots.bar_chart(
                [r["feature"] for r in perm["rows"]],
                np.array([r["importance_mean"] for r in perm["rows"]]),
                out / "permutation_importance.png",
                f"Permutation importance ({perm['sample_rows']:,} rows × {perm['repeats']})",
                f"drop in {perm['scoring']}",
                errors=np.array([r["importance_std"] for r in perm["rows"]]),
            )
        )
    return pngs


def _feature_names(model: Any) -> list[str]:
    if hasattr(model, "feature_names_in_"):
        return [str(n) for n in model.feature_names_in_]
    return [f"x{i}" for i in range(int(model.n_features_in_))]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["feature"])
        writer.writeheader()
        writer.writerows(rows)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
