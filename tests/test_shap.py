"""SHAP explanations: distml's values against the ``shap`` library's on the same background.

Linear and logistic regression (binary and multinomial) are explained on the local, Dask
and Spark engines and compared, row by row, with ``shap.LinearExplainer`` given the same
background rows (every one of them: ``maskers.Independent(..., max_samples=len(bg))``,
since shap would otherwise subsample 100). k-means goes through shap's kernel
explainer and is compared with the closed form of its additive scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import write_parts

from distml import Dataset, KMeans, LinearRegression, LogisticRegression, get_backend, load_model
from distml.cli.app import main
from distml.errors import SpecError
from distml.interpret import write_shap
from distml.interpret.sampled import kmeans_shap
from distml.jobs import parse_spec, run_job
from distml.report import render_report

shap = pytest.importorskip("shap")

FEATURES = ["x0", "x1", "x2", "x3"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 2.0, 0.5, 3.0] + [5.0, -2.0, 0.0, 10.0]
    score = X @ [0.8, -0.5, 2.0, 0.1] - 3.0
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = score + rng.normal(size=n)
    frame["yb"] = (score + rng.normal(size=n) > 0).astype(np.int64)
    frame["ym"] = np.digitize(score + rng.normal(size=n), [-1.5, 1.5]).astype(np.int64)
    return frame


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("shap")
    rows, background = _frame(1200, 0), _frame(300, 1)
    write_parts(root / "rows", rows, 4)
    write_parts(root / "background", background, 3)
    X, Xb = rows[FEATURES].to_numpy(), background[FEATURES].to_numpy()
    models = {
        "linear": LinearRegression().fit(rows[FEATURES], rows["y"]),
        "binary": LogisticRegression(C=10.0, max_iter=1000).fit(rows[FEATURES], rows["yb"]),
        "multinomial": LogisticRegression(max_iter=1000).fit(rows[FEATURES], rows["ym"]),
    }
    return SimpleNamespace(root=root, X=X, Xb=Xb, models=models, frame=rows)


def _library(model, background: np.ndarray):  # type: ignore[no-untyped-def]
    """shap.LinearExplainer on distml's fitted weights, read as a scikit-learn model."""
    twin = SimpleNamespace(coef_=np.asarray(model.coef_), intercept_=np.asarray(model.intercept_))
    masker = shap.maskers.Independent(background, max_samples=len(background))
    return shap.LinearExplainer(twin, masker)  # an Independent masker: "interventional"


def _per_row(folder: Path, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    table = pd.read_parquet(folder / "shap").sort_values("row")
    values = table.drop(columns="row").to_numpy()
    if n_outputs > 1:  # columns shap_<feature>__<output>, output-major
        values = values.reshape(len(table), n_outputs, len(FEATURES)).transpose(0, 2, 1)
    return table["row"].to_numpy(), values


def _check_against_library(setup: SimpleNamespace, backend_name: str, tmp_path: Path) -> None:
    with get_backend(backend_name) as backend:
        rows = backend.load(Dataset(setup.root / "rows", None, FEATURES)).train
        bg = backend.load(Dataset(setup.root / "background", None, FEATURES)).train
        for kind, model in setup.models.items():
            out = tmp_path / kind
            out.mkdir()
            write_shap(backend, model, rows, out, background=bg, per_row=True, plot_rows=300)
            explainer = _library(model, setup.Xb)
            expected = explainer.shap_values(setup.X)
            n_outputs = 1 if expected.ndim == 2 else expected.shape[2]
            row_ids, values = _per_row(out, n_outputs)
            assert row_ids.tolist() == list(range(len(setup.X)))
            assert values.shape == expected.shape
            np.testing.assert_allclose(values, expected, rtol=0, atol=1e-10, err_msg=kind)
            info = json.loads((out / "shap_summary.json").read_text())
            np.testing.assert_allclose(info["base_value"], explainer.expected_value, atol=1e-10)
            assert info["background"]["rows"] == len(setup.Xb)
            assert info["explained_rows"] == len(setup.X)
            mean_abs = np.abs(expected).mean(axis=0)
            got = np.array([r["mean_abs_shap"] for r in info["rows"]])
            np.testing.assert_allclose(got, mean_abs.T.ravel(), rtol=1e-12, atol=1e-14)
            csv = pd.read_csv(out / "shap_summary.csv")
            np.testing.assert_allclose(csv["mean_abs_shap"], got, rtol=1e-12)
            assert (out / "shap_summary.png").stat().st_size > 5000


def test_linear_shap_equals_shap_library_local(setup: SimpleNamespace, tmp_path: Path) -> None:
    _check_against_library(setup, "local[2]", tmp_path)


@pytest.mark.dask
def test_linear_shap_equals_shap_library_dask(
    setup: SimpleNamespace, dask_address: str, tmp_path: Path
) -> None:
    _check_against_library(setup, dask_address, tmp_path)


@pytest.mark.spark
def test_linear_shap_equals_shap_library_spark(
    setup: SimpleNamespace, spark_session, tmp_path: Path
) -> None:
    _check_against_library(setup, "spark", tmp_path)


def test_run_explains_a_pipeline_in_its_assembled_features(
    setup: SimpleNamespace, tmp_path: Path
) -> None:
    """interpret.shap in a job: values of the test rows against the training rows' mean,
    in the pipeline's scaled feature space; the report shows the section and the plot."""
    spec = parse_spec(
        {
            "name": "explained",
            "model": {"type": "logistic_regression"},
            "data": {"train": str(setup.root / "rows"), "label": "yb", "features": FEATURES},
            "preprocess": [{"scale": {"method": "standard"}}],
            "interpret": {"shap": True, "rows": True, "plot_rows": 200},
        }
    )
    result = run_job(spec, tmp_path / "run")
    run = result.out
    pipeline = load_model(run / "model")
    test_rows, values = _per_row(run, 1)
    train_rows = np.setdiff1d(np.arange(len(setup.frame)), test_rows)
    raw = setup.frame[FEATURES]
    explainer = _library(pipeline.model, pipeline.transform(raw.iloc[train_rows]))
    expected = explainer.shap_values(pipeline.transform(raw.iloc[test_rows]))
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-10)
    info = json.loads((run / "shap_summary.json").read_text())
    assert info["space"].startswith("assembled features")
    assert info["output"].startswith("log-odds of class 1")
    assert info["background"] == {"rows": len(train_rows), "from": "training rows"}
    assert str(run / "shap_summary.png") in result.plots
    page = render_report(run)
    assert "Explanations (SHAP)" in page
    assert page.count("data:image/png;base64,") == len(list(run.glob("*.png")))
    top = max(info["rows"], key=lambda r: r["mean_abs_shap"])["feature"]
    assert top == FEATURES[int(np.argmax(np.abs(expected).mean(axis=0)))]


def test_kmeans_uses_shaps_kernel_explainer() -> None:
    """Cluster scores -||x - c_k||^2 are additive, so the kernel explainer's values (every
    subset of 4 features enumerated) equal the closed form E_b[(b_j - c_kj)^2] - (x_j - c_kj)^2 on the same background."""
    rng = np.random.default_rng(3)
    centres, X, background = (
        rng.normal(size=(3, 4)),
        rng.normal(size=(20, 4)),
        rng.normal(size=(30, 4)),
    )
    values, base = kmeans_shap(centres, X, background)
    diff_x = (X[:, :, None] - centres.T[None]) ** 2  # (n, d, k)
    diff_b = ((background[:, :, None] - centres.T[None]) ** 2).mean(axis=0)  # (d, k)
    np.testing.assert_allclose(values, diff_b[None] - diff_x, atol=1e-9)
    np.testing.assert_allclose(base, -diff_b.sum(axis=0), atol=1e-9)


def test_explain_command(setup: SimpleNamespace, tmp_path: Path) -> None:
    model_dir = setup.models["linear"].save(tmp_path / "linear")
    out = tmp_path / "explained"
    result = CliRunner().invoke(
        main, ["explain", str(model_dir), "--data", str(setup.root / "rows"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    expected = _library(setup.models["linear"], setup.X).shap_values(setup.X)  # own background
    row_ids, values = _per_row(out, 1)
    np.testing.assert_allclose(values[np.argsort(row_ids)], expected, atol=1e-10)
    assert (out / "_distml.json").is_file()
    top = FEATURES[int(np.argmax(np.abs(expected).mean(axis=0)))]
    assert f"{top}: mean |SHAP|" in result.output
    # the same folder again without --overwrite: refused, one line, nothing replaced
    again = CliRunner().invoke(
        main, ["explain", str(model_dir), "--data", str(setup.root / "rows"), "--out", str(out)]
    )
    assert again.exit_code == 2 and again.output.count("\n") == 1, again.output


def test_explain_kmeans_command_on_a_sample(setup: SimpleNamespace, tmp_path: Path) -> None:
    model = KMeans(n_clusters=3, random_state=0).fit(setup.frame[FEATURES])
    model_dir = model.save(tmp_path / "km")
    out = tmp_path / "km-explained"
    result = CliRunner().invoke(
        main, ["explain", str(model_dir), "--data", str(setup.root / "rows"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    info = json.loads((out / "shap_summary.json").read_text())
    assert info["method"] == "kernel" and info["outputs"] == ["0", "1", "2"]
    assert info["explained_rows"] == 100 and info["background"]["rows"] == 50
    assert not (out / "shap").exists()  # per-row files are for linear models


def test_explain_refusals(setup: SimpleNamespace, tmp_path: Path) -> None:
    keras_run = tmp_path / "keras-run"
    keras_run.mkdir()
    (keras_run / "model.keras").write_bytes(b"")
    result = CliRunner().invoke(
        main, ["explain", str(keras_run), "--data", str(setup.root / "rows")]
    )
    assert result.exit_code == 2 and "not a Keras model distml can score" in result.output
    assert result.output.count("\n") == 1
    model_dir = setup.models["linear"].save(tmp_path / "m")
    missing = CliRunner().invoke(main, ["explain", str(model_dir), "--data", str(tmp_path / "no")])
    assert missing.exit_code == 2 and str(tmp_path / "no") in missing.output


def test_interpret_spec_errors(setup: SimpleNamespace) -> None:
    base = {"name": "x", "model": {"type": "linear_regression"}}
    base["data"] = {"train": str(setup.root / "rows"), "label": "y"}
    with pytest.raises(SpecError, match="did you mean 'shap'"):
        parse_spec({**base, "interpret": {"shapp": True}})
    keras = {
        "name": "k",
        "model": {"type": "keras"},
        "data": {"train": "a", "test": "b", "label": "label"},
        "interpret": {"shap": True},
        "train": {"workers": 2},
    }
    with pytest.raises(SpecError, match="interpret.shap: not available for Keras jobs on sev"):
        parse_spec(keras)
    del keras["train"]
    with pytest.raises(SpecError, match="coalitions"):
        parse_spec({**keras, "interpret": {"shap": True, "coalitions": 5}})
    assert parse_spec({**keras, "interpret": {"shap": True, "samples": 4}}).interpret.samples == 4


@pytest.mark.tf
def test_keras_shap_finds_the_pixels_that_make_each_digit(tmp_path: Path) -> None:
    """Kernel SHAP of a Keras classifier on sampled images, from a job's ``interpret.shap``
    and from ``distml explain``: the same values (seeded samples), and they point where the
    digits are. The learnable fake digits carry their class as a bright band in image rows
    2k and 2k+1 (2 of 28 rows, 7% of the pixels): a correct explanation of each image's own
    class puts far more than 7% of its |SHAP| there."""
    import subprocess
    import sys

    import pyarrow.parquet as pq
    from conftest import REPO, digits

    from distml.data.mnist import mnist_table

    for split, (images, labels) in (("train", digits(400, 1)), ("test", digits(100, 2))):
        (tmp_path / split).mkdir()
        pq.write_table(mnist_table(images, labels), tmp_path / split / "part-0.parquet")

    def distml(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "distml.cli", *args],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    # the job explains a few images cheaply (shap's cost knobs from the spec) ...
    run = tmp_path / "run"
    distml("run", str(REPO / "jobs" / "mnist_mirrored.yaml"),
           "--set", f"data.train={tmp_path / 'train'}", "--set", f"data.test={tmp_path / 'test'}",
           "--set", "train.epochs=1", "--set", "interpret.shap=true",
           "--set", "interpret.samples=3", "--set", "interpret.coalitions=50", "--out", str(run))  # fmt: skip
    small = json.loads((run / "shap_summary.json").read_text())
    assert (small["method"], small["model"], small["explained_rows"]) == ("kernel", "keras", 3)
    assert small["explainer"].startswith("shap.KernelExplainer, 50 coalitions per image")
    assert small["background"]["rows"] == 20 and (run / "shap_summary.png").is_file()
    assert np.load(run / "shap_values.npy").shape == (3, 784, 10)
    # ... and `distml explain` with the same knobs and the job's background gives its values
    quick = tmp_path / "quick"
    distml("explain", str(run), "--data", str(tmp_path / "test"), "--background",
           str(tmp_path / "train"), "--out", str(quick), "--samples", "3", "--coalitions", "50")  # fmt: skip
    again = json.loads((quick / "shap_summary.json").read_text())
    assert again["row_numbers"] == small["row_numbers"]
    np.testing.assert_array_equal(
        np.load(quick / "shap_values.npy"), np.load(run / "shap_values.npy")
    )

    # the defaults (20 images, 1000 coalitions each) point where the digits are
    explained = tmp_path / "explained"
    distml("explain", str(run), "--data", str(tmp_path / "test"),
           "--background", str(tmp_path / "train"), "--out", str(explained))  # fmt: skip
    info = json.loads((explained / "shap_summary.json").read_text())
    assert (info["explained_rows"], info["background"]["rows"]) == (20, 20)
    assert info["explainer"].startswith("shap.KernelExplainer, 1000 coalitions per image")
    values = np.load(explained / "shap_values.npy")
    assert values.shape == (20, 784, 10)
    labels = pq.read_table(tmp_path / "test").column("label").to_numpy()
    shares = []
    for n, row in enumerate(info["row_numbers"]):
        k = int(labels[row])
        image = np.abs(values[n, :, k]).reshape(28, 28)
        shares.append(image[2 * k : 2 * k + 2].sum() / image.sum())
    assert min(shares) > 0.12 and np.mean(shares) > 0.2, shares  # uniform would be 0.071
    summary = np.loadtxt(explained / "shap_summary.csv", delimiter=",", skiprows=1)
    assert summary.shape == (7840, 4)
    np.testing.assert_allclose(summary[:784, 2], np.abs(values[:, :, 0]).mean(axis=0))
