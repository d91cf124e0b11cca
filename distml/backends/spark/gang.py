"""A gang on Spark: one barrier stage, one task per member.

A barrier stage starts all its tasks at once or none, the way XGBoost's and
PySpark's ``TorchDistributor`` start their workers. Each task reserves its port,
exchanges ``host:port`` (and whether it has a GPU) with the others through
``BarrierTaskContext.allGather``, checks in with the driver's coordinator and runs
its member (:func:`~distml.backends.gang.run_member`); log lines and exit statuses
come back over that connection, so the driver sees a lost task at once and cancels
the stage rather than waiting for Spark.

Spark never starts a barrier stage without enough free slots (it retries the check,
then fails) and refuses one under dynamic allocation, so both are checked first and
reported in one line.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from distml.backends.gang import Coordinator, GangResult, GangTask, reserve_port, run_member
from distml.backends.spark.session import slots
from distml.errors import BackendError


def preflight(sc: Any, size: int) -> None:
    """One clear line instead of a barrier stage that cannot start."""
    conf = sc.getConf()
    if str(conf.get("spark.dynamicAllocation.enabled", "false")).lower() == "true":
        raise BackendError(
            "spark: train.workers runs a barrier stage, which Spark refuses under dynamic "
            "allocation; set backend.conf spark.dynamicAllocation.enabled: false"
        )
    free = slots(sc)
    if free < size:
        raise BackendError(
            f"spark: train.workers={size} needs {size} task slots at once, but {sc.master} "
            f"offers {free} (one per executor core / spark.task.cpus); add executors or "
            "cores, or lower train.workers"
        )


def run_spark_gang(backend: Any, task: GangTask, size: int) -> GangResult:
    """Run ``task`` as a barrier stage of ``size`` tasks on ``backend``'s SparkSession."""
    from pyspark import InheritableThread

    sc = backend.spark.sparkContext
    with backend.exclusive():  # the partition service must not hold the slots
        preflight(sc, size)
        conf = sc.getConf()
        host = conf.get("spark.driver.host", "127.0.0.1")
        bind = conf.get("spark.driver.bindAddress", host)
        coordinator = Coordinator(
            size,
            host,
            backend.progress,
            task.start_timeout,
            send_peers=False,
            bind=bind,
            name=task.name,
        )
        group = f"distml-gang-{uuid.uuid4().hex[:12]}"
        body = functools.partial(spark_member, task, coordinator.address, coordinator.token)
        failure: list[BaseException] = []

        def stage() -> None:
            sc.setJobGroup(group, f"distml: {task.name}", interruptOnCancel=True)
            try:
                sc.parallelize(range(size), size).barrier().mapPartitions(body).collect()
            except BaseException as exc:  # noqa: BLE001 - reported by engine_lost
                failure.append(exc)

        def engine_lost() -> str | None:
            if failure:
                lines = str(failure[0]).strip().splitlines()
                return f"the barrier stage failed ({lines[0] if lines else type(failure[0])})"
            return None

        thread = InheritableThread(target=stage, name="distml-spark-gang", daemon=True)
        thread.start()
        try:
            return coordinator.run(engine_lost)
        finally:
            coordinator.close()
            thread.join(timeout=20)
            if thread.is_alive():
                sc.cancelJobGroup(group)
                thread.join(timeout=30)


def spark_member(
    task: GangTask, coordinator: tuple[str, int], token: str, _: Iterable[Any]
) -> Iterator[str]:
    """The body of one barrier task: reserve, ``allGather`` the addresses, run the member."""
    from pyspark import BarrierTaskContext

    context = BarrierTaskContext.get()
    rank = context.partitionId()
    host = context.getTaskInfos()[rank].address.rsplit(":", 1)[0]
    reserved = reserve_port()
    resources = context.resources()
    gpus = list(resources["gpu"].addresses) if "gpu" in resources else []
    gpus = gpus[: task.gpus] if task.gpus else []
    mine = json.dumps({"address": f"{host}:{reserved[1]}", "gpus": len(gpus)})
    everyone = [json.loads(item) for item in context.allGather(mine)]
    result = run_member(
        task,
        rank,
        tuple(coordinator),  # type: ignore[arg-type]
        token,
        host,
        gpu_ids=gpus,
        threads=task.threads or int(context.cpus() or 1),
        reserved=reserved,
        peers=[item["address"] for item in everyone],
        all_gpu=all(item["gpus"] > 0 for item in everyone),
    )
    yield json.dumps(result)
