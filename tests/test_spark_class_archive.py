"""The class archive of Spark driver JVMs: recorded once, mapped by every later driver, never
given to a JVM when it could crash it, out of the way of users' own archive options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

pytest.importorskip("pyspark", reason="the spark extra is not installed")
from distml.backends.spark import class_archive  # noqa: E402
from distml.backends.spark.backend import SparkBackend  # noqa: E402
from distml.backends.spark.session import executors_here, java_version  # noqa: E402

pytestmark = pytest.mark.spark


def test_a_driver_jvm_maps_its_classes_from_the_archive(
    spark_class_archive: Path, tmp_path: Path
) -> None:
    """A ``distml run`` on Spark after the first: its driver JVM loads its classes from the
    archive (the JVM's own class-loading log says where each came from)."""
    name = spark_class_archive.name
    assert name.endswith(f"-{spark_class_archive.stat().st_size}.jsa")
    assert list(spark_class_archive.parent.glob("*.tmp")) == []  # the recording was moved
    log = tmp_path / "classes.log"
    spec = yaml.safe_load((REPO / "jobs" / "kmeans.yaml").read_text())
    spec["data"]["train"] = str(tmp_path / "example3")
    spec["backend"] = {
        "name": "spark", "master": "local[2]",
        "conf": {"spark.driver.extraJavaOptions": f"-Xlog:class+load=info:file={log}"},
    }  # fmt: skip
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [sys.executable, "-m", "distml.cli", "run", str(tmp_path / "job.yaml"),
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "inertia: 15.98" in result.stdout  # the article's example, unchanged
    assert "saving the driver JVM's classes" not in result.stderr  # not recorded twice
    lines = log.read_text().splitlines()
    shared = [line for line in lines if "source: shared objects file" in line]
    assert any("org.apache.spark.SparkContext source: shared objects file" in x for x in shared)
    assert len(shared) > 0.8 * len(lines) > 8000, (len(shared), len(lines))


def test_an_archive_that_would_crash_the_jvm_is_never_used(
    spark_class_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A truncated recording is refused at publication; a published archive cut short later
    (its size no longer the one in its name) is not given to a JVM: a new one is recorded."""
    java, _ = java_version()
    archives, cwd = tmp_path / "archives", tmp_path / "cwd"
    archives.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("DISTML_SPARK_CLASS_ARCHIVE", str(archives))
    monkeypatch.chdir(cwd)
    key = class_archive.install_key(java)
    cut = spark_class_archive.read_bytes()[: 4 << 20]
    recording = class_archive.Recording(archives / f"{key}.{os.getpid()}.tmp", archives, key)
    recording.tmp.write_bytes(cut)
    assert class_archive.publish(recording, java) is None
    assert list(archives.iterdir()) == []  # refused and removed
    assert list(cwd.iterdir()) == []  # the crashed check left no hs_err_pid*.log

    (archives / f"{key}-{spark_class_archive.stat().st_size}.jsa").write_bytes(cut)
    plan = class_archive.plan(java)
    assert plan.java_options.startswith("-XX:ArchiveClassesAtExit=")
    assert plan.recording is not None and plan.recording.tmp.name == f"{key}.{os.getpid()}.tmp"


def test_one_process_records_and_users_options_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java, _ = java_version()
    monkeypatch.setenv("DISTML_SPARK_CLASS_ARCHIVE", str(tmp_path))
    key = class_archive.install_key(java)
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f"{key}.{busy.pid}.tmp").write_bytes(b"")  # a live process is recording
        assert class_archive.plan(java) == class_archive.ArchivePlan("")
    finally:
        busy.kill()
        busy.wait()
    # its recording is abandoned once it is gone: the next driver records, under its own name
    plan = class_archive.plan(java)
    assert plan.recording is not None
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.{os.getpid()}.tmp"]  # ours only
    own = "-XX:SharedArchiveFile=/opt/mine.jsa"
    assert class_archive.plan(java, own) == class_archive.ArchivePlan("")
    monkeypatch.setenv("DISTML_SPARK_CLASS_ARCHIVE", "off")
    assert class_archive.plan(java) == class_archive.ArchivePlan("")


def test_a_cache_folder_that_cannot_be_written_means_no_archive_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive is an optimisation: a folder that is a file (or read-only) gives the JVM no
    archive options, and Spark starts as it did without one."""
    java, _ = java_version()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    monkeypatch.setenv("DISTML_SPARK_CLASS_ARCHIVE", str(blocker / "classes"))
    assert class_archive.plan(java) == class_archive.ArchivePlan("")
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize(
    ("master", "here"),
    [
        ("spark://127.0.0.1:7077", True),
        ("spark://localhost:7077,127.0.0.1:7078", True),
        ("local-cluster[2,1,1024]", True),
        ("local[2]", False),  # no executor JVMs
        ("spark://10.0.0.5:7077", False),
        ("spark://127.0.0.1:7077,spark-2.example:7077", False),
        ("yarn", False),
        ("k8s://https://127.0.0.1:6443", False),
    ],
)
def test_executors_on_this_machine_are_recognised(master: str, here: bool) -> None:
    assert executors_here(master) is here


def test_executors_and_daemons_here_map_the_published_archive(
    spark_class_archive: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Executors and the Master and Workers of a cluster on this machine share the drivers'
    classpath: they map the published archive (never record one), after which come the
    user's own options (from the spec, or spark-defaults.conf); the user's archive options,
    or archives off, leave theirs alone."""
    java, _ = java_version()
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # _spark_conf would set it
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))  # no spark-defaults.conf yet
    mapped = f"-XX:SharedArchiveFile={spark_class_archive} {class_archive.QUIET}"
    assert class_archive.mapping_options(java) == mapped
    assert class_archive.with_mapping(java, "-Dx=1") == f"{mapped} -Dx=1"

    def executor_options(master: str, conf: dict[str, str]) -> str | None:
        backend = SparkBackend(master=master, conf=conf)
        backend._java = java
        return backend._spark_conf(master).get("spark.executor.extraJavaOptions")

    assert executor_options("spark://127.0.0.1:7077", {}) == mapped
    own = {"spark.executor.extraJavaOptions": "-Xss4m"}
    assert executor_options("spark://127.0.0.1:7077", own) == f"{mapped} -Xss4m"
    assert executor_options("spark://10.0.0.5:7077", own) == "-Xss4m"  # the path is ours
    assert executor_options("local[2]", {}) is None
    theirs = {"spark.executor.extraJavaOptions": "-XX:SharedArchiveFile=/opt/mine.jsa"}
    assert (
        executor_options("spark://127.0.0.1:7077", theirs) == "-XX:SharedArchiveFile=/opt/mine.jsa"
    )
    assert (
        class_archive.with_mapping(java, "-XX:SharedArchiveFile=/opt/m.jsa")
        == "-XX:SharedArchiveFile=/opt/m.jsa"
    )
    (tmp_path / "spark-defaults.conf").write_text(
        "spark.executor.extraJavaOptions  -Dfrom.defaults=1\n"
    )
    assert executor_options("spark://127.0.0.1:7077", {}) == f"{mapped} -Dfrom.defaults=1"
    assert executor_options("spark://127.0.0.1:7077", own) == f"{mapped} -Xss4m"  # spec wins
    monkeypatch.setenv("DISTML_SPARK_CLASS_ARCHIVE", "off")
    assert class_archive.mapping_options(java) == ""
    assert executor_options("spark://127.0.0.1:7077", {}) is None
