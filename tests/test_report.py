"""Run folders' interpretation files and plots, and `distml report`'s self-contained HTML
(validated by parsing it, and rendered in headless Chromium where it is installed)."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import regression_frame, write_parts
from sklearn.datasets import make_blobs, make_classification
from sklearn.decomposition import PCA
from sklearn.inspection import permutation_importance

import distml
from distml.algorithms.metrics import SAMPLE_STREAM
from distml.algorithms.random import row_keys
from distml.cli import main
from distml.errors import DataError
from distml.jobs import parse_spec, run_job
from distml.jobs.plots import principal_components
from distml.report import render_report, write_report

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """What a test needs to know about a page: images, tables, headings, external refs."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0
        self.headings: list[str] = []
        self.external: list[str] = []
        self.tags: set[str] = set()
        self._heading = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "table":
            self.tables += 1
        if tag in ("h2", "h3"):
            self._heading = True
            self.headings.append("")
        for name in ("src", "href"):
            value = values.get(name)
            if value and not value.startswith("data:"):
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h2", "h3"):
            self._heading = False

    def handle_data(self, data: str) -> None:
        if self._heading:
            self.headings[-1] += data


def _check_page(run: Path, text: str) -> Page:
    """Every <img> is a decodable PNG data URI of a PNG in the run folder; nothing external."""
    page = Page(text)
    assert page.external == [] and "script" not in page.tags and "link" not in page.tags
    on_disk = {p.read_bytes() for p in run.glob("*.png")}
    assert len(page.images) == len(on_disk) > 0
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix) :], validate=True)
        assert data.startswith(PNG) and data in on_disk
        assert matplotlib.image.imread(io.BytesIO(data), format="png").shape[0] > 100
    return page


def _run(tmp_path: Path, name: str, frame: pd.DataFrame, model: dict, **data) -> Path:  # type: ignore[type-arg]
    folder = write_parts(tmp_path / f"{name}-data", frame, 3)
    spec = parse_spec(
        {"name": name, "model": model, "data": {"train": str(folder), "label": "y", **data}},
        base_dir=tmp_path,
    )
    return run_job(spec, tmp_path / name).out


def _classification_frame(n: int = 3000, classes: int = 3) -> pd.DataFrame:
    X, y = make_classification(
        n, 5, n_informative=3, n_classes=classes, n_clusters_per_class=1, random_state=0
    )
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(5)])
    frame["y"] = y
    return frame


def test_classification_run_and_its_report(tmp_path: Path) -> None:
    run = _run(tmp_path, "cls", _classification_frame(), {"type": "logistic_regression"})
    pngs = {p.name for p in run.glob("*.png")}
    assert pngs == {
        "confusion_matrix.png",
        "roc_curve.png",
        "coefficients.png",
        "permutation_importance.png",
    }
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["roc_auc_method"] == "exact" and metrics["roc_auc_bound"] == 0.0
    assert set(metrics["roc_auc_per_class"]) == {"0", "1", "2"}
    insights = json.loads((run / "importance.json").read_text())
    assert insights["features"] == [f"f{j}" for j in range(5)]
    assert len(insights["coefficients"]["rows"]) == 15  # 5 features × 3 classes
    assert insights["permutation_importance"]["scoring"] == "accuracy"

    out = write_report(run)
    assert out == run / "report.html"
    text = out.read_text()
    page = _check_page(run, text)
    for heading in (
        "Job",
        "Metrics",
        "Per-class report",
        "Confusion matrix",
        "Plots",
        "Coefficients",
        "Permutation importance",
    ):
        assert heading in page.headings
    assert page.tables >= 6
    assert f"{metrics['accuracy']:.6g}" in text and "macro avg" in text


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="headless Chromium is not installed (apt-get install chromium) to render the report",
)
def test_report_renders_in_headless_chromium_with_its_plots(tmp_path: Path) -> None:
    run = _run(tmp_path, "cls", _classification_frame(), {"type": "logistic_regression"})
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--window-size=1280,3000", f"--screenshot={shot}", write_report(run).as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console  # no page errors (a broken image or resource would log)
    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int)
    # matplotlib's default blue (ROC curve, bars) and the confusion matrix's dark blue are
    # on the screen: the embedded plots were decoded and drawn, not just referenced
    for colour in ([31, 119, 180], [8, 48, 107]):
        assert np.all(np.abs(pixels - colour) <= 3, axis=-1).sum() > 1000, colour


def test_regression_interpretation_equals_numpy_and_sklearn(tmp_path: Path) -> None:
    frame = regression_frame(n=2400, d=4, seed=5)
    train, test = frame.iloc[:2000], frame.iloc[2000:].reset_index(drop=True)
    test_dir = write_parts(tmp_path / "test-data", test, 2)
    run = _run(tmp_path, "reg", train, {"type": "linear_regression"}, test=str(test_dir))
    assert {"predicted_vs_actual.png", "residuals.png", "coefficients.png"} <= {
        p.name for p in run.glob("*.png")
    }
    model = distml.load_model(run / "model")
    features = [f"x{j}" for j in range(4)]
    insights = json.loads((run / "importance.json").read_text())
    coefficients = insights["coefficients"]
    assert coefficients["std_from"] == "training rows" and coefficients["std_rows"] == 2000
    std = train[features].to_numpy().std(axis=0)
    np.testing.assert_allclose([r["std"] for r in coefficients["rows"]], std, rtol=1e-12)
    np.testing.assert_allclose(
        [r["standardized_coef"] for r in coefficients["rows"]], model.coef_ * std, rtol=1e-12
    )
    with (run / "coefficients.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["feature"] for r in rows] == features
    assert float(rows[2]["coef"]) == pytest.approx(model.coef_[2], rel=1e-12)

    # permutation importance: scikit-learn's, on the test rows in their sample order
    permutation = insights["permutation_importance"]
    assert (permutation["sample_rows"], permutation["repeats"], permutation["scoring"]) == (
        400,
        5,
        "r2",
    )
    order = np.argsort(row_keys(0, SAMPLE_STREAM, np.arange(len(test))))
    X, y = test[features].iloc[order], test["y"].to_numpy()[order]
    expected = permutation_importance(model, X, y, n_repeats=5, random_state=0)
    got = [r["importance_mean"] for r in permutation["rows"]]
    np.testing.assert_allclose(got, expected.importances_mean, rtol=1e-12)
    assert permutation["baseline"] == pytest.approx(model.score(X, y), rel=1e-12)
    _check_page(run, render_report(run))


def test_kmeans_run_plots_principal_components_and_report_lists_centres(tmp_path: Path) -> None:
    X, y = make_blobs(1500, 4, centers=3, random_state=1)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["y"] = y
    run = _run(tmp_path, "km", frame, {"type": "kmeans", "params": {"n_clusters": 3}})
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["silhouette_sample_rows"] == 1500 and metrics["silhouette"] > 0.5
    assert metrics["davies_bouldin"] > 0 and metrics["adjusted_rand"] == pytest.approx(1.0)
    assert {p.name for p in run.glob("*.png")} == {"clusters.png", "permutation_importance.png"}
    insights = json.loads((run / "importance.json").read_text())
    assert "coefficients" not in insights
    assert insights["permutation_importance"]["scoring"] == "neg_mean_inertia"
    page = _check_page(run, render_report(run))
    assert "Cluster centres" in page.headings


def test_principal_components_match_sklearn_up_to_sign() -> None:
    X = np.random.default_rng(0).normal(size=(300, 5)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.1])
    (projected, centres), axes = principal_components(X, X[:4])
    reference = PCA(n_components=2).fit(X)
    np.testing.assert_allclose(np.abs(projected), np.abs(reference.transform(X)), atol=1e-10)
    np.testing.assert_allclose(centres, projected[:4])
    assert axes[0].startswith("PC1 (") and "% of variance" in axes[1]


def test_cli_report_writes_atomically_and_bad_folders_are_one_line(tmp_path: Path) -> None:
    frame = _classification_frame(600, classes=2)
    run = _run(tmp_path, "bin", frame, {"type": "logistic_regression"})
    target = tmp_path / "out" / "page.html"
    result = CliRunner().invoke(main, ["report", str(run), "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(target)
    assert [p.name for p in target.parent.iterdir()] == ["page.html"]  # no temporary left
    _check_page(run, target.read_text())

    for bad, message in [
        (tmp_path / "missing", "no such run folder"),
        (tmp_path / "out", "not a run folder (metrics.json missing)"),
    ]:
        result = CliRunner().invoke(main, ["report", str(bad)])
        assert result.exit_code == 2
        assert result.output == f"error: {bad}: {message}\n"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("{not json")
    with pytest.raises(DataError, match=r"metrics.json: not valid JSON"):
        write_report(broken)


def test_report_of_another_run_folder_shape(tmp_path: Path) -> None:
    """A Keras run folder (other keys, a history, its own plot) renders too."""
    import matplotlib.pyplot as plt

    run = tmp_path / "keras"
    run.mkdir()
    summary = {
        "job": "mnist <cnn>",
        "task": "classification",
        "epochs": 2,
        "history": {"loss": [0.5, 0.3]},
        "metrics": {
            "accuracy": 0.97,
            "loss": None,
            "confusion_matrix": {"labels": [0, 1], "counts": [[5, 1], [0, 4]]},
        },
        "model": {"architecture": "cnn", "layers": [{"name": "dense"}]},
    }
    (run / "metrics.json").write_text(json.dumps(summary))
    fig, ax = plt.subplots()
    ax.plot([1, 2], [0.5, 0.3])
    fig.savefig(run / "training_curve.png")
    plt.close(fig)
    text = render_report(run)
    page = _check_page(run, text)
    assert "distml report: mnist &lt;cnn&gt;" in text  # escaped
    assert "Confusion matrix" in page.headings and "Training curve" in text


def test_pipeline_run_explains_the_models_own_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 800
    frame = pd.DataFrame(
        {
            "age": np.where(rng.random(n) < 0.1, np.nan, rng.normal(40, 10, n)),
            "city": rng.choice(["oslo", "rome", "lima"], n),
        }
    )
    frame["y"] = ((frame["age"].fillna(40) > 40) ^ (frame["city"] == "rome")).astype(int)
    folder = write_parts(tmp_path / "messy", frame, 2)
    spec = parse_spec(
        {
            "name": "pipe",
            "model": {"type": "logistic_regression"},
            "data": {"train": str(folder), "label": "y"},
            "preprocess": [
                {"impute": {"strategy": "median", "columns": ["age"]}},
                {"one_hot": {"columns": ["city"]}},
                {"scale": None},
            ],
        },
        base_dir=tmp_path,
    )
    run = run_job(spec, tmp_path / "pipe").out
    features = json.loads((run / "metrics.json").read_text())["model"]["features"]
    insights = json.loads((run / "importance.json").read_text())
    assert insights["features"] == features and len(features) == 4  # age + 3 cities
    # standardised features: the standardised coefficients are the coefficients
    for row in insights["coefficients"]["rows"]:
        assert row["std"] == pytest.approx(1.0, abs=0.1)
    assert [r["feature"] for r in insights["permutation_importance"]["rows"]] == features
    _check_page(run, render_report(run))
