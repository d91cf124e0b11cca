"""``distml cluster up spark``: a Spark standalone Master and Workers from pyspark itself.

``spark-class org.apache.spark.deploy.master.Master`` / ``…worker.Worker`` from the
pyspark installation (no separate Spark download), bound to 127.0.0.1, detached,
logs in the cluster's folder. With ``auth=True`` the cluster requires
``spark.authenticate`` with a generated secret, kept in a 0600 properties file
that ``distml submit`` hands to ``spark-submit``; a submission without it is refused.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from pathlib import Path

from distml.backends.spark import class_archive
from distml.backends.spark.home import spark_home
from distml.backends.spark.session import java_version
from distml.clusters.processes import spawn, stop, wait_until
from distml.clusters.state import ClusterRecord, new_cluster_folder, write_private
from distml.errors import BackendError

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"
REGISTERED = "Successfully registered with master"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def up(
    state: Path,
    workers: int = 2,
    cores: int = 1,
    memory: str = "1g",
    auth: bool = False,
    host: str = "127.0.0.1",
    timeout: float = 120.0,
) -> ClusterRecord:
    """Start a Master and ``workers`` Workers; return once all Workers registered."""
    if workers < 1 or cores < 1:
        raise BackendError("--workers and --cores must be >= 1")
    java, _ = java_version()
    cluster_id, folder = new_cluster_folder(state, "spark")
    port = _free_port(host)
    record = ClusterRecord(
        id=cluster_id,
        kind="spark",
        address=f"spark://{host}:{port}",
        folder=str(folder),
        workers=workers,
        cores=cores,
    )
    try:
        properties = ["spark.master.rest.enabled false"]
        if auth:
            properties += [
                "spark.authenticate true",
                f"spark.authenticate.secret {secrets.token_hex(32)}",
            ]
        props = write_private(folder / "spark.properties", "\n".join(properties) + "\n")
        if auth:
            record.secret_file = str(props)
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": host}
        # the Master and Workers map the drivers' class archive (same classpath): up ~6 s sooner
        options = class_archive.with_mapping(java, env.get("SPARK_DAEMON_JAVA_OPTS", ""))
        if options:
            env["SPARK_DAEMON_JAVA_OPTS"] = options
        spark_class = str(spark_home() / "bin" / "spark-class")
        master = [
            spark_class, MASTER, "--host", host, "--port", str(port),
            "--webui-port", str(_free_port(host)), "--properties-file", str(props),
        ]  # fmt: skip
        record.processes.append(spawn("master", master, folder / "master.log", env))
        record.save()
        if not wait_until(lambda: _answers(host, port), timeout):
            raise BackendError(
                f"the Spark master did not start within {timeout:g}s; see {folder / 'master.log'}"
            )
        for i in range(workers):
            worker = [
                spark_class, WORKER, "--host", host, "--cores", str(cores), "--memory", memory,
                "--webui-port", str(_free_port(host)), "--work-dir", str(folder / f"work-{i}"),
                "--properties-file", str(props), record.address,
            ]  # fmt: skip
            record.processes.append(spawn(f"worker-{i}", worker, folder / f"worker-{i}.log", env))
        record.save()
        logs = [Path(p.log) for p in record.processes if p.role.startswith("worker")]
        if not wait_until(lambda: all(REGISTERED in _text(log) for log in logs), timeout):
            joined = sum(REGISTERED in _text(log) for log in logs)
            raise BackendError(
                f"only {joined} of {workers} Spark workers registered within {timeout:g}s; "
                f"see the worker logs in {folder}"
            )
        return record
    except BaseException:
        stop(record.processes)
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
