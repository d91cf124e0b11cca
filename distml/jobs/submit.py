"""``distml submit``: run a job spec on a cluster whose workers may lack distml.

* ``spark://…`` — ``spark-submit`` (the one inside pyspark) in client mode: this
  machine runs the driver (``distml run`` under spark-submit), the executors get
  distml as ``--py-files`` (a zip built now), and an ``--auth`` cluster's secret
  reaches spark-submit as a 0600 properties file, never on a command line.
* ``dask://``, ``tcp://``, ``tls://`` — this process is the client: it connects
  (with the cluster's certificates for ``tls://``), uploads the same zip to the
  workers (``Client.upload_file``, kept for workers that join later) and runs the
  job, writing the run folder like ``distml run``.

Both write the same run folder as ``distml run``, atomically.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from distml.backends import get_backend
from distml.backends.registry import parse_backend
from distml.backends.spark import class_archive
from distml.backends.spark.session import forward_stderr, java_version, log4j_config, probe_master
from distml.clusters.state import cluster_for_address
from distml.errors import SpecError
from distml.jobs.result import RunResult
from distml.jobs.runner import default_out, run_job, run_output
from distml.jobs.spec import load_spec
from distml.packaging import package_zip
from distml.progress import Progress


def submit_dask(
    spec_path: Path,
    cluster: str,
    out: Path | None,
    overrides: list[str],
    state: Path,
    progress: Progress,
    overwrite: bool = False,
) -> RunResult:
    """Run the job with this process as the Dask client; distml shipped to the workers."""
    spec = load_spec(spec_path, overrides, backend=cluster)
    run_output(spec, out, overwrite)  # the run folder is checked before connecting
    record = cluster_for_address(state, cluster)
    options = spec.backend.options()
    if record is not None and record.tls and "tls" not in options:
        options["tls"] = record.tls
    backend = get_backend(cluster, **options)
    backend.progress = progress
    with backend, tempfile.TemporaryDirectory(prefix="distml-ship-") as folder:
        shipped = package_zip(Path(folder))
        backend.client.upload_file(str(shipped))  # type: ignore[attr-defined]
        progress.message(f"shipped {shipped.name} to the workers of {cluster}")
        return run_job(spec, out, backend=backend, progress=progress, overwrite=overwrite)


def submit_spark(
    spec_path: Path,
    cluster: str,
    out: Path | None,
    overrides: list[str],
    state: Path,
    properties: Path | None = None,
    overwrite: bool = False,
) -> int:
    """``spark-submit`` the job in client mode; its exit status (0, 1 or 2) is returned.

    ``properties``: a Spark properties file for spark-submit (e.g. a cluster's
    ``spark.authenticate.secret``); by default that of a cluster distml started.
    """
    spec = load_spec(spec_path, overrides, backend=cluster)  # validated before anything starts
    run_output(spec, out, overwrite)  # and the run folder checked
    probe_master(cluster, spec.backend.timeout or 10.0)
    out = out or default_out(spec)
    arguments = ["run", str(spec_path), "--backend", cluster, "--out", str(out)]
    if overwrite:
        arguments.append("--overwrite")
    for item in overrides:
        arguments += ["--set", item]
    return spark_submit(cluster, arguments, state, properties)


def spark_submit(
    cluster: str, arguments: list[str], state: Path, properties: Path | None = None
) -> int:
    """``spark-submit`` of distml's driver (``spark_driver.py``: the ``distml`` command with
    ``arguments``) in client mode, distml shipped as ``--py-files``; its exit status.

    The driver JVM maps (or records) the class archive; ``properties``: a Spark properties
    file for spark-submit (e.g. a cluster's ``spark.authenticate.secret``), by default that
    of a cluster distml started.
    """
    from distml.backends.spark.home import spark_home

    java, _ = java_version()
    archive = class_archive.plan(java)  # the driver JVM is spark-submit's: same jars
    record = cluster_for_address(state, cluster)
    with tempfile.TemporaryDirectory(prefix="distml-ship-") as folder:
        shipped = package_zip(Path(folder))
        command = [
            str(spark_home() / "bin" / "spark-submit"),
            "--master", cluster,
            "--deploy-mode", "client",
            "--py-files", str(shipped),
            "--conf", f"spark.pyspark.python={sys.executable}",
            "--conf", f"spark.pyspark.driver.python={sys.executable}",
            "--conf", f"spark.driver.extraJavaOptions=-Dlog4j2.configurationFile={log4j_config()} "
                      f"{archive.java_options}".rstrip(),
            "--conf", "spark.ui.enabled=false",
        ]  # fmt: skip
        if record is not None and record.kind == "spark" and record.cores:
            # all of the cluster's cores: the driver waits for every executor (a late one's
            # worker would otherwise sit the job out; session.wait_for_executors)
            command += ["--conf", f"spark.cores.max={record.workers * record.cores}"]
        if properties is not None:
            command += ["--properties-file", str(properties)]
        elif record is not None and record.secret_file:
            command += ["--properties-file", record.secret_file]
        command += [str(Path(__file__).with_name("spark_driver.py")), *arguments]
        driver_stderr = Path(folder) / "driver.stderr"
        driver_stderr.touch()
        env = {
            **os.environ,
            "PYSPARK_PYTHON": sys.executable,
            "DISTML_DRIVER_STDERR": str(driver_stderr),
        }
        host = cluster.split("://", 1)[1].rsplit(":", 1)[0]
        if host in ("127.0.0.1", "localhost"):  # a cluster on this machine: stay on loopback
            env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        env.pop("PYSPARK_GATEWAY_PORT", None)
        code = _run_streaming(command, env, driver_stderr)
    if archive.recording is not None:  # spark-submit has exited: its JVM wrote the archive
        class_archive.publish(archive.recording, java)
    return code


def _run_streaming(command: list[str], env: dict[str, str], driver_stderr: Path) -> int:
    """Run ``command``: its stdout to ours; the JVM's stderr through the noise filter and the
    driver's stderr (a file, see ``spark_driver.py``) to ours as it grows."""
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    jvm = threading.Thread(target=forward_stderr, args=(proc.stderr.fileno(),), daemon=True)
    jvm.start()
    done = threading.Event()
    driver = threading.Thread(target=_follow, args=(driver_stderr, done), daemon=True)
    driver.start()
    code = proc.wait()
    done.set()
    jvm.join(timeout=5)
    driver.join(timeout=5)
    return code


def _follow(path: Path, done: threading.Event) -> None:
    """Copy what is appended to ``path`` to our stderr until ``done`` (then the rest)."""
    with open(path, encoding="utf-8", errors="replace") as source:
        while True:
            finished = done.is_set()
            chunk = source.read()
            if chunk:
                sys.stderr.write(chunk)
                sys.stderr.flush()
            if finished:
                return
            time.sleep(0.1)


def engine_of(cluster: str) -> str:
    """``dask`` or ``spark`` for a cluster URL; anything else is a :class:`SpecError`."""
    if "://" not in cluster:
        raise SpecError(
            f"--cluster {cluster}: expected a URL (spark://HOST:PORT, dask://HOST:PORT, "
            "tcp://HOST:PORT or tls://HOST:PORT)"
        )
    kind, _ = parse_backend(cluster)
    if kind not in ("dask", "spark") or cluster.startswith("k8s://"):
        raise SpecError(
            f"--cluster {cluster}: distml submits to spark:// and dask/tcp/tls:// clusters"
        )
    return kind
