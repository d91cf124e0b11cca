"""Multi-worker Keras jobs, driver side: plan, start the workers as a gang, restart, publish.

``train.workers: N`` turns a Keras job into N worker processes running
``MultiWorkerMirroredStrategy`` (:mod:`distml.deep.worker`), started by the job's
backend as a gang (:meth:`~distml.backends.base.Backend.run_gang`): local processes,
a Spark barrier stage or Dask tasks pinned to distinct workers. The driver never
imports TensorFlow. It reads the Parquet footers, plans every rank's shard
(:mod:`distml.deep.shards`), writes the plan into the job's state folder
``.NAME.workers/`` beside ``--out`` (where the per-rank checkpoints go too: every
worker must reach it, as they must reach the data), and starts the gang. A worker
that is killed or lost ends the whole gang (the others are aborted, never left
waiting); the gang is then started again — at most ``train.max_restarts`` times — and
resumes after the last epoch every rank finished. The chief writes the run folder's
files into the output's temporary folder; the driver adds the launcher to
``metrics.json`` and publishes the folder with one rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from distml.atomic import Destination
from distml.backends import Backend, get_backend
from distml.backends.gang import GangLost, GangTask
from distml.data.storage import StorageOptions, is_object_store, options_environment
from distml.deep.checkpoints import RankCheckpoints, StateFolder
from distml.deep.models import default_learning_rate
from distml.deep.shards import plan_shards, shard_rows
from distml.deep.train import MODEL_FILE, _open_data
from distml.deep.worker import tf_config_env
from distml.errors import BackendError, DataError, ModelError, SpecError
from distml.jobs.result import RunResult
from distml.jobs.spec import JobSpec, TrainSpec
from distml.outputs import output_path
from distml.progress import Progress

PLAN, SETTINGS = "plan.json", "settings.json"
PLOTS = ("confusion_matrix.png", "training_curve.png")  # what the chief may draw
#: Training steps per call into TensorFlow on a worker (``train.steps_per_execution``).
STEPS_PER_EXECUTION = 64
LAUNCHERS = {
    "local": "local processes",
    "dask": "dask tasks pinned to distinct workers",
    "spark": "spark barrier stage",
}


class GangState:
    """``.NAME.workers/`` beside the run folder (on disk or on the run folder's object store):
    the plan, the settings, the checkpoints."""

    def __init__(
        self, out: str | Path, settings: dict[str, Any], options: StorageOptions | None = None
    ) -> None:
        text = str(out)
        if is_object_store(text):
            parent, name = text.rstrip("/").rsplit("/", 1)
            where = f"{parent}/.{name}.workers"
        else:
            final = Path(out).resolve()
            where = str(final.parent / f".{final.name}.workers")
        self.folder = StateFolder(where, options)
        self.dir = self.folder.where
        self.checkpoints = self.folder.child("checkpoints")
        self.settings = json.loads(json.dumps(settings, default=str))

    def open(self, workers: int) -> int:
        """Create the folder, or check an existing one's settings; the epochs already done."""
        if self.folder.exists(SETTINGS):
            previous = json.loads(self.folder.read(SETTINGS))
            if previous != self.settings:
                key = next(
                    k
                    for k in {**previous, **self.settings}
                    if previous.get(k) != self.settings.get(k)
                )
                raise SpecError(
                    f"{self.dir}: holds the checkpoints of an unfinished run with other settings "
                    f"({key}: {previous.get(key)!r} -> {self.settings.get(key)!r}); "
                    "delete that folder to start afresh, or choose another --out"
                )
        self.folder.write(SETTINGS, json.dumps(self.settings, indent=2).encode())
        return self.done(workers)

    def done(self, workers: int) -> int:
        return RankCheckpoints(self.checkpoints, 0, workers).common_epoch()

    def write_plan(self, plan: dict[str, Any]) -> str:
        """The plan's path or URL (what every worker is started with)."""
        self.folder.write(PLAN, json.dumps(plan).encode())
        return f"{self.dir}/{PLAN}"

    def remove(self) -> None:
        self.folder.remove()


def run_multiworker_job(
    spec: JobSpec, output: Destination, backend: Backend | None, progress: Progress
) -> RunResult:
    """Train ``spec`` on ``train.workers`` workers started by ``backend`` (default: the
    spec's) and publish the run folder ``output`` (checked by the caller before any work)."""
    settings = spec.train or TrainSpec()
    workers = int(settings.workers or 1)
    train, test = _open_data(spec)  # footers only
    if train.num_rows < workers:
        raise DataError(
            f"{train.path}: {train.num_rows} training rows cannot be shared by {workers} workers"
        )
    architecture = spec.model.params.get("architecture", "mlp")
    if architecture == "cnn" and round(train.width**0.5) ** 2 != train.width:
        raise ModelError(f"architecture 'cnn' needs square images; rows hold {train.width} pixels")
    learning_rate = float(spec.model.params.get("learning_rate", default_learning_rate(workers)))
    shards = plan_shards(train.files, workers, equal=True, filesystem=train.filesystem)
    remote = is_object_store(str(output.final))  # the run folder on an object store
    options = getattr(output, "options", None) if remote else None
    trajectory = _trajectory(spec, settings, train, test, workers)
    state = GangState(output.final, trajectory, options)
    done = state.open(workers)
    if done > settings.epochs:
        raise SpecError(
            f"train.epochs={settings.epochs}, but the checkpoints in {state.dir} already "
            f"have {done} finished epochs"
        )
    tmp = output.open()
    chief_out = StateFolder(output.shared.url, options) if remote else StateFolder(tmp)
    plan = {
        "name": spec.name,
        "architecture": architecture,
        "learning_rate": learning_rate,
        "width": train.width,
        "classes": max(train.classes, test.classes, 2),
        "pixels": train.pixels,
        "label": train.label,
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "shuffle_buffer": settings.shuffle_buffer,
        "seed": settings.seed,
        "steps_per_execution": settings.steps_per_execution or STEPS_PER_EXECUTION,
        "workers": workers,
        "collective_timeout": settings.collective_timeout,
        "train": {
            "path": train.path,
            "rows": train.num_rows,
            "shards": [[p.to_dict() for p in shard] for shard in shards],
        },
        "test": {
            "path": test.path,
            "rows": test.num_rows,
            "shards": [
                [p.to_dict() for p in shard]
                for shard in plan_shards(
                    test.files, workers, equal=False, filesystem=test.filesystem
                )
            ],
        },
        "checkpoints": str(state.checkpoints),
        "out": chief_out.where,  # the staging prefix on a store: the chief uploads there
        "predictions": spec.output.predictions,
        "plots": spec.output.plots,
    }
    task = GangTask(
        module="distml.deep.worker",
        args=(str(state.write_plan(plan)),),
        env={
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            **options_environment(  # never in plan.json
                (train.path, train.storage), (test.path, test.storage), (output.final, options)
            ),
        },
        peer_env=tf_config_env,
        threads=settings.threads,
        gpus=1,
        start_timeout=settings.start_timeout,
        bind_cpus=settings.bind_cpus,
        name=f"{spec.name}: {workers} Keras worker(s)",
    )
    owned = backend is None
    gang_backend = backend or get_backend(spec.backend.name, **spec.backend.options())
    gang_backend.progress = progress
    try:
        gang_backend.start()
        progress.message(
            f"{spec.name}: {architecture} on {train.num_rows:,} rows, {workers} workers "
            f"({LAUNCHERS.get(gang_backend.name, gang_backend.name)} on "
            f"{gang_backend.description}), {shard_rows(shards[0]):,} rows per worker, "
            f"global batch {settings.batch_size * workers} ({settings.batch_size} per worker), "
            f"Adam learning rate {learning_rate:g}"
        )
        if done:
            progress.message(
                f"{spec.name}: resuming from the checkpoints in {state.dir}: "
                f"{done} of {settings.epochs} epoch(s) done"
            )
        restarts = _run_with_restarts(gang_backend, task, workers, settings, state, progress)
    finally:
        if owned:
            gang_backend.stop()
    summary = json.loads(chief_out.read("metrics.json"))
    predicted = chief_out.child("predictions").names()
    drawn = [name for name in PLOTS if name in chief_out.names()]
    summary["backend"] = gang_backend.description
    summary["launcher"] = LAUNCHERS.get(gang_backend.name, gang_backend.name)
    summary["restarts"] = restarts
    with output as folder:
        (folder / "metrics.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    state.remove()
    final = output.final
    return RunResult(
        out=final,
        summary=summary,
        fitted=None,  # the workers trained it; keras.models.load_model(out / "model.keras")
        predictions=[output_path(final, "predictions", name) for name in sorted(predicted)],
        plots=[output_path(final, name) for name in drawn],
    )


def _run_with_restarts(
    backend: Backend,
    task: GangTask,
    workers: int,
    settings: TrainSpec,
    state: GangState,
    progress: Progress,
) -> int:
    """Run the gang; after a lost worker start it again (bounded). Returns the restarts."""
    restarts = 0
    while True:
        try:
            backend.run_gang(task, workers)
            return restarts
        except GangLost as exc:
            if restarts >= settings.max_restarts:
                raise BackendError(
                    f"{exc}; gave up after {restarts} restart(s) (train.max_restarts)"
                ) from None
            restarts += 1
            done = state.done(workers)
            progress.message(
                f"{exc}; restarting the {workers} workers after epoch {done} "
                f"(restart {restarts} of at most {settings.max_restarts})"
            )


def _trajectory(
    spec: JobSpec, settings: TrainSpec, train: Any, test: Any, workers: int
) -> dict[str, Any]:
    """What checkpoints must share with this run to be resumed (all but ``epochs``)."""
    return {
        "model": spec.model.model_dump(),
        "batch_size": settings.batch_size,
        "workers": workers,
        "shuffle_buffer": settings.shuffle_buffer,
        "seed": settings.seed,
        "train": {"path": train.path, "rows": train.num_rows},
        "test": {"path": test.path, "rows": test.num_rows},
        "model_file": MODEL_FILE,
    }
