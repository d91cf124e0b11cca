"""The article's examples: its printed numbers pinned here, and its code read from the seed.

A fresh clone has no ``../shared``, so the numbers scikit-learn prints for the article's
code are pinned in :data:`PRINTED`; where the seed is present, :func:`article_code` reads
each example's code from the article itself so a test can run it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO

SEED = REPO.parent / "shared" / "seed" / "000_2059b8b4e178deaa.txt"

#: What the article's code prints for examples 1-2, and the labels and centres of
#: example 3, as scikit-learn computes them (repr-exact floats).
PRINTED = {
    "linear_regression": {
        "Mean Squared Error": 0.7346938775510206,
        "Coefficient": [0.6857142857142857],
        "Intercept": 1.7714285714285714,
    },
    "logistic_regression": {
        "Accuracy": 0.0,
        "report": {
            "0": {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1.0},
            "1": {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0},
        },
    },
    "kmeans": {
        "labels": [1, 1, 0, 0, 1, 0],
        "centers": [[7.333333333333333, 9.0], [1.166666666666667, 1.4666666666666668]],
    },
}

#: The lines ``distml demo`` must print for examples 1 and 2, exactly as the article's code.
PRINTED_LINES = [
    "Mean Squared Error: 0.7346938775510206",
    "Coefficient: [0.68571429]",
    "Intercept: 1.7714285714285714",
    "Accuracy: 0.0",
]


def article_code(number: int) -> str:
    """Example ``number``'s code as printed in the article (skips without the seed)."""
    if not SEED.is_file():
        pytest.skip(f"the article is not here ({SEED}); the pinned numbers are tested instead")
    lines = SEED.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Example {number}:"))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith(("import ", "from ")))
    end = next(i for i in range(first, len(lines)) if lines[i].startswith("Explanation:"))
    return "\n".join(lines[first:end]) + "\n"


def distml_numbers(run_dir: Path, job: str) -> dict:
    """The article's quantities as ``distml run`` wrote them into a run folder."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    model, metrics = summary["model"], summary["metrics"]
    if job == "linear_regression":
        return {
            "Mean Squared Error": metrics["mse"],
            "Coefficient": model["coef"],
            "Intercept": model["intercept"],
        }
    if job == "logistic_regression":
        return {"Accuracy": metrics["accuracy"], "report": metrics["report"], "metrics": metrics}
    labels = pq.read_table(run_dir / "predictions").column("prediction").to_pylist()
    return {"labels": labels, "centers": model["cluster_centers"]}


def assert_article_numbers(run_dir: Path, job: str, expected: dict | None = None) -> None:
    """Every number the article prints for ``job`` equals the run's (to 1e-12)."""
    expected = expected or PRINTED[job]
    ours = distml_numbers(run_dir, job)
    if job == "logistic_regression":
        assert ours["Accuracy"] == pytest.approx(expected["Accuracy"], abs=1e-12)
        for label, row in expected["report"].items():
            if label == "accuracy":
                assert ours["Accuracy"] == pytest.approx(row, abs=1e-12)
                continue
            if label.endswith(" avg"):
                kind = label.split()[0]
                for name, key in (
                    ("precision", "precision"),
                    ("recall", "recall"),
                    ("f1", "f1-score"),
                ):
                    value = ours["metrics"][f"{name}_{kind}"]
                    assert value == pytest.approx(row[key], abs=1e-12), label
                continue
            mine = ours["report"][label]
            assert mine["precision"] == pytest.approx(row["precision"], abs=1e-12)
            assert mine["recall"] == pytest.approx(row["recall"], abs=1e-12)
            assert mine["f1"] == pytest.approx(row["f1-score"], abs=1e-12)
            assert mine["support"] == row["support"]
        return
    if job == "kmeans":
        assert ours["labels"] == list(expected["labels"])
        np.testing.assert_allclose(ours["centers"], expected["centers"], rtol=1e-12)
        return
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-12), name
