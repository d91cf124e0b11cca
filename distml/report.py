"""``distml report``: one self-contained HTML page for a run folder.

The page holds the job summary, the metrics (with the per-class report and the
confusion matrix), the interpretation tables (coefficients, permutation
importance), a model-selection table when the run has one, and every PNG of the
folder embedded as a base64 data URI: no scripts, no network, one file to mail.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import time
from pathlib import Path
from typing import Any

from distml.atomic import atomic_file
from distml.errors import DataError

GENERATOR = '<meta name="generator" content="distml">'

#: Captions of the plots distml writes (others are shown under their file name).
CAPTIONS = {
    "predicted_vs_actual.png": "Predicted vs actual",
    "residuals.png": "Residuals vs fitted",
    "confusion_matrix.png": "Confusion matrix",
    "roc_curve.png": "ROC curve",
    "clusters.png": "Clusters",
    "coefficients.png": "Standardised coefficients",
    "permutation_importance.png": "Permutation importance",
    "training_curve.png": "Training curve",
    "shap_summary.png": "SHAP summary",
}
_ORDER = list(CAPTIONS)
_MAX_TABLE_ROWS = 200

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em;
       margin-top: 1.8em; }
p.meta, p.note { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f5f8; } td.name, th.name { text-align: left; }
.figures { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0; border: 1px solid #e4e4e4; padding: 0.5em; background: #fff; }
figure img { max-width: 520px; height: auto; display: block; }
figcaption { text-align: center; color: #444; font-size: 0.9em; margin-top: 0.3em; }
"""


def load_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run folder's ``metrics.json``; a :class:`DataError` naming the path otherwise."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"{path}: no such run folder")
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{path}: not a run folder (metrics.json missing)")
    try:
        summary = json.loads(metrics_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{metrics_path}: not valid JSON ({exc})") from None
    if not isinstance(summary, dict):
        raise DataError(f"{metrics_path}: expected a JSON object")
    return summary


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the run's HTML report (default ``RUN_DIR/report.html``) atomically.

    The default file is replaced when it is a report distml wrote; an explicit ``out``
    that exists is replaced only with ``overwrite``, and only if distml wrote it.
    """
    run = Path(run_dir)
    target = Path(out) if out is not None else run / "report.html"
    page = render_report(run)
    return atomic_file(
        target, page, overwrite=overwrite or out is None, is_own=is_distml_report(target)
    )


def is_distml_report(path: Path) -> bool:
    """True when ``path`` is an HTML page distml wrote (its generator tag says so)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return GENERATOR in handle.read(2048)
    except OSError:
        return False


def render_report(run_dir: str | os.PathLike[str]) -> str:
    """The report of ``run_dir`` as one HTML string."""
    run = Path(run_dir)
    summary = load_run(run)
    insights = _read_json(run / "importance.json")
    title = f"distml report: {summary.get('job', run.name)}"
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Run folder {_e(str(run.resolve()))} · report written '
        f"{_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
        "<h2>Job</h2>",
        _key_values(_job_rows(summary)),
    ]
    metrics = summary.get("metrics")
    if isinstance(metrics, dict):
        body += ["<h2>Metrics</h2>", _key_values(_scalar_rows(metrics))]
        body += _classification_tables(metrics)
    body += _figures(run)
    body += _model_section(summary.get("model"), insights)
    body += _shap_section(_read_json(run / "shap_summary.json"))
    body += _search_section(run)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"{GENERATOR}\n"
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# -- sections ---------------------------------------------------------------------------------
def _job_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (key, value)
        for key, value in summary.items()
        if key not in ("metrics", "model", "history") and _is_small(value)
    ]


def _scalar_rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in metrics.items() if _is_small(v)]


def _classification_tables(metrics: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    report = metrics.get("report")
    if isinstance(report, dict) and report:
        per_class_auc = metrics.get("roc_auc_per_class") or {}
        header = ["class", "precision", "recall", "f1", "support"]
        if per_class_auc:
            header.append("roc_auc (one vs rest)")
        rows = []
        for label, entry in report.items():
            if not isinstance(entry, dict):
                continue
            row = [label, *(entry.get(k) for k in ("precision", "recall", "f1", "support"))]
            if per_class_auc:
                row.append(per_class_auc.get(label))
            rows.append(row)
        support = sum(int(e.get("support", 0)) for e in report.values() if isinstance(e, dict))
        for avg in ("macro", "weighted"):
            if f"f1_{avg}" in metrics:
                row = [
                    f"{avg} avg",
                    *(metrics.get(f"{k}_{avg}") for k in ("precision", "recall", "f1")),
                    support,
                ]
                if per_class_auc:
                    row.append(metrics.get("roc_auc") if avg == "macro" else None)
                rows.append(row)
        parts += ["<h3>Per-class report</h3>", _table(header, rows)]
    confusion = metrics.get("confusion_matrix")
    if isinstance(confusion, dict) and "labels" in confusion and "counts" in confusion:
        labels = [str(v) for v in confusion["labels"]]
        rows = [
            [f"actual {label}", *counts]
            for label, counts in zip(labels, confusion["counts"], strict=False)
        ]
        parts += [
            "<h3>Confusion matrix</h3>",
            _table(["", *(f"predicted {label}" for label in labels)], rows),
        ]
    return parts


def _model_section(model: Any, insights: dict[str, Any] | None) -> list[str]:
    parts: list[str] = []
    if isinstance(model, dict):
        parts += ["<h2>Model</h2>", _key_values([(k, v) for k, v in model.items() if _is_small(v)])]
        centres = model.get("cluster_centers")
        if isinstance(centres, list) and centres:
            names = model.get("features") or [f"x{j}" for j in range(len(centres[0]))]
            rows = [[str(i), *c] for i, c in enumerate(centres)]
            parts += ["<h3>Cluster centres</h3>", _table(["cluster", *names], rows)]
    if not insights:
        return parts
    coefficients = insights.get("coefficients")
    if isinstance(coefficients, dict) and coefficients.get("rows"):
        header, rows = _coefficient_table(coefficients["rows"])
        parts += [
            "<h3>Coefficients</h3>",
            f'<p class="note">standardized_coef = coef × the feature\'s standard deviation '
            f"(from {_fmt(coefficients.get('std_rows'))} {_e(coefficients.get('std_from', ''))});"
            f" intercept {_e(_fmt(coefficients.get('intercept')))}</p>",
            _table(header, rows),
        ]
    permutation = insights.get("permutation_importance")
    if isinstance(permutation, dict) and permutation.get("rows"):
        rows = sorted(permutation["rows"], key=lambda r: -(r.get("importance_mean") or 0.0))
        parts += [
            "<h3>Permutation importance</h3>",
            f'<p class="note">Drop in {_e(permutation.get("scoring"))} when a feature is '
            f"shuffled: {_fmt(permutation.get('sample_rows'))} sampled rows × "
            f"{permutation.get('repeats')} repeats (seed {permutation.get('seed')}); "
            f"baseline {_e(_fmt(permutation.get('baseline')))}</p>",
            _table(
                ["feature", "importance_mean", "importance_std"],
                [
                    [r.get("feature"), r.get("importance_mean"), r.get("importance_std")]
                    for r in rows
                ],
            ),
        ]
    return parts


def _shap_section(info: dict[str, Any] | None) -> list[str]:
    """Mean |SHAP| per feature (and output), largest first, with what was explained."""
    if not info or not isinstance(info.get("rows"), list) or not info["rows"]:
        return []
    background = info.get("background") or {}
    note = (
        f"{_e(info.get('explainer', ''))}. Output explained: {_e(info.get('output', ''))}; "
        f"feature space: {_e(info.get('space', ''))}; {_fmt(info.get('explained_rows'))} rows "
        f"explained against the mean of {_fmt(background.get('rows'))} "
        f"{_e(background.get('from', 'background rows'))}; base value "
        f"{_e(_fmt(info.get('base_value')))}."
    )
    rows = sorted(info["rows"], key=lambda r: -(r.get("mean_abs_shap") or 0.0))
    header = ["feature", *(["output"] if "output" in rows[0] else []), "mean |SHAP|", "mean SHAP"]
    table = [
        [
            r.get("feature"),
            *([r.get("output")] if "output" in r else []),
            r.get("mean_abs_shap"),
            r.get("mean_shap"),
        ]
        for r in rows[:_MAX_TABLE_ROWS]
    ]
    return ["<h2>Explanations (SHAP)</h2>", f'<p class="note">{note}</p>', _table(header, table)]


def _coefficient_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Features as rows; with several classes, ``coef`` and ``standardized_coef`` per class."""
    classes = list(dict.fromkeys(str(r["class"]) for r in rows if "class" in r))
    if len(classes) <= 1:
        header = ["feature", "coef", "std", "standardized_coef"]
        if classes:
            header = ["feature", f"coef (class {classes[0]})", "std", "standardized_coef"]
        return header, [
            [r.get("feature"), r.get("coef"), r.get("std"), r.get("standardized_coef")]
            for r in rows
        ]
    by_feature: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = by_feature.setdefault(str(r.get("feature")), {"std": r.get("std")})
        entry[str(r["class"])] = (r.get("coef"), r.get("standardized_coef"))
    header = ["feature", "std"]
    header += [f"coef {c}" for c in classes] + [f"standardized {c}" for c in classes]
    table = []
    for feature, entry in by_feature.items():
        pairs = [entry.get(c, (None, None)) for c in classes]
        table.append([feature, entry["std"], *(p[0] for p in pairs), *(p[1] for p in pairs)])
    return header, table


def _search_section(run: Path) -> list[str]:
    path = run / "search.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return []
    note = ""
    if len(rows) - 1 > _MAX_TABLE_ROWS:
        note = f'<p class="note">first {_MAX_TABLE_ROWS} of {len(rows) - 1} rows</p>'
    return ["<h2>Model selection</h2>", note, _table(rows[0], rows[1 : _MAX_TABLE_ROWS + 1])]


def _figures(run: Path) -> list[str]:
    pngs = sorted(
        run.glob("*.png"),
        key=lambda p: (_ORDER.index(p.name) if p.name in _ORDER else len(_ORDER), p.name),
    )
    if not pngs:
        return []
    parts = ["<h2>Plots</h2>", '<div class="figures">']
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        caption = CAPTIONS.get(png.name, png.stem.replace("_", " "))
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    return parts


# -- small helpers ----------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    return value if isinstance(value, dict) else None


def _is_small(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    return (
        isinstance(value, list)
        and len(value) <= 20
        and all(v is None or isinstance(v, (str, int, float, bool)) for v in value)
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 1000 else str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _key_values(rows: list[tuple[str, Any]]) -> str:
    return _table(["name", "value"], [[k, v] for k, v in rows], names=2)


def _table(header: list[Any], rows: list[list[Any]], names: int = 1) -> str:
    """An HTML table; the first ``names`` columns are left-aligned text."""
    head = "".join(
        f'<th class="name">{_e(h)}</th>' if i < names else f"<th>{_e(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="name">{_e(_fmt(v))}</td>' if i < names else f"<td>{_e(_fmt(v))}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


__all__ = ["load_run", "render_report", "write_report"]
