"""distml against the article itself: its arrays, its code's printed numbers, its demo lines."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from article import PRINTED, PRINTED_LINES, article_code, assert_article_numbers
from click.testing import CliRunner
from conftest import REPO

from distml.cli import main
from distml.data.examples import EXAMPLES, example_arrays
from distml.jobs import load_spec, run_job

JOBS = {1: "linear_regression", 2: "logistic_regression", 3: "kmeans"}


def _run_article(number: int) -> tuple[str, dict]:
    """Run example ``number``'s code from the article; its stdout and its variables."""
    matplotlib.use("Agg")
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one test row leaves precision undefined
        exec(compile(article_code(number), f"article example {number}", "exec"), namespace)
    import matplotlib.pyplot as plt

    plt.close("all")
    return out.getvalue(), namespace


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?|-?\d+", text)]


@pytest.mark.parametrize("number", [1, 2, 3])
def test_the_projects_arrays_are_the_articles(number: int) -> None:
    _, namespace = _run_article(number)
    X, y = example_arrays(f"example{number}")
    np.testing.assert_array_equal(np.array(X), namespace["X"])
    if number != 3:
        np.testing.assert_array_equal(np.array(y), namespace["y"])
    else:
        assert "y" not in EXAMPLES["example3"]


@pytest.mark.parametrize("number", [1, 2, 3])
def test_distml_run_prints_every_number_the_articles_code_prints(
    number: int, tmp_path: Path
) -> None:
    printed, namespace = _run_article(number)
    job = JOBS[number]
    result = CliRunner().invoke(
        main,
        ["run", str(REPO / "jobs" / f"{job}.yaml"), "--out", str(tmp_path / "run"),
         "--set", f"data.train={tmp_path / 'data'}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    if number == 1:
        lines = printed.splitlines()
        expected = {
            "Mean Squared Error": float(lines[0].split(": ")[1]),
            "Coefficient": namespace["model"].coef_.tolist(),  # printed rounded: take it whole
            "Intercept": float(lines[2].split(": ")[1]),
        }
        assert printed.splitlines() == PRINTED_LINES[:3]
    elif number == 2:
        from sklearn.metrics import classification_report

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = classification_report(
                namespace["y_test"], namespace["y_pred"], output_dict=True
            )
        expected = {"Accuracy": float(printed.splitlines()[0].split(": ")[1]), "report": report}
        assert printed.splitlines()[0] == PRINTED_LINES[3]
        assert _numbers("\n".join(printed.splitlines()[2:])) == pytest.approx(
            [v for row in _report_rows(report) for v in row]
        )
    else:
        expected = {
            "labels": namespace["labels"].tolist(),
            "centers": namespace["centers"].tolist(),
        }
    assert_article_numbers(tmp_path / "run", job, expected)
    assert_article_numbers(tmp_path / "run", job)  # and the pinned numbers are the article's


def _report_rows(report: dict) -> list[list[float]]:
    """The numbers of a text classification report, row by row (labels included)."""
    rows = []
    for key, row in report.items():
        if key == "accuracy":
            rows.append([row, report["macro avg"]["support"]])
        elif key.endswith("avg"):
            rows.append([row["precision"], row["recall"], row["f1-score"], row["support"]])
        else:
            rows.append([float(key), row["precision"], row["recall"], row["f1-score"],
                         row["support"]])  # fmt: skip
    return rows


def test_demo_prints_the_articles_lines_exactly(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for line in PRINTED_LINES:
        assert line in lines
    # the classification report as scikit-learn prints it, then the comparisons
    start = lines.index("Accuracy: 0.0") + 1
    report = "\n".join(lines[start : start + 8])
    assert (
        report.split()
        == (
            "precision recall f1-score support 0 0.00 0.00 0.00 1.0 1 0.00 0.00 0.00 0.0 "
            "accuracy 0.00 1.0 macro avg 0.00 0.00 0.00 1.0 weighted avg 0.00 0.00 0.00 1.0"
        ).split()
    )
    assert "Labels: [1 1 0 0 1 0]" in lines
    centers = lines[lines.index("Centers:") + 1 : lines.index("Centers:") + 3]
    assert centers == ["[[7.33333333 9.        ]", " [1.16666667 1.46666667]]"]
    assert result.output.count(": equal") == 7 and "DIFFERENT" not in result.output
    assert "run distml demo --mnist DIR" in result.output
    assert max(len(line) for line in lines if "/" not in line) <= 100  # no wrapped sentences
    assert "reading" not in result.output and "done" not in result.output  # no progress lines


def test_demo_runs_the_article_when_its_code_is_at_hand(tmp_path: Path) -> None:
    printed, _ = _run_article(1)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert printed.splitlines() == [
        line for line in result.output.splitlines() if line.split(":")[0] in
        ("Mean Squared Error", "Coefficient", "Intercept")
    ]  # fmt: skip


def test_seed_jobs_give_the_pinned_numbers_on_the_local_backend(tmp_path: Path) -> None:
    for job in PRINTED:
        spec = load_spec(REPO / "jobs" / f"{job}.yaml", [f"data.train={tmp_path / job}"])
        result = run_job(spec, tmp_path / "runs" / job)
        assert_article_numbers(result.out, job)
