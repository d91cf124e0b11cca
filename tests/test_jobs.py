"""Job specs, `distml run`, run folders and the seed examples end to end (local backend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, mean_squared_error
from sklearn.model_selection import train_test_split

import distml
from distml.cli import main
from distml.data.examples import EXAMPLES
from distml.demo import DEMO_JOBS
from distml.errors import SpecError
from distml.jobs import load_spec, parse_spec, run_job


def _seed_job(name: str, tmp_path: Path, *extra: str, overwrite: bool = False):
    spec = load_spec(REPO / "jobs" / f"{name}.yaml", [f"data.train={tmp_path / name}", *extra])
    return run_job(spec, tmp_path / "runs" / name, overwrite=overwrite)


def test_example1_equals_the_seeds_sklearn_output(tmp_path: Path) -> None:
    X = np.array(EXAMPLES["example1"]["x"]).reshape(-1, 1)
    y = np.array(EXAMPLES["example1"]["y"])
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    reference = LinearRegression().fit(X_train, y_train)
    expected_mse = mean_squared_error(y_test, reference.predict(X_test))

    result = _seed_job("linear_regression", tmp_path)
    written = json.loads((result.out / "metrics.json").read_text())
    assert written["metrics"]["mse"] == pytest.approx(expected_mse, rel=1e-12)
    assert written["model"]["coef"] == pytest.approx(reference.coef_.tolist(), rel=1e-12)
    assert written["model"]["intercept"] == pytest.approx(reference.intercept_, rel=1e-12)
    assert (written["rows_train"], written["rows_test"]) == (4, 1)
    saved = distml.load_model(result.out / "model")
    assert saved.coef_ == pytest.approx(reference.coef_, rel=1e-12)
    predictions = pq.read_table(result.out / "predictions").to_pandas()
    assert predictions["x"].tolist() == X_test[:, 0].tolist()
    assert predictions["prediction"].tolist() == pytest.approx(reference.predict(X_test).tolist())
    assert (result.out / "predicted_vs_actual.png").stat().st_size > 1000


def test_example2_equals_the_seeds_sklearn_output(tmp_path: Path) -> None:
    data = EXAMPLES["example2"]
    X = np.column_stack([data["x1"], data["x2"]])
    y = np.array(data["y"])
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    reference = LogisticRegression().fit(X_train, y_train)
    result = _seed_job("logistic_regression", tmp_path)
    assert result.summary["metrics"]["accuracy"] == accuracy_score(
        y_test, reference.predict(X_test)
    )
    np.testing.assert_allclose(result.model.coef_, reference.coef_, rtol=1e-6)
    predictions = pq.read_table(result.out / "predictions").to_pandas()
    assert predictions["prediction"].tolist() == reference.predict(X_test).tolist()
    np.testing.assert_allclose(
        np.stack(predictions["probability"]), reference.predict_proba(X_test), rtol=1e-6
    )
    assert (result.out / "confusion_matrix.png").exists()


def test_example3_equals_the_seeds_sklearn_output(tmp_path: Path) -> None:
    X = np.column_stack([EXAMPLES["example3"]["x1"], EXAMPLES["example3"]["x2"]])
    reference = KMeans(n_clusters=2, random_state=0, n_init=10).fit(X)
    result = _seed_job("kmeans", tmp_path)
    np.testing.assert_allclose(result.model.cluster_centers_, reference.cluster_centers_)
    labels = pq.read_table(result.out / "predictions").column("prediction").to_pylist()
    assert labels == reference.labels_.tolist()
    assert result.summary["metrics"]["inertia"] == pytest.approx(reference.inertia_)
    assert (result.out / "clusters.png").exists()


def test_demo_jobs_are_the_jobs_folder_specs() -> None:
    for name, job in DEMO_JOBS.items():
        spec = yaml.safe_load((REPO / "jobs" / f"{name.replace('-', '_')}.yaml").read_text())
        assert spec["model"] == job["model"]
        assert spec["data"]["generate"] == job["data"]["generate"]
        assert spec.get("split") == job.get("split")


def test_large_specs_validate_and_generate_the_announced_data() -> None:
    for name in ("linear_regression", "logistic_regression", "kmeans"):
        spec = load_spec(REPO / "jobs" / f"{name}_large.yaml")
        assert spec.data.generate.rows == 1_000_000 and spec.data.generate.partitions == 16
        assert spec.resolve(spec.data.train) == str(
            (REPO / "data").resolve() / Path(spec.data.train).name
        )


def _minimal(**changes):
    spec = {
        "name": "t",
        "model": {"type": "linear_regression"},
        "data": {"train": "d", "label": "y"},
    }
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_minimal(modle={}), r"unknown key 'modle' \(did you mean 'model'\?\)"),
        (
            _minimal(model={"type": "linear_regression", "parms": {}}),
            r"unknown key 'parms' in model \(did you mean 'params'\?\)",
        ),
        (
            _minimal(model={"type": "linear_regresion"}),
            r"model.type: unknown model type 'linear_regresion' \(did you mean 'linear_regression'\?\)",
        ),
        (
            _minimal(model={"type": "linear_regression", "params": {"fit_intercep": True}}),
            r"unknown parameter 'fit_intercep' .*did you mean 'fit_intercept'",
        ),
        (
            _minimal(model={"type": "logistic_regression", "params": {"C": -1}}),
            r"model: C must be a number > 0, got -1",
        ),
        (_minimal(split={"test_size": "big"}), r"split.test_size: .*got 'big'"),
        ({"name": "t", "model": {"type": "kmeans"}}, r"data: required key is missing"),
        (_minimal(data={"train": "d"}), r"data.label is required for linear_regression"),
        ("just a string", r"a job spec must be a mapping"),
    ],
)
def test_spec_errors_are_one_clear_line(raw, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(raw, source="job.yaml")
    assert str(info.value).startswith("job.yaml: ") or "mapping" in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "job.yaml").write_text(
        yaml.safe_dump(_minimal(data={"train": "../data/d", "label": "y"}))
    )
    spec = load_spec(
        tmp_path / "specs" / "job.yaml",
        ["model.params.alpha=2.5", "split.seed=7"],
        backend="local[1]",
    )
    assert spec.model.params == {"alpha": 2.5}
    assert spec.split.seed == 7 and spec.backend.name == "local[1]"
    assert spec.resolve(spec.data.train) == str((tmp_path / "data" / "d").resolve())
    with pytest.raises(SpecError, match=r"--set name.x: 'name' in .* is not a mapping"):
        load_spec(tmp_path / "specs" / "job.yaml", ["name.x=1"])


def test_a_failed_run_leaves_no_run_folder(tmp_path: Path) -> None:
    spec = parse_spec(_minimal(data={"train": str(tmp_path / "missing"), "label": "y"}))
    with pytest.raises(distml.DistmlError, match="missing: no such file or directory"):
        run_job(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_failure_while_writing_keeps_the_previous_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _seed_job("linear_regression", tmp_path)
    before = (first.out / "metrics.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("distml.jobs.plots.predicted_vs_actual", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _seed_job("linear_regression", tmp_path, overwrite=True)
    assert (first.out / "metrics.json").read_text() == before
    assert sorted(p.name for p in first.out.parent.iterdir()) == ["linear_regression"]


# -- command line ---------------------------------------------------------------------------------
def test_cli_run_prints_the_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(REPO / "jobs" / "linear_regression.yaml"),
            "--set",
            f"data.train={tmp_path / 'ex1'}",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mse: 0.734694" in result.output and "intercept: 1.77143" in result.output
    assert json.loads((out / "metrics.json").read_text())["job"] == "linear-regression"


def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_minimal(modle={})))
    result = CliRunner().invoke(main, ["run", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: unknown key 'modle'")
    assert not (tmp_path / "run").exists()


def test_cli_unknown_backend_and_missing_spec(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(REPO / "jobs" / "kmeans.yaml"),
            "--backend",
            "sparkk",
            "--set",
            f"data.train={tmp_path / 'd'}",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert (
        result.exit_code == 2
        and "unknown backend 'sparkk' (did you mean 'spark'?)" in result.output
    )
    result = CliRunner().invoke(main, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml: job spec not found" in result.output


def test_cli_data_generate_and_examples(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "data",
            "generate",
            "regression",
            "--rows",
            "1e3",
            "--features",
            "3",
            "--partitions",
            "3",
            "--out",
            str(tmp_path / "g"),
            "--seed",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    ds = distml.Dataset(tmp_path / "g", label="y")
    assert (ds.num_rows, len(ds.partitions), ds.features) == (1000, 3, ["x0", "x1", "x2"])
    again = runner.invoke(
        main, ["data", "generate", "regression", "--rows", "1e3", "--out", str(tmp_path / "g")]
    )
    assert again.exit_code == 2 and "folder exists and is not empty" in again.output
    result = runner.invoke(main, ["data", "examples", "--out", str(tmp_path / "ex")])
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == [
        "example1",
        "example2",
        "example3",
    ]


def test_cli_demo_runs_twice_into_the_same_folder(tmp_path: Path) -> None:
    for _ in range(2):  # its own run folders are replaced, nothing else is
        result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
        assert result.exit_code == 0, result.output
        assert "Mean Squared Error: 0.7346938775510206" in result.output
    runs = sorted(p.name for p in (tmp_path / "demo" / "runs").iterdir())
    assert runs == ["kmeans", "linear-regression", "logistic-regression"]


def test_undefined_metrics_are_json_null(tmp_path: Path) -> None:
    result = _seed_job("linear_regression", tmp_path)  # one test row: R² is undefined
    text = (result.out / "metrics.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["metrics"]["r2"] is None


def test_cli_internal_error_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("distml.jobs.run_job", crash)
    result = CliRunner().invoke(main, ["run", str(REPO / "jobs" / "kmeans.yaml")])
    assert result.exit_code == 1
    assert "internal error: ZeroDivisionError: boom (rerun with --debug)" in result.output


def test_spark_settings_with_dots_override_as_one_key(tmp_path: Path) -> None:
    spec = load_spec(
        REPO / "jobs" / "kmeans.yaml",
        [
            f"data.train={tmp_path / 'd'}",
            "backend.conf.spark.executor.memory=2g",
            "backend.conf.spark.sql.shuffle.partitions=4",
        ],
        backend="spark",
    )
    assert spec.backend.conf == {"spark.executor.memory": "2g", "spark.sql.shuffle.partitions": 4}


def test_run_folders_have_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import stat

    result = _seed_job("kmeans", tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE(os.stat(result.out).st_mode)
    assert mode == 0o777 & ~umask  # not mkdtemp's 0700: readable by workers running as others


def test_a_bad_input_is_the_error_reported_while_the_engine_starts_beside_it(
    tmp_path: Path,
) -> None:
    """The engine starts while the driver reads the footers (Backend.start_while): when
    both fail, the input is named; when only the engine fails, the engine is."""
    from distml.errors import BackendError, DataError

    empty = tmp_path / "empty"
    empty.mkdir()
    dead = "dask://127.0.0.1:9"  # nothing listens on the discard port
    spec = load_spec(REPO / "jobs" / "linear_regression.yaml", [f"data.train={empty}"], dead)
    with pytest.raises(DataError, match=f"^{empty}: no Parquet files"):
        run_job(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    good = load_spec(
        REPO / "jobs" / "linear_regression.yaml", [f"data.train={tmp_path / 'lr'}"], dead
    )
    with pytest.raises(BackendError, match="dask://127.0.0.1:9: nothing listens there"):
        run_job(good, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert pq.read_metadata(next((tmp_path / "lr").glob("*.parquet"))).num_rows > 0
