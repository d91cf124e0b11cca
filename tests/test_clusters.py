"""Real clusters on 127.0.0.1 started by ``distml cluster up``; jobs submitted to workers whose
Python cannot import distml; lost workers, refused strangers, bad inputs, detached jobs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO

pytest.importorskip("distributed", reason="the dask extra is not installed")
pytest.importorskip("pyspark", reason="the spark extra is not installed")

from distml.backends import get_backend  # noqa: E402
from distml.backends.dask import security  # noqa: E402
from distml.cli import main  # noqa: E402
from distml.clusters.processes import process  # noqa: E402
from distml.clusters.state import ClusterRecord, cluster_for_address  # noqa: E402
from distml.clusters.tls import make_certificates  # noqa: E402
from distml.data.generate import Recipe, generate  # noqa: E402
from distml.errors import BackendError  # noqa: E402
from distml.jobs import load_spec, run_job  # noqa: E402
from distml.jobs.submit import submit_dask  # noqa: E402
from distml.progress import Progress  # noqa: E402

pytestmark = pytest.mark.cluster

# A worker Python without distml: the editable install's import hooks are removed at start-up,
# so the only distml a worker can import is the zip `distml submit` ships.
HIDE_DISTML = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable___distml" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable___distml" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
"""
SEED_JOBS = ("linear_regression", "logistic_regression", "kmeans")


def cli(*args: object, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def distml_cmd(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distml.cli", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def up(state: Path, kind: str, *options: object, env: dict[str, str]) -> ClusterRecord:
    result = cli("cluster", "up", kind, *options, "--state-dir", state, env=env)
    assert result.exit_code == 0, result.output
    address = result.stdout.strip().splitlines()[-1]
    record = cluster_for_address(state, address)
    assert record is not None and record.address == address
    return record


def process_tree(record: ClusterRecord) -> list[psutil.Process]:
    """The cluster's live processes and all their children."""
    found = []
    for info in record.processes:
        proc = process(info)  # None once dead (a killed worker)
        if proc is not None:
            found += [proc, *proc.children(recursive=True)]
    return found


def down_leaves_nothing(state: Path, record: ClusterRecord) -> None:
    tree = process_tree(record)
    assert len(tree) >= 2
    result = cli("cluster", "down", record.id, "--state-dir", state)
    assert result.exit_code == 0 and f"stopped {record.id}" in result.output
    assert [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert not Path(record.folder).exists()


def seed_spec(name: str, data: Path) -> list[str]:
    return [str(REPO / "jobs" / f"{name}.yaml"), "--set", f"data.train={data}"]


def same_run(ours: Path, theirs: Path) -> None:
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (ours, theirs))
    assert a["metrics"] == b["metrics"]
    assert a["model"] == b["model"]
    assert pq.read_table(ours / "predictions").equals(pq.read_table(theirs / "predictions"))


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def no_distml(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("no-distml")
    (folder / "sitecustomize.py").write_text(HIDE_DISTML)
    return {"PYTHONPATH": str(folder)}


@pytest.fixture(scope="module")
def dask_tls(state: Path, no_distml: dict[str, str]):
    record = up(state, "dask", "--workers", 2, "--tls", env=no_distml)
    yield record
    cli("cluster", "down", record.id, "--state-dir", state)


@pytest.fixture(scope="module")
def spark_auth(state: Path, no_distml: dict[str, str], spark_class_archive: Path):
    """A 2-worker standalone cluster requiring a secret; its JVMs map the class archive the
    suite's first Spark driver recorded."""
    record = up(state, "spark", "--workers", 2, "--cores", 1, "--auth", env=no_distml)
    yield record
    cli("cluster", "down", record.id, "--state-dir", state)


@pytest.fixture(scope="module")
def local_seed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("seed")
    runs = {}
    for name in SEED_JOBS:
        data = root / "data" / name
        spec = load_spec(REPO / "jobs" / f"{name}.yaml", [f"data.train={data}"])
        runs[name] = (data, run_job(spec, root / "local" / name).out)
    return runs


@pytest.fixture(scope="module")
def long_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A logistic regression job that runs long enough to lose a worker in the middle of
    (its 11+ L-BFGS passes must outlast the driver's output reaching the test through
    spark-submit: with 300,000 rows an idle machine sometimes finished the fit first; the
    default Newton method takes 4-6 passes, too few to be sure)."""
    root = tmp_path_factory.mktemp("long")
    data = generate(
        Recipe("classification", rows=3_000_000, features=10, partitions=12, seed=4), root / "c"
    )
    spec = root / "long.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "long-logistic",
                "model": {
                    "type": "logistic_regression",
                    "params": {"C": 1e4, "tol": 1e-10, "max_iter": 500, "method": "lbfgs"},
                },
                "data": {"train": str(data), "label": "y"},
                "output": {"plots": False},
            }
        )
    )
    return spec, run_job(load_spec(spec), root / "local").out


class ReadingDone(Progress):
    """Sets an event once every partition has been read (the fit starts next)."""

    def __init__(self) -> None:
        super().__init__()
        self.read = threading.Event()

    def on_finish(self, seconds: float) -> None:
        if self.stage_name == "reading":
            self.read.set()


# -- Dask ----------------------------------------------------------------------------------------
def test_dask_cluster_is_up_with_tls_and_workers_without_distml(dask_tls, state: Path) -> None:
    status = json.loads(cli("cluster", "status", "--json", "--state-dir", state).stdout)
    entry = next(e for e in status if e["id"] == dask_tls.id)
    assert entry["tls"] and dask_tls.address.startswith("tls://127.0.0.1:")
    assert [p["alive"] for p in entry["processes"]] == [True, True, True]
    assert oct(os.stat(dask_tls.tls["key"]).st_mode & 0o777) == "0o600"
    from distributed import Client

    with Client(dask_tls.address, security=security(dask_tls.tls), set_as_default=False) as client:
        import importlib.util

        seen = client.run(lambda: importlib.util.find_spec("distml") is not None)
        malloc = client.run(lambda: os.environ.get("MALLOC_MMAP_THRESHOLD_"))
    assert list(seen.values()) == [False, False]  # the workers cannot import distml
    assert list(malloc.values()) == ["4194304", "4194304"]  # temporaries from the heap


def test_seed_jobs_submitted_to_dask_equal_local_runs(
    dask_tls, state: Path, local_seed_runs, tmp_path: Path
) -> None:
    for name, (data, local_out) in local_seed_runs.items():
        out = tmp_path / name
        result = cli(
            "submit",
            *seed_spec(name, data),
            "--cluster",
            dask_tls.address,
            "--out",
            out,
            "--state-dir",
            state,
        )
        assert result.exit_code == 0, result.output
        assert "run folder:" in result.stdout
        same_run(out, local_out)


def test_a_killed_dask_worker_does_not_change_the_submitted_model(
    dask_tls, state: Path, long_job, tmp_path: Path
) -> None:
    from distributed import Client

    spec, local_out = long_job
    progress = ReadingDone()
    outcome: dict = {}

    def submit() -> None:
        try:
            outcome["result"] = submit_dask(
                spec, dask_tls.address, tmp_path / "run", [], state, progress
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = exc

    with Client(dask_tls.address, security=security(dask_tls.tls), set_as_default=False) as client:
        victim = list(client.run(os.getpid).values())[0]
        job = threading.Thread(target=submit)
        job.start()
        assert progress.read.wait(120), outcome
        os.kill(victim, signal.SIGKILL)
        job.join(timeout=300)
        assert "error" not in outcome, outcome.get("error")
        assert victim not in client.run(os.getpid).values()  # the nanny started a new worker
    expected = json.loads((local_out / "metrics.json").read_text())["model"]
    got = json.loads((tmp_path / "run" / "metrics.json").read_text())["model"]
    assert got["n_iter"] == expected["n_iter"] > 10
    np.testing.assert_allclose(got["coef"], expected["coef"], rtol=1e-10)


def test_a_tls_cluster_refuses_clients_without_its_certificates(
    dask_tls, tmp_path: Path, local_seed_runs
) -> None:
    with pytest.raises(BackendError, match=r"speaks TLS: give the cluster's certificates"):
        get_backend(dask_tls.address).start()
    stranger = make_certificates(tmp_path)["client"]  # valid TLS, another CA
    with pytest.raises(BackendError, match=r"did not answer within 3s"):
        get_backend(dask_tls.address, tls=stranger, timeout=3).start()
    unknown_state = tmp_path / "elsewhere"  # a state folder that holds no certificates
    data, _ = local_seed_runs["kmeans"]
    result = cli(
        "submit",
        *seed_spec("kmeans", data),
        "--cluster",
        dask_tls.address,
        "--out",
        tmp_path / "r",
        "--state-dir",
        unknown_state,
    )
    assert result.exit_code == 2 and "speaks TLS" in result.stderr
    assert not (tmp_path / "r").exists()


def test_a_predict_job_submitted_to_dask_equals_local_predict(
    dask_tls, state: Path, local_seed_runs, tmp_path: Path
) -> None:
    """A spec with ``predict:`` scores on workers without distml; the files equal local ones."""
    from distml.predict import predict

    data, model = local_seed_runs["logistic_regression"]
    spec = {
        "name": "score",
        "predict": {"model": str(model), "data": str(data), "columns": "all", "output": "both"},
    }
    (tmp_path / "score.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "scored"
    result = cli("submit", tmp_path / "score.yaml", "--cluster", dask_tls.address,
                 "--out", out, "--state-dir", state)  # fmt: skip
    assert result.exit_code == 0, result.output
    predict(model, data, tmp_path / "local", columns="all", output="both")
    files = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    assert files and files == sorted(
        p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.parquet")
    )
    for name in files:
        submitted, local = pq.read_table(out / name), pq.read_table(tmp_path / "local" / name)
        assert submitted.column_names[-2:] == ["prediction", "probability"]
        assert submitted.equals(local), name
    assert (out / "_SUCCESS").is_file()


@pytest.mark.tf
def test_a_multiworker_keras_job_submitted_to_dask_trains_on_two_workers(
    dask_tls, state: Path, tmp_path: Path
) -> None:
    """``distml submit`` of a Keras job with ``train.workers: 2`` to a ``distml cluster up``
    cluster whose workers lack distml: the gang runs as pinned Dask tasks, and the model
    it returns scores the test set it was never shown."""
    pytest.importorskip("tensorflow")
    from conftest import digits

    from distml.data.mnist import mnist_table

    for split, (images, labels) in (("train", digits(800, 1)), ("test", digits(200, 2))):
        (tmp_path / split).mkdir()
        pq.write_table(mnist_table(images, labels), tmp_path / split / "part-0.parquet")
    spec = {
        "name": "mnist-submitted",
        "model": {"type": "keras", "params": {"architecture": "mlp"}},
        "data": {"train": str(tmp_path / "train"), "test": str(tmp_path / "test"), "label": "label"},
        "train": {"epochs": 1, "batch_size": 32, "workers": 2, "seed": 3,
                  "start_timeout": 120, "collective_timeout": 60},
        "output": {"plots": False},
    }  # fmt: skip
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    result = cli("submit", tmp_path / "job.yaml", "--cluster", dask_tls.address,
                 "--out", out, "--state-dir", state)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["launcher"] == "dask tasks pinned to distinct workers"
    assert (summary["workers"], summary["replicas"]) == (2, 2)
    assert summary["backend"] == f"dask({dask_tls.address})"
    predicted = pq.read_table(out / "predictions", columns=["index", "prediction"]).to_pandas()
    truth = pq.read_table(tmp_path / "test", columns=["index", "label"]).to_pandas()
    merged = truth.merge(predicted, on="index", validate="one_to_one")
    assert len(merged) == 200
    accuracy = float((merged["label"] == merged["prediction"]).mean())
    assert accuracy == pytest.approx(summary["accuracy"], abs=1e-9)
    assert accuracy > 0.8  # learnable digits, one epoch; chance is 0.1
    assert (out / "model.keras").is_file()


def test_detached_job_is_followed_by_id(
    dask_tls, state: Path, local_seed_runs, tmp_path: Path
) -> None:
    data, local_out = local_seed_runs["linear_regression"]
    out = tmp_path / "detached"
    result = cli(
        "submit",
        *seed_spec("linear_regression", data),
        "--cluster",
        dask_tls.address,
        "--out",
        out,
        "--detach",
        "--state-dir",
        state,
    )
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = cli("jobs", "status", job_id, "--state-dir", state).stdout
        if "running" not in status and "starting" not in status:
            break
        time.sleep(0.5)
    assert f"{job_id}: succeeded" in status, cli(
        "jobs", "logs", job_id, "--state-dir", state
    ).stdout
    assert f"out {out}" in status
    assert job_id in cli("jobs", "list", "--state-dir", state).stdout
    assert "run folder:" in cli("jobs", "logs", job_id, "--state-dir", state).stdout
    same_run(out, local_out)
    missing = cli("jobs", "status", "no-such-job", "--state-dir", state)
    assert missing.exit_code == 2 and "no job 'no-such-job'" in missing.stderr


def test_a_scheduler_lost_mid_job_fails_in_one_line_and_writes_nothing(
    state: Path, long_job, tmp_path: Path
) -> None:
    record = up(state, "dask", "--workers", 2, env={})
    spec, _ = long_job
    progress = ReadingDone()
    outcome: dict = {}

    def submit() -> None:
        try:
            submit_dask(spec, record.address, tmp_path / "run", [], state, progress)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    job = threading.Thread(target=submit)
    job.start()
    assert progress.read.wait(120)
    scheduler = next(p for p in record.processes if p.role == "scheduler")
    os.kill(scheduler.pid, signal.SIGKILL)
    started = time.monotonic()
    job.join(timeout=60)
    assert not job.is_alive() and time.monotonic() - started < 30
    error = outcome["error"]
    assert isinstance(error, BackendError) and "\n" not in str(error)
    assert str(error).startswith(f"dask: lost the scheduler {record.address} during the job")
    assert not (tmp_path / "run").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no hidden half-written run folder either
    down_leaves_nothing(state, record)


@pytest.mark.skipif(
    subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
    reason="needs `unshare -m` (root) to give a worker a filesystem view without the data",
)
def test_a_data_path_the_cluster_cannot_see_is_one_clear_line(
    local_seed_runs, tmp_path: Path
) -> None:
    """The driver sees the data; the only worker, in its own mount namespace, does not."""
    hidden = tmp_path / "private"
    data = hidden / "example1"
    shutil.copytree(local_seed_runs["linear_regression"][0], data)
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--scheduler-file", str(scheduler_file), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = subprocess.Popen(
            ["unshare", "-m", "sh", "-c",
             f"mount -t tmpfs tmpfs {hidden} && exec {sys.executable} -m distributed.cli.dask_worker "
             f"{address} --nworkers 1 --nthreads 1 --no-dashboard --host 127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        from distributed import Client

        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
        started = time.monotonic()
        result = cli(
            "submit",
            *seed_spec("linear_regression", data),
            "--cluster",
            address,
            "--out",
            tmp_path / "run",
            "--state-dir",
            tmp_path / "state",
        )
        assert time.monotonic() - started < 60
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "part-00000.parquet: not found on" in errors[0]
    assert "every worker must see the data" in errors[0]
    assert not (tmp_path / "run").exists()


def test_unreachable_clusters_fail_in_one_line_and_bounded_time(
    local_seed_runs, tmp_path: Path
) -> None:
    data, _ = local_seed_runs["kmeans"]
    for url, message in [
        ("dask://127.0.0.1:9", "dask scheduler dask://127.0.0.1:9: nothing listens there"),
        ("spark://127.0.0.1:9", "spark master spark://127.0.0.1:9 did not answer within 2s"),
    ]:
        started = time.monotonic()
        result = cli(
            "submit",
            *seed_spec("kmeans", data),
            "--set",
            "backend.timeout=2",
            "--cluster",
            url,
            "--out",
            tmp_path / "r",
            "--state-dir",
            tmp_path / "s",
        )
        assert time.monotonic() - started < 20
        lines = result.stderr.strip().splitlines()
        assert (
            result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}")
        )
        assert not (tmp_path / "r").exists()
    result = cli("submit", *seed_spec("kmeans", data), "--cluster", "localhost:8786")
    assert result.exit_code == 2 and "--cluster localhost:8786: expected a URL" in result.stderr


# -- Spark ---------------------------------------------------------------------------------------
def test_spark_executors_cannot_import_distml_before_submission(
    spark_auth, local_seed_runs, tmp_path: Path
) -> None:
    """Without ``distml submit`` the executors lack distml: ``distml run`` says so in one line."""
    data, _ = local_seed_runs["kmeans"]
    secret = dict(
        line.split(None, 1) for line in Path(spark_auth.secret_file).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )  # fmt: skip
    spec = yaml.safe_load((REPO / "jobs" / "kmeans.yaml").read_text())
    spec["data"]["train"] = str(data)
    spec["backend"] = {
        "name": "spark", "master": spark_auth.address, "timeout": 60,  # a loaded machine
        "conf": {**secret, "spark.pyspark.python": sys.executable},
    }  # fmt: skip
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    result = distml_cmd("run", tmp_path / "job.yaml", "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1:] == [
        "error: spark: the executors' Python cannot import distml; install distml where the "
        "executors run, or use `distml submit`, which ships it"
    ]
    assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()
    assert oct(os.stat(spark_auth.secret_file).st_mode & 0o777) == "0o600"


def test_a_seed_job_submitted_to_spark_equals_its_local_run(
    spark_auth, state: Path, local_seed_runs, tmp_path: Path, spark_class_archive: Path
) -> None:
    """One submission (~25 s here) covers the submit path; all three seed jobs give the
    article's numbers on Spark in test_spark_backend.py. The cluster's JVMs on this machine
    (Master, Workers, the job's executors) load their classes from the drivers' archive."""
    name = "logistic_regression"
    data, local_out = local_seed_runs[name]
    loads = tmp_path / "executor-classes"
    loads.mkdir()
    result = distml_cmd(
        "submit", *seed_spec(name, data), "--cluster", spark_auth.address,
        "--out", tmp_path / name, "--state-dir", state,
        # the user's own executor options come after the archive's
        "--set", "backend.conf.spark.executor.extraJavaOptions="
                 f"-Xlog:class+load=info:file={loads}/executor-%p.log",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "run folder:" in result.stdout
    written = json.loads((tmp_path / name / "metrics.json").read_text())
    assert written["backend"] == f"spark({spark_auth.address})"
    same_run(tmp_path / name, local_out)

    executors = sorted(loads.iterdir())
    assert len(executors) >= 2, executors  # one per worker (more if one was relaunched)
    for log in executors:
        lines = log.read_text().splitlines()
        shared = [line for line in lines if "source: shared objects file (top)" in line]
        assert len(shared) > max(3500, len(lines) / 2), (log.name, len(shared), len(lines))
    for info in spark_auth.processes:  # a JVM maps the archive only if it accepted it
        maps = Path(f"/proc/{info.pid}/maps").read_text()
        assert str(spark_class_archive) in maps, info.role


def test_a_predict_job_submitted_to_spark_equals_local_predict(
    spark_auth, state: Path, local_seed_runs, tmp_path: Path
) -> None:
    """A spec with ``predict:`` submitted to the standalone cluster (executors without
    distml: submit ships it) writes the very files of a local ``distml predict``."""
    from distml.predict import predict

    data, model = local_seed_runs["kmeans"]
    spec = {
        "name": "score",
        "predict": {"model": str(model), "data": str(data), "columns": "all", "output": "both"},
    }
    (tmp_path / "score.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "scored"
    result = distml_cmd("submit", tmp_path / "score.yaml", "--cluster", spark_auth.address,
                        "--out", out, "--state-dir", state)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    predict(model, data, tmp_path / "local", columns="all", output="both")
    files = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    assert files and files == sorted(
        p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.parquet")
    )
    for name in files:
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["backend"] == f"spark({spark_auth.address})"
    assert (out / "_SUCCESS").is_file()


def test_spark_auth_refuses_a_submission_without_the_secret(
    spark_auth, local_seed_runs, tmp_path: Path
) -> None:
    data, _ = local_seed_runs["kmeans"]
    started = time.monotonic()
    result = distml_cmd(
        "submit",
        *seed_spec("kmeans", data),
        "--set",
        "backend.timeout=4",
        "--cluster",
        spark_auth.address,
        "--out",
        tmp_path / "r",
        "--state-dir",
        tmp_path / "no-secret",
    )
    assert time.monotonic() - started < 90
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: spark master {spark_auth.address} did not accept distml's application within 4s; "
        "if the cluster requires authentication, give its secret (spark.authenticate.secret; "
        "distml submit finds it for clusters started by distml cluster up --auth)"
    ]
    assert not (tmp_path / "r").exists()


def test_a_killed_spark_worker_does_not_change_the_submitted_model(
    state: Path, no_distml: dict[str, str], long_job, tmp_path: Path
) -> None:
    record = up(state, "spark", "--workers", 2, "--cores", 1, env=no_distml)
    assert (record.workers, record.cores) == (2, 1)  # submit waits for both executors' slots
    spec, local_out = long_job
    job = subprocess.Popen(
        [sys.executable, "-m", "distml.cli", "submit", str(spec), "--cluster", record.address,
         "--out", str(tmp_path / "run"), "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert job.stdout is not None
    lines = []
    for line in job.stdout:  # the driver's progress lines come through spark-submit's stdout
        lines.append(line)
        if line.startswith("reading: ") and not line.startswith("reading: 0/"):
            # Mid-read: the read's rest and the whole fit are left, so the kill lands while the
            # job runs even when the line reached us late (waiting for "reading: done" lost
            # that race once under a loaded suite: the fit had finished first).
            break
    worker = next(p for p in record.processes if p.role == "worker-0")
    os.killpg(worker.pid, signal.SIGKILL)  # the Worker JVM and the executor it launched
    output = "".join(lines) + job.stdout.read()
    assert job.wait(timeout=300) == 0, output[-3000:]
    assert "spark: lost a task" in output, output[-3000:]
    expected = json.loads((local_out / "metrics.json").read_text())["model"]
    got = json.loads((tmp_path / "run" / "metrics.json").read_text())["model"]
    assert got["n_iter"] == expected["n_iter"] > 10
    np.testing.assert_allclose(got["coef"], expected["coef"], rtol=1e-10)
    down_leaves_nothing(state, record)
