"""``distml demo``: the article's examples 1-3 (and 4, with MNIST), runnable from an installed package.

The jobs are the same as ``jobs/linear_regression.yaml``, ``jobs/logistic_regression.yaml``
and ``jobs/kmeans.yaml`` (a test keeps them in step), with the data under ``out/data``.
:func:`article_lines` prints each example's results in the article's own words, from
distml's run; :func:`article_reference` runs the article's code with scikit-learn on the
same arrays, so the demo can say value by value that the two agree.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from distml.data.examples import example_arrays
from distml.jobs.spec import JobSpec, parse_spec

DEMO_JOBS = {
    "linear-regression": {
        "model": {"type": "linear_regression", "solver": "auto", "params": {}},
        "data": {"train": "data/example1", "label": "y", "generate": {"kind": "example1"}},
        "split": {"test_size": 0.2, "seed": 42},
    },
    "logistic-regression": {
        "model": {"type": "logistic_regression", "solver": "auto", "params": {}},
        "data": {"train": "data/example2", "label": "y", "generate": {"kind": "example2"}},
        "split": {"test_size": 0.2, "seed": 42},
    },
    "kmeans": {
        "model": {
            "type": "kmeans",
            "solver": "auto",
            "params": {"n_clusters": 2, "init": "k-means++", "n_init": 10, "random_state": 0},
        },
        "data": {"train": "data/example3", "generate": {"kind": "example3"}},
    },
}

#: The article's example each demo job reproduces.
EXAMPLE_OF = {"linear-regression": 1, "logistic-regression": 2, "kmeans": 3}


def demo_specs(out: str | Path, backend: str = "local") -> list[JobSpec]:
    """The three seed jobs, with data and runs under ``out``."""
    return [
        parse_spec({"name": name, **job, "backend": backend}, source=f"demo:{name}", base_dir=out)
        for name, job in DEMO_JOBS.items()
    ]


# -- what the article's code prints ---------------------------------------------------------------
def article_values(job: str, summary: dict[str, Any], labels: list[int] | None) -> dict[str, Any]:
    """The values the article's code prints for ``job``, taken from a distml run."""
    model, metrics = summary["model"], summary["metrics"]
    if job == "linear-regression":
        return {
            "Mean Squared Error": float(metrics["mse"]),
            "Coefficient": np.asarray(model["coef"], dtype=float),
            "Intercept": float(model["intercept"]),
        }
    if job == "logistic-regression":
        return {
            "Accuracy": float(metrics["accuracy"]),
            "classification report": classification_report_values(metrics),
        }
    return {
        "Labels": np.asarray(labels if labels is not None else [], dtype=np.int32),
        "Centers": np.asarray(model["cluster_centers"], dtype=float),
    }


def article_lines(job: str, values: dict[str, Any]) -> list[str]:
    """``values`` printed the way the article's code prints them (its f-strings and print())."""
    if job == "linear-regression":
        return [
            f"Mean Squared Error: {values['Mean Squared Error']}",
            f"Coefficient: {values['Coefficient']}",
            f"Intercept: {values['Intercept']}",
        ]
    if job == "logistic-regression":
        report = format_classification_report(values["classification report"])
        return [f"Accuracy: {values['Accuracy']}", *report.splitlines()]
    return [
        f"Labels: {values['Labels']}",
        "Centers:",
        *str(values["Centers"]).splitlines(),
    ]


def article_reference(job: str) -> dict[str, Any] | None:
    """The same values from the article's own code run with scikit-learn (None without it)."""
    try:
        from sklearn.cluster import KMeans
        from sklearn.linear_model import LinearRegression, LogisticRegression
        from sklearn.metrics import accuracy_score, classification_report, mean_squared_error
        from sklearn.model_selection import train_test_split
    except ImportError:  # pragma: no cover - scikit-learn is a dependency today
        return None
    X_list, y_list = example_arrays(f"example{EXAMPLE_OF[job]}")
    X = np.array(X_list)
    if job == "kmeans":
        kmeans = KMeans(n_clusters=2, random_state=0, n_init=10)
        kmeans.fit(X)
        return {"Labels": kmeans.labels_, "Centers": kmeans.cluster_centers_}
    y = np.array(y_list)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    if job == "linear-regression":
        model = LinearRegression()
        model.fit(X_train, y_train)
        y_pred = model.predict(X_test)
        return {
            "Mean Squared Error": mean_squared_error(y_test, y_pred),
            "Coefficient": model.coef_,
            "Intercept": model.intercept_,
        }
    model = LogisticRegression()
    model.fit(X_train, y_train)
    y_pred = model.predict(X_test)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # the article's one test row leaves precision undefined
        report = classification_report(y_test, y_pred, output_dict=True)
    return {"Accuracy": accuracy_score(y_test, y_pred), "classification report": report}


def compare(values: dict[str, Any], reference: dict[str, Any], rtol: float = 1e-12) -> list[str]:
    """One line per value: equal to scikit-learn's, or both shown."""
    lines = []
    for name, ours in values.items():
        theirs = reference[name]
        if name == "classification report":
            same = _same_report(ours, theirs, rtol)
            shown = "every row" if same else f"distml {ours} vs scikit-learn {theirs}"
        else:
            a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
            same = a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=1e-12))
            shown = "" if same else f": distml {ours} vs scikit-learn {theirs}"
        lines.append(
            f"  {name}: {'equal' if same else 'DIFFERENT'}"
            + (f" ({shown})" if name == "classification report" else shown)
        )
    return lines


def _same_report(ours: dict[str, Any], theirs: dict[str, Any], rtol: float) -> bool:
    if set(ours) != set(theirs):
        return False
    for key, row in ours.items():
        other = theirs[key]
        if isinstance(row, dict):
            if any(not np.isclose(row[k], other[k], rtol=rtol) for k in row):
                return False
        elif not np.isclose(row, other, rtol=rtol):
            return False
    return True


# -- scikit-learn's classification report from distml's metrics -----------------------------------
def classification_report_values(metrics: dict[str, Any]) -> dict[str, Any]:
    """scikit-learn's ``classification_report(output_dict=True)`` from distml's metrics.

    Rows are the labels present in the true or predicted labels (scikit-learn's
    ``unique_labels``), then ``accuracy``, ``macro avg`` and ``weighted avg``.
    """
    confusion = metrics["confusion_matrix"]
    counts = np.asarray(confusion["counts"], dtype=float)
    support, predicted = counts.sum(axis=1), counts.sum(axis=0)
    present = (support + predicted) > 0
    labels = [str(label) for label in confusion["labels"]]
    rows: dict[str, Any] = {}
    for i, label in enumerate(labels):
        if present[i]:
            entry = metrics["report"][label]
            rows[label] = {
                "precision": float(entry["precision"]),
                "recall": float(entry["recall"]),
                "f1-score": float(entry["f1"]),
                "support": float(support[i]),
            }
    table = np.array([[r["precision"], r["recall"], r["f1-score"]] for r in rows.values()])
    weights = support[present]
    total = float(weights.sum())
    rows["accuracy"] = float(np.trace(counts) / total) if total else 0.0
    rows["macro avg"] = {
        **dict(zip(("precision", "recall", "f1-score"), table.mean(axis=0).tolist(), strict=True)),
        "support": total,
    }
    weighted = (weights @ table) / total if total else np.zeros(3)
    rows["weighted avg"] = {
        **dict(zip(("precision", "recall", "f1-score"), weighted.tolist(), strict=True)),
        "support": total,
    }
    return rows


def format_classification_report(rows: dict[str, Any], digits: int = 2) -> str:
    """``rows`` laid out as scikit-learn's text ``classification_report`` lays them out."""
    headers = ["precision", "recall", "f1-score", "support"]
    averages = ("accuracy", "macro avg", "weighted avg")
    names = [name for name in rows if name not in averages]
    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    head_fmt = "{:>{width}s} " + " {:>9}" * len(headers)
    report = head_fmt.format("", *headers, width=width) + "\n\n"
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    for name in names:
        r = rows[name]
        values = (r["precision"], r["recall"], r["f1-score"], r["support"])
        report += row_fmt.format(name, *values, width=width, digits=digits)
    report += "\n"
    total = rows["macro avg"]["support"]
    accuracy_fmt = "{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f}" + " {:>9}\n"
    report += accuracy_fmt.format(
        "accuracy", "", "", rows["accuracy"], total, width=width, digits=digits
    )
    for name in ("macro avg", "weighted avg"):
        r = rows[name]
        values = (r["precision"], r["recall"], r["f1-score"], r["support"])
        report += row_fmt.format(name, *values, width=width, digits=digits)
    return report
