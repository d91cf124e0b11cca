"""``distml bench`` end to end on a tiny plan: every output file, column and plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from distml.bench import run_bench
from distml.bench.plan import BenchConfig, Candidate
from distml.bench.report import FIELDS
from distml.cli import main
from distml.errors import SpecError

pytest.importorskip("distributed", reason="the dask extra is not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    result = CliRunner().invoke(
        main,
        [
            "bench", "--tasks", "linreg", "--backends", "local,dask", "--solvers", "native",
            "--rows", "2000", "--features", "3", "--workers", "1,2", "--repeat", "1",
            "--timeout", "120", "--data", str(root / "data"), "--out", str(root / "out"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "out"


def test_every_run_is_recorded_with_its_phases_memory_and_quality(tiny: Path) -> None:
    written = json.loads((tiny / "results.json").read_text())
    runs = written["runs"]
    # per task: floor + scikit-learn once, distml local, distml dask, dask-ml direct per worker count
    assert len(runs) == 2 + 3 * 2  # one task (k-means on every engine is compared elsewhere)
    assert {r["status"] for r in runs} == {"ok"}, [r.get("error") for r in runs]
    assert {r["candidate"] for r in runs} == {
        "floor (pyarrow decode)", "scikit-learn", "distml local/native", "distml dask/native", "dask-ml direct"
    }  # fmt: skip
    for run in runs:
        assert run["peak_mb"] > 50  # a Python process at least; every child is measured
        # PSS counts a shared page 1/n in each process: never above RSS; the Dask runs'
        # worker processes share the interpreter's and numpy's libraries, so strictly below
        assert 20 < run["peak_pss_mb"] <= run["peak_mb"]
        if run["candidate"] == "distml dask/native":
            assert run["peak_pss_mb"] < run["peak_mb"] - 20
        assert run["wall"] >= run["read"] + run["fit"] > 0
        if run["candidate"].startswith("floor"):
            assert "quality" not in run
        else:
            assert run["quality"] > 0
    sklearn = {r["task"]: r["quality"] for r in runs if r["candidate"] == "scikit-learn"}
    # the same model as scikit-learn's, within the backend issues' tolerances: linear regression
    # to 1e-8; k-means (k-means|| seeding, not k-means++) to 0.1% of the held-out inertia
    tolerance = {"linreg": 1e-8, "kmeans": 1e-3}
    for run in runs:
        if run["candidate"].startswith("distml"):
            assert run["quality"] == pytest.approx(sklearn[run["task"]], rel=tolerance[run["task"]])
    assert written["machine"]["cpus"] >= 1 and written["config"]["rows"] == [2000]


def test_tree_memory_counts_private_pages_fully_and_shared_ones_once() -> None:
    import subprocess
    import sys
    import time

    import psutil

    from distml.bench.measure import process_memory, tree_memory

    # a parent holding 300 MB of its own pages and two children importing numpy: the
    # children's libraries are shared pages, their bytes private
    code = (
        "import subprocess, sys, time; held = bytes([1]) * (300 * 2**20); "
        "kids = [subprocess.Popen([sys.executable, '-c', 'import numpy, time; "
        "x = bytes([1]) * (50 * 2**20); time.sleep(60)']) for _ in range(2)]; time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        root = psutil.Process(parent.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            kids = root.children()
            if len(kids) == 2 and all(
                (process_memory(k.pid) or (0, 0))[0] > 60 * 2**20 for k in kids
            ):
                break
            time.sleep(0.2)
        rss, pss = tree_memory(root)
        parent_rss, parent_pss = process_memory(parent.pid)
        assert parent_pss >= 300 * 2**20  # private pages count fully in PSS
        assert rss >= pss >= (300 + 2 * 50) * 2**20
        assert rss - pss > 5 * 2**20  # the libraries the three share count once in PSS
    finally:
        for proc in psutil.Process(parent.pid).children() + [psutil.Process(parent.pid)]:
            proc.kill()
        parent.wait()


def test_csv_markdown_and_plots(tiny: Path) -> None:
    with open(tiny / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == FIELDS and len(rows) == 8
    text = (tiny / "results.md").read_text()
    assert "| task | rows | workers | candidate | start-up s | read + fit s (min–max) |" in text
    assert "## Summary" in text and "linreg at 2,000 rows:" in text
    for name in ("time_vs_rows.png", "speedup_vs_workers.png", "quality_vs_sklearn.png"):
        assert (tiny / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name[:-4]}]({name})" in text
    assert len(list((tiny / "logs").iterdir())) == 8


def test_the_plan_interleaves_candidates_and_skips_one_process_ones_per_worker_count() -> None:
    config = BenchConfig(tasks=["linreg"], backends=["dask"], rows=[1000], workers=[1, 2], repeat=2)
    plan = config.runs()
    first_repeat = [r for r in plan if r.repeat == 0]
    assert [(r.candidate.label, r.workers) for r in first_repeat] == [
        ("floor (pyarrow decode)", 1), ("scikit-learn", 1), ("distml dask/native", 1),
        ("distml dask/dask-ml", 1), ("dask-ml direct", 1),
        ("distml dask/native", 2), ("distml dask/dask-ml", 2), ("dask-ml direct", 2),
    ]  # fmt: skip
    assert len(plan) == 2 * len(first_repeat)
    assert Candidate("distml", "spark", "mllib").label == "distml spark/mllib"


def test_the_mnist_task_runs_keras_candidates_at_its_datas_size() -> None:
    config = BenchConfig(
        tasks=["mnist", "linreg"], backends=["dask"], rows=[5000], workers=[1, 2], repeat=1
    )
    plan = config.runs({"mnist": [20_000]})
    assert [(r.candidate.label, r.workers, r.rows) for r in plan if r.task == "mnist"] == [
        ("floor (pyarrow decode)", 1, 20_000), ("Keras numpy direct", 1, 20_000),
        ("distml local/keras", 1, 20_000), ("Keras numpy direct", 2, 20_000),
        ("distml local/keras", 2, 20_000),
    ]  # fmt: skip
    assert {r.rows for r in plan if r.task == "linreg"} == {5000}


def test_a_candidate_past_the_timeout_is_not_run_again_at_that_size_or_above(
    tmp_path: Path,
) -> None:
    # 0.3 s: a Dask LocalCluster cannot even start, so distml dask/native times out
    config = BenchConfig(
        tasks=["linreg"], backends=["dask"], solvers=["native"], rows=[1000, 2000],
        features=2, workers=[1], repeat=2, timeout=0.3,
    )  # fmt: skip
    runs = run_bench(config, tmp_path / "out", tmp_path / "data")["runs"]
    dask = [r for r in runs if r["candidate"] == "distml dask/native"]
    assert [(r["rows"], r["repeat"]) for r in dask] == [(1000, 0), (1000, 1), (2000, 0), (2000, 1)]
    assert dask[0]["status"] == "timeout" and dask[0]["error"] == "still running after 0.3s"
    for later in dask[1:]:
        assert later["status"] == "timeout"
        assert later["error"] == "not run: over 0.3s at 1,000 rows"
    ran = [r for r in runs if not r.get("error", "").startswith("not run")]
    assert len(list((tmp_path / "out" / "logs").iterdir())) == len(ran) < len(runs)
    table = (tmp_path / "out" / "results.md").read_text()
    assert (
        "| linreg | 2,000 | 1 | distml dask/native | — | **timeout**: not run: over 0.3s" in table
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"tasks": ["linreg", "logreg2"]},
            r"--tasks: unknown task 'logreg2' \(did you mean 'logreg'\?\)",
        ),
        (
            {"backends": ["sprak"]},
            r"--backends: unknown backend 'sprak' \(did you mean 'spark'\?\)",
        ),
        ({"solvers": ["mllib"]}, r"--solvers: unknown solver kind 'mllib'"),
        ({"rows": [10]}, r"--rows must be >= 1000"),
        ({"workers": [0]}, r"--workers must be >= 1"),
    ],
)
def test_bad_options_are_one_line(changes: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        BenchConfig(**changes).validate()


def test_cli_bad_option_exits_2_before_any_work(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["bench", "--tasks", "svm", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "d")],
    )
    assert result.exit_code == 2 and "unknown task 'svm'" in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
