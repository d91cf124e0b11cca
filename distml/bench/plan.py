"""What a benchmark runs: candidates × tasks × sizes × workers × repeats, interleaved.

A *candidate* is one way to do a task: the floor (a bare pyarrow decode), a peer a
user would otherwise pick (scikit-learn, dask-ml, MLlib, each called directly the
plain way), or distml on a backend with a solver. Within each repeat every
candidate of a (task, size, workers) cell runs once, in turn, so the machine's
drift hits all alike; each run is a fresh process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from distml.errors import SpecError, did_you_mean

TASKS = {"linreg": "regression", "logreg": "classification", "kmeans": "blobs", "mnist": "mnist"}
# the Keras task trains on the MNIST images it is given: its size is the source's, not --rows
IMAGE_TASKS = ("mnist",)
BACKENDS = ("local", "dask", "spark")
# the library solver distml offers on each backend, besides its native one
LIBRARY_SOLVER = {"local": "sklearn", "dask": "dask-ml", "spark": "mllib"}
# the peer called directly, for each backend a run includes
DIRECT_PEER = {"dask": "dask-ml", "spark": "mllib"}


@dataclass(frozen=True)
class Candidate:
    """``kind`` is floor | sklearn | dask-ml | mllib | keras (peers) | distml; distml has
    backend+solver (``local``/``keras`` for the MNIST network: MirroredStrategy fed from Parquet)."""

    kind: str
    backend: str | None = None
    solver: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "distml":
            return f"distml {self.backend}/{self.solver}"
        return {
            "floor": "floor (pyarrow decode)",
            "sklearn": "scikit-learn",
            "dask-ml": "dask-ml direct",
            "mllib": "MLlib direct",
            "keras": "Keras numpy direct",
        }[self.kind]

    @property
    def parallel(self) -> bool:
        """Whether the worker count applies (the floor and scikit-learn use one process)."""
        return self.kind not in ("floor", "sklearn")


@dataclass(frozen=True)
class Run:
    task: str
    rows: int
    features: int
    workers: int
    candidate: Candidate
    repeat: int


@dataclass
class BenchConfig:
    """The command line of ``distml bench``."""

    tasks: list[str] = field(default_factory=lambda: ["linreg", "logreg", "kmeans"])
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    solvers: list[str] = field(default_factory=lambda: ["native", "library"])
    rows: list[int] = field(default_factory=lambda: [100_000, 1_000_000])
    features: int = 20
    workers: list[int] = field(default_factory=lambda: [1, 2])
    repeat: int = 3
    timeout: float = 900.0
    memory_limit: str | None = None  # per worker: below the data's size → streaming
    clusters: int = 5
    seed: int = 0
    mnist_source: str = "keras"  # the mnist task's images: keras.datasets or an IDX folder

    def validate(self) -> None:
        for task in self.tasks:
            if task not in TASKS:
                raise SpecError(
                    f"--tasks: unknown task '{task}'{did_you_mean(task, TASKS)}; choose from {', '.join(TASKS)}"
                )
        for backend in self.backends:
            if backend not in BACKENDS:
                raise SpecError(
                    f"--backends: unknown backend '{backend}'{did_you_mean(backend, BACKENDS)}; choose from {', '.join(BACKENDS)}"
                )
        for solver in self.solvers:
            if solver not in ("native", "library"):
                raise SpecError(
                    f"--solvers: unknown solver kind '{solver}'; choose from native, library"
                )
        if any(r < 1000 for r in self.rows) or self.features < 1 or self.repeat < 1:
            raise SpecError("--rows must be >= 1000, --features and --repeat >= 1")
        if any(w < 1 for w in self.workers):
            raise SpecError("--workers must be >= 1")

    def candidates(self, task: str) -> list[Candidate]:
        """The ways to do ``task``: the floor, the peers and distml on each chosen backend."""
        if task in IMAGE_TASKS:  # replicas = workers: MirroredStrategy's devices
            return [Candidate("floor"), Candidate("keras"), Candidate("distml", "local", "keras")]
        chosen = [Candidate("floor"), Candidate("sklearn")]
        for backend in self.backends:
            if "native" in self.solvers:
                chosen.append(Candidate("distml", backend, "native"))
            if "library" in self.solvers and backend != "local":
                chosen.append(Candidate("distml", backend, LIBRARY_SOLVER[backend]))
            if backend in DIRECT_PEER:
                chosen.append(Candidate(DIRECT_PEER[backend]))
        return chosen

    def runs(self, sizes: dict[str, list[int]] | None = None) -> list[Run]:
        """Every run, interleaved: within a repeat, each cell's candidates in turn.

        ``sizes`` overrides ``rows`` per task (the mnist task's size is its data's).
        """
        plan = []
        for task in self.tasks:
            for rows in (sizes or {}).get(task, self.rows):
                for repeat in range(self.repeat):
                    for workers in self.workers:
                        for candidate in self.candidates(task):
                            if not candidate.parallel and workers != self.workers[0]:
                                continue  # one-process candidates do not depend on workers
                            plan.append(Run(task, rows, self.features, workers, candidate, repeat))
        return plan

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
