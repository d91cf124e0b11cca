"""A class-data-sharing archive for the Spark JVMs distml starts: Spark in seconds, not tens.

Why: a Spark driver JVM loads ~17,800 classes from pyspark's 280 jars. On this project's
2-core reference machine it loads about 1,000 a second, so a ``local[2]`` SparkSession took
11–18 s to start and its first job another 5–8 s. The JDK's dynamic AppCDS archive
(JDK 13+) maps those classes, already parsed and verified, from one file instead:
measured side by side, 5–8 s to start and 2.5–3.5 s for the first job.

How: the first driver finding no archive records one (``-XX:ArchiveClassesAtExit``) into a
temporary file named after this process; the JVM writes it on exit (~15 s, once), and
distml checks it before renaming it into place, its size in its
name. Every later driver maps it (``-XX:SharedArchiveFile``), and so do the other JVMs of a
standalone cluster on this machine — its Master and Workers (``distml cluster up``) and
executors (a ``spark://`` master on loopback) — whose classpath is the drivers': a
cluster starts in ~12 s instead of ~19, each job's executors ~3 s sooner. A truncated archive crashes
the JVM that maps it, so a recording is published only after the JVM that wrote it exited
cleanly and a ``java -version`` mapping it exited cleanly too, and an archive whose size
differs from its name's is never given to a JVM.
The JVM itself refuses an archive of another JDK or classpath and starts as before; the
name also carries a hash of the Java binary and of Spark's jars folder, so a new install
records its own.

Where: ``$DISTML_SPARK_CLASS_ARCHIVE`` (a folder; ``0`` or ``off`` turns the archive off),
else ``$XDG_CACHE_HOME/distml/spark-classes``, else ``~/.cache/distml/spark-classes``.
An archive is ~120–150 MB.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from distml.backends.spark.home import spark_home

# JVM options on archives are reported through unified logging on stdout: keep them quiet
# (an archive the JVM cannot use is simply not used).
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
# A check that crashes must not leave hs_err_pid*.log or a core in the user's folder.
NO_CRASH_FILES = ("-XX:ErrorFile=/dev/null", "-XX:-CreateCoredumpOnCrash")
STALE_SECONDS = 3600  # a recording older than this is abandoned
_USER_OWNED = ("SharedArchiveFile", "ArchiveClassesAtExit", "-Xshare")


@dataclass(frozen=True)
class Recording:
    """An archive being written by a driver JVM this process started."""

    tmp: Path
    folder: Path
    key: str


@dataclass(frozen=True)
class ArchivePlan:
    """The JVM options for one driver, and the recording to publish once it has exited."""

    java_options: str
    recording: Recording | None = None


def archive_folder() -> Path | None:
    """Where archives live, or ``None`` when turned off."""
    setting = os.environ.get("DISTML_SPARK_CLASS_ARCHIVE", "")
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    if setting:
        return Path(setting)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "distml" / "spark-classes"


def install_key(java: str) -> str:
    """A hash of what an archive depends on: the Java binary and Spark's jars
    (``$SPARK_HOME/jars``, else those of the pyspark package; under spark-submit, which
    sets ``SPARK_HOME``, ``pyspark`` itself is imported from a zip)."""
    jars = spark_home() / "jars"
    java_path = os.path.realpath(java)
    parts = [java_path, os.stat(java_path).st_mtime_ns, str(jars), os.stat(jars).st_mtime_ns]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def plan(java: str, user_options: str = "") -> ArchivePlan:
    """Options that map this install's archive, or record one when there is none yet.

    Nothing is added when the user passes archive options of their own, when archives
    are off, or when the cache folder cannot be written; at most one process records.
    """
    folder = archive_folder()
    if folder is None or any(word in user_options for word in _USER_OWNED):
        return ArchivePlan("")
    try:
        key = install_key(java)
        folder.mkdir(parents=True, exist_ok=True)
        found = usable_archive(folder, key)
        if found is not None:
            return ArchivePlan(_mapping(found))
        if _someone_records(folder, key):
            return ArchivePlan("")
        tmp = folder / f"{key}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.touch()  # the mark that this process records (the JVM replaces it on exit)
        return ArchivePlan(f"-XX:ArchiveClassesAtExit={tmp} {QUIET}", Recording(tmp, folder, key))
    except OSError:
        return ArchivePlan("")


def mapping_options(java: str, user_options: str = "") -> str:
    """Options that map this install's published archive, or ``""`` (none yet, archives off,
    or the user's own archive options). Never records: for the JVMs of a standalone cluster
    on this machine (Master, Workers, executors), whose classpath is the driver's
    (``conf/``, ``jars/*`` of the same pyspark) and whose lives are too long or too short
    to record one. A JVM given an archive of another JDK or classpath does not use it.
    """
    folder = archive_folder()
    if folder is None or any(word in user_options for word in _USER_OWNED):
        return ""
    try:
        found = usable_archive(folder, install_key(java))
    except OSError:
        return ""
    return _mapping(found) if found is not None else ""


def with_mapping(java: str, user_options: str) -> str:
    """``user_options`` after the options that map the published archive (if any): the JVM
    options of a cluster's Master, Workers and executors on this machine."""
    return f"{mapping_options(java, user_options)} {user_options}".strip()


def _mapping(archive: Path) -> str:
    return f"-XX:SharedArchiveFile={archive} {QUIET}"


def usable_archive(folder: Path, key: str) -> Path | None:
    """The published archive for ``key`` whose size is the one in its name."""
    for path in folder.glob(f"{key}-*.jsa"):
        match = re.fullmatch(rf"{key}-(\d+)\.jsa", path.name)
        try:
            if match and path.stat().st_size == int(match.group(1)):
                return path
        except OSError:
            continue
    return None


def _someone_records(folder: Path, key: str) -> bool:
    """Whether a live process is recording this archive now (stale recordings are removed)."""
    busy = False
    for path in folder.glob(f"{key}.*.tmp"):
        try:
            pid = int(path.name.split(".")[1])
            fresh = time.time() - path.stat().st_mtime < STALE_SECONDS
        except (ValueError, IndexError, OSError):
            continue
        if fresh and psutil.pid_exists(pid):
            busy = True
        else:
            path.unlink(missing_ok=True)
    return busy


def discard(recording: Recording) -> None:
    """Drop a recording whose JVM did not exit cleanly (so the next driver records anew)."""
    recording.tmp.unlink(missing_ok=True)


def publish(recording: Recording, java: str) -> Path | None:
    """Move a recording the JVM finished writing into place, once ``java`` maps it cleanly."""
    tmp = recording.tmp
    try:
        if not tmp.is_file() or tmp.stat().st_size == 0:
            return None
        check = subprocess.run(
            [java, f"-XX:SharedArchiveFile={tmp}", *QUIET.split(), *NO_CRASH_FILES, "-version"],
            capture_output=True,
            timeout=60,
        )
        if check.returncode != 0:
            return None
        final = recording.folder / f"{recording.key}-{tmp.stat().st_size}.jsa"
        os.replace(tmp, final)
        return final
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        tmp.unlink(missing_ok=True)
