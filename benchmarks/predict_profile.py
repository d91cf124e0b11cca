"""Where ``distml predict``'s time goes on each engine: inside the scoring tasks or between them.

Run by hand (not part of the test suite), after ``predict_bench.py`` has made its data and
model (or with any linear model and Parquet folder):

    python benchmarks/predict_profile.py --data DATA --model RUN_DIR --columns none --repeat 2

For each backend (a fresh process each: ``local[2]``, a 2-worker Dask ``LocalCluster``,
Spark ``local[2]``) the same scoring tasks ``distml predict`` runs — :func:`score_file` of
every input file — go through the backend's ``run_tasks`` with a wrapper that stamps each
task's start and end (wall clock, shared by every process on this machine) and its process.
From the stamps:

* ``in tasks``: the sum of the tasks' own seconds (read + predict + write of one file), and
  the first task of each process apart (it imports distml's scoring code and pyarrow);
* ``between tasks``: what the stage's wall time leaves over, per task and per slot —
  ``(wall × slots − Σ task seconds) / tasks``: the engine's scheduling, serialisation and
  result collection, and any slot left idle;
* ``processes``: how many distinct processes ran tasks (Python workers reused or not);
* ``predict``: the wall time of ``distml.predict`` itself on the same backend right after
  (the model shipped the engine's way: broadcast on Spark, scattered on Dask), to show
  that the stamped stage stands for it.

Repeats run in the same process, so the later ones show the steady state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

RESULT = "PREDICT-PROFILE "


def timed_score(item: tuple[Any, Any]) -> dict[str, Any]:
    """One scoring task with its stamps (runs on the engine's workers)."""
    started = time.time()
    first = "distml.predict.task" not in sys.modules
    from distml.predict.task import score_file

    imported = time.time()
    file, job = item
    rows = score_file(file, job)
    return {
        "pid": os.getpid(),
        "start": started,
        "imported": imported,
        "end": time.time(),
        "rows": rows,
        "first": first,
    }


def profile(backend_name: str, data: str, model: str, columns: str, repeat: int) -> dict:
    import distml
    from distml.predict.inputs import ScoringInput
    from distml.predict.loading import load_scorer
    from distml.predict.runner import output_schema, predict, resolve_columns
    from distml.predict.task import ScoreJob

    options: dict[str, Any] = {}
    if backend_name == "dask":
        options = {"workers": 2, "threads": 1}
    elif backend_name == "spark":
        options = {"master": "local[2]", "console_progress": False, "driver_memory": "4g"}
    scorer = load_scorer(model).scorer
    source = ScoringInput(data)
    keep = resolve_columns(columns, source)
    schema = output_schema(source, keep, scorer.output_fields("predict"))
    backend = distml.get_backend(backend_name, **options)
    started = time.perf_counter()
    backend.start()
    startup = time.perf_counter() - started
    runs = []
    try:
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(data))) as out:
                job = ScoreJob(scorer, source.uri, out, tuple(keep), "predict", schema)
                items = [(file, job) for file in source.files]
                began = time.time()
                stamps = backend.run_tasks(timed_score, items)
                wall = time.time() - began
                real = time.perf_counter()  # the real thing, for comparison (same backend)
                predict(model, data, os.path.join(out, "real"), backend, columns=columns)
                real = time.perf_counter() - real
            assert sum(s["rows"] for s in stamps) == source.num_rows
            seconds = [s["end"] - s["start"] for s in stamps]
            firsts = [s["imported"] - s["start"] for s in stamps if s["first"]]
            slots = 2
            runs.append(
                {
                    "wall": wall,
                    "predict_wall": real,
                    "tasks": len(stamps),
                    "processes": len({s["pid"] for s in stamps}),
                    "task_seconds_sum": sum(seconds),
                    "task_seconds_median": sorted(seconds)[len(seconds) // 2],
                    "first_task_imports": sum(firsts),
                    "between_tasks_per_task": (wall * slots - sum(seconds)) / len(stamps),
                    "first_start_after": min(s["start"] for s in stamps) - began,
                    "last_end_before": began + wall - max(s["end"] for s in stamps),
                }
            )
    finally:
        backend.stop()
    return {"backend": backend_name, "startup": startup, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True, help="a run folder or model/ of a linear model")
    parser.add_argument("--columns", default="none", help="all | none (as distml predict)")
    parser.add_argument("--backends", default="local[2],dask,spark")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = profile(args.one, args.data, args.model, args.columns, args.repeat)
        print(RESULT + json.dumps(result))
        return
    print(
        f"columns={args.columns}; seconds; 'between' = (wall x 2 slots - sum of task seconds) / tasks"
    )
    print(
        "| backend | repeat | predict | wall | tasks | processes | Σ task s | median task s | first-task imports s "
        "| between, per task s | idle before first / after last s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.backends.split(","):
        done = subprocess.run(
            [sys.executable, __file__, "--one", name, "--data", args.data, "--model", args.model,
             "--columns", args.columns, "--repeat", str(args.repeat)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
        if done.returncode != 0 or not lines:
            print(f"| {name} | failed: {done.stderr.strip().splitlines()[-1:]} |")
            continue
        result = json.loads(lines[-1][len(RESULT) :])
        for n, run in enumerate(result["runs"], 1):
            print(
                f"| {name} | {n} | {run['predict_wall']:.2f} | {run['wall']:.2f} | {run['tasks']} | {run['processes']} "
                f"| {run['task_seconds_sum']:.2f} | {run['task_seconds_median']:.3f} "
                f"| {run['first_task_imports']:.2f} | {run['between_tasks_per_task']:.3f} "
                f"| {run['first_start_after']:.2f} / {run['last_end_before']:.2f} |"
            )


if __name__ == "__main__":
    main()
