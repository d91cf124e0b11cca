"""The SparkSession a Spark backend runs on: checks before start, a quiet JVM, slots.

Everything that can fail before Spark starts is checked first and reported in one
line: a missing or too old Java, a standalone master that does not answer. The JVM
logs through distml's log4j2 configuration (warnings only; the noisy start-up
loggers and MLlib's "native BLAS not found" warnings silenced) and its own
start-up lines are filtered from its stderr, which otherwise passes through
untouched (Spark's console progress bar included).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from importlib import resources
from typing import Any

from distml.backends.spark.home import spark_home
from distml.errors import BackendError

log = logging.getLogger(__name__)

MIN_JAVA = 17
INSTALL_JAVA = "install openjdk-17-jre-headless (apt-get install openjdk-17-jre-headless) or set JAVA_HOME to a Java 17+ runtime"
# Lines the JVM prints before log4j is configured, or that log4j cannot silence.
_NOISE = (
    b"WARNING: Using incubator modules",
    b"Using Spark's default log4j profile",
    b"Setting default log level to",
    b"To adjust logging level use sc.setLogLevel",
    b"netlib-blas: JNI_OnLoad",  # MLlib looking for a system BLAS; it falls back to Java
    b"netlib-lapack: JNI_OnLoad",
)


def java_version(env: dict[str, str] | None = None) -> tuple[str, int]:
    """``(path, major version)`` of the Java that PySpark will start, or a :class:`BackendError`."""
    env = dict(os.environ if env is None else env)
    home = env.get("JAVA_HOME")
    if home:
        java = os.path.join(home, "bin", "java")
        if not os.access(java, os.X_OK):
            raise BackendError(
                f"JAVA_HOME={home} has no bin/java: Spark needs Java {MIN_JAVA}+; {INSTALL_JAVA}"
            )
    else:
        found = shutil.which("java", path=env.get("PATH"))
        if found is None:
            raise BackendError(
                f"Java not found (JAVA_HOME is unset and no java on PATH): Spark needs Java "
                f"{MIN_JAVA}+; {INSTALL_JAVA}"
            )
        java = found
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"{java} -version failed ({exc}); {INSTALL_JAVA}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise BackendError(f"cannot tell the version of {java}; Spark needs Java {MIN_JAVA}+")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_292" is Java 8
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BackendError(
            f"Spark needs Java {MIN_JAVA}+, found Java {major} at {java}: {INSTALL_JAVA}"
        )
    return java, major


def probe_master(master: str, timeout: float) -> None:
    """Fail fast when a standalone master (``spark://host:port[,host:port]``) does not answer.

    Spark itself would retry for a minute before giving up; YARN and Kubernetes
    masters are reached through their own clients and are not probed.
    """
    if not master.startswith("spark://"):
        return
    failures = []
    for hostport in master[len("spark://") :].split(","):
        host, _, port = hostport.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
            return
        except (OSError, ValueError) as exc:
            failures.append(f"{hostport}: {exc}")
    raise BackendError(
        f"spark master {master} did not answer within {timeout:g}s ({'; '.join(failures)})"
    )


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def executors_here(master: str) -> bool:
    """Whether this master's executors are JVMs on this machine: a standalone master on
    loopback (``distml cluster up``'s) or ``local-cluster[…]``; not ``local`` (no executor
    JVMs), YARN, Kubernetes or a master on another host."""
    if master.startswith("local-cluster"):
        return True
    if not master.startswith("spark://"):
        return False
    hosts = [hostport.rpartition(":")[0] for hostport in master[len("spark://") :].split(",")]
    return all(host in LOOPBACK for host in hosts)


def spark_default(key: str) -> str | None:
    """``key``'s value in the ``spark-defaults.conf`` spark-submit reads (``$SPARK_CONF_DIR``,
    else ``$SPARK_HOME/conf``, else pyspark's ``conf/``): a setting distml passes replaces
    that file's, so distml reads it first where it adds to a setting."""
    folder = os.environ.get("SPARK_CONF_DIR") or os.path.join(spark_home(), "conf")
    try:
        with open(os.path.join(folder, "spark-defaults.conf"), encoding="utf-8") as lines:
            for line in lines:
                parts = re.split(r"\s*[=:\s]\s*", line.strip(), maxsplit=1)
                if parts[0] == key and not line.lstrip().startswith("#"):
                    return parts[1] if len(parts) > 1 else ""
    except OSError:
        return None
    return None


def log4j_config() -> str:
    """The ``file:`` URI of distml's log4j2 configuration for the driver JVM."""
    path = resources.files("distml.backends.spark").joinpath("log4j2.properties")
    return f"file:{path}"


def launches_jvm() -> bool:
    """Whether a new SparkContext here starts its own driver JVM (not spark-submit's, not an
    earlier session's)."""
    from pyspark import SparkContext

    return SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ


def stop_jvm(timeout: float) -> bool:
    """End the driver JVM this process launched (after ``spark.stop()``) and wait for it to
    exit; ``True`` when it exited cleanly. A later session here launches a new one."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if gateway is None or proc is None:
        return False
    try:
        gateway.shutdown()
    except Exception:  # noqa: BLE001 - the JVM may be gone already; its exit status decides
        log.debug("spark: the gateway did not shut down cleanly", exc_info=True)
    SparkContext._gateway = None
    SparkContext._jvm = None
    if proc.stdin is not None:
        proc.stdin.close()  # the JVM exits when its stdin closes (PythonGatewayServer)
    try:
        return proc.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def launch_context(conf: Any) -> Any:
    """A new SparkContext whose JVM's stderr is filtered of its start-up noise."""
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway

    if not launches_jvm():
        return SparkContext(conf=conf)  # the JVM exists (spark-submit, or an earlier session)
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    proc = getattr(gateway, "proc", None)
    if proc is not None and proc.stderr is not None:
        threading.Thread(
            target=forward_stderr,
            args=(proc.stderr.fileno(),),
            name="distml-jvm-stderr",
            daemon=True,
        ).start()
    return SparkContext(conf=conf, gateway=gateway)


def forward_stderr(fd: int) -> None:
    """Copy the JVM's stderr to ours as it comes (progress bars need no newline), minus noise."""
    out = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = [line for line in lines if not line.startswith(_NOISE)]
        data = b"".join(line + b"\n" for line in kept)
        if pending and not any(n.startswith(pending[: len(n)]) for n in _NOISE):
            data, pending = data + pending, b""  # a partial line (a progress bar): pass it on now
        if data:
            try:
                os.write(out, data)
            except OSError:
                return


def registered_context(conf: Any, master: str, timeout: float) -> Any:
    """A SparkContext registered with a cluster manager within ``timeout`` seconds.

    Spark blocks while it registers with a standalone master and retries for a
    minute (3 × 20 s, fixed) when the master will not take the application, e.g.
    when the cluster requires a secret the application lacks.
    """
    result: dict[str, Any] = {}

    def create() -> None:
        try:
            result["context"] = launch_context(conf)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=create, name="distml-spark-register", daemon=True)
    thread.start()
    thread.join(timeout)
    if "context" in result:
        return result["context"]
    hint = (
        "if the cluster requires authentication, give its secret "
        "(spark.authenticate.secret; distml submit finds it for clusters started by "
        "distml cluster up --auth)"
    )
    if "error" in result:
        lines = str(result["error"]).strip().splitlines()
        raise BackendError(
            f"spark master {master} refused distml's application ({lines[0] if lines else ''}); {hint}"
        )
    raise BackendError(
        f"spark master {master} did not accept distml's application within {timeout:g}s; {hint}"
    )


def slots(sc: Any) -> int:
    """How many tasks the cluster can run at once right now (what barrier stages need)."""
    jsc = sc._jsc.sc()
    return int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile()))


def wait_for_executors(sc: Any, master: str, timeout: float, expected: int | None = None) -> int:
    """Wait until the cluster offers task slots; local masters have them at once.

    ``expected``: the slots asked for (:func:`expected_slots`; ``distml submit`` sets
    ``spark.cores.max`` to a ``distml cluster up`` cluster's cores): distml waits for all
    of them, so a slow executor's registration does not leave its worker out of the job;
    without it, until the count has settled.
    """
    deadline = time.monotonic() + timeout
    while True:
        available = slots(sc)
        if expected is not None and available >= expected:
            return available
        if expected is None and available > 0:
            return _settled(sc, available)
        if time.monotonic() > deadline:
            if available > 0:
                log.warning(
                    "spark: %d of the %d task slots asked for (spark.cores.max) registered "
                    "within %gs; going on with them",
                    available,
                    expected,
                    timeout,
                )
                return available
            raise BackendError(
                f"spark master {master} accepted distml but no executor started within "
                f"{timeout:g}s (are workers running, with enough free cores and memory?)"
            )
        time.sleep(0.2)


def expected_slots(conf: Any) -> int | None:
    """Task slots a SparkConf's ``spark.cores.max`` asks for (None when unset or unreadable)."""
    try:
        cores = int(conf.get("spark.cores.max", "0"))
        per_task = int(conf.get("spark.task.cpus", "1"))
    except ValueError:
        return None
    return cores // max(per_task, 1) if cores > 0 else None


def _settled(sc: Any, available: int, quiet: float = 1.0, limit: float = 5.0) -> int:
    """Executors register one by one: once the first is in, wait until the slot count has
    not changed for ``quiet`` seconds (at most ``limit``), so distml's tasks use them all."""
    start = changed = time.monotonic()
    while time.monotonic() - changed < quiet and time.monotonic() - start < limit:
        time.sleep(0.2)
        now = slots(sc)
        if now != available:
            available, changed = now, time.monotonic()
    return available


class StageLines:
    """Logs one line per finished Spark stage (when the console progress bar is off)."""

    def __init__(self, sc: Any, say: Any, interval: float = 0.5) -> None:
        self._tracker = sc.statusTracker()
        self._say = say
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="distml-spark-stages", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        active: dict[int, float] = {}
        while not self._stop.wait(self._interval):
            try:
                now = set(self._tracker.getActiveStageIds())
                for stage in now - active.keys():
                    active[stage] = time.monotonic()
                for stage in set(active) - now:
                    started = active.pop(stage)
                    info = self._tracker.getStageInfo(stage)
                    if info is not None:
                        ended = "done" if info.numCompletedTasks >= info.numTasks else "stopped"
                        self._say(
                            f"spark stage {stage} {ended}: {info.name} "
                            f"({info.numCompletedTasks}/{info.numTasks} tasks, "
                            f"~{time.monotonic() - started:.1f}s)"
                        )
            except Exception:  # noqa: BLE001 - the context is stopping; nothing to report
                return
