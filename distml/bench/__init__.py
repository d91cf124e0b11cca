"""``distml bench``: engines, solvers and peers side by side, measured in one run.

Datasets are generated once per (task, rows, features, seed) and reused; each run
is a fresh process (:mod:`.child`) whose phases, peak memory and model quality on
held-out rows are recorded (:mod:`.measure`); :mod:`.report` turns the runs into
results.json/.csv, a markdown table, plots and a summary.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq

from distml.atomic import OutputDir
from distml.bench.measure import run_child
from distml.bench.plan import IMAGE_TASKS, TASKS, BenchConfig, Run
from distml.bench.report import write_outputs
from distml.data.generate import Recipe, generate
from distml.progress import Progress

HOLDOUT_ROWS = 100_000
# with --memory-limit, files of 62,500 rows (10 MB of features): a streamed partition must
# fit in a worker beside its ~270 MB of Python, numpy, pyarrow and distml
PARTITION_ROWS_UNDER_A_LIMIT = 62_500
HOLDOUT_STREAM = (
    1_000_000  # held-out rows: the same truth, random streams no training partition uses
)


def datasets(
    config: BenchConfig, data_dir: Path, progress: Progress
) -> dict[tuple[str, int], tuple[Path, Path]]:
    """``(task, rows) → (training folder, held-out folder)``, generated when missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    found = {}
    for task in config.tasks:
        if task in IMAGE_TASKS:
            folder = data_dir / f"{task}-{Path(config.mnist_source).name}"  # one per source
            train, test = _images(config.mnist_source, folder, progress)
            found[(task, _rows(train))] = (train, test)
            continue
        for rows in config.rows:
            kind = TASKS[task]
            partitions = max(
                4, rows // (PARTITION_ROWS_UNDER_A_LIMIT if config.memory_limit else 250_000)
            )
            name = f"{kind}-{rows}x{config.features}-p{partitions}-s{config.seed}"
            if kind == "blobs":
                name += f"-k{config.clusters}"
            train, holdout = data_dir / name, data_dir / f"{name}-holdout"
            recipe = Recipe(
                kind,
                rows=rows,
                features=config.features,
                partitions=partitions,
                seed=config.seed,
                centers=config.clusters,
            )
            if not train.exists():
                progress.message(f"generating {name}")
                generate(recipe, train)
            if not holdout.exists():
                small = Recipe(
                    kind,
                    rows=min(rows, HOLDOUT_ROWS),
                    features=config.features,
                    partitions=1,
                    seed=config.seed,
                    centers=config.clusters,
                )
                generate(small, holdout, first_stream=HOLDOUT_STREAM)
            found[(task, rows)] = (train, holdout)
    return found


def _images(source: str, folder: Path, progress: Progress) -> tuple[Path, Path]:
    """MNIST as ``distml data mnist`` writes it: ``train/`` to fit, ``test/`` to score."""
    if not (folder / "train").exists():
        from distml.data.mnist import write_mnist

        progress.message(f"writing MNIST from {source} to {folder}")
        write_mnist(folder, source)
    return folder / "train", folder / "test"


def _rows(folder: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.glob("*.parquet")))


def machine() -> dict[str, Any]:
    versions = {}
    for package in (
        "numpy",
        "pyarrow",
        "scikit-learn",
        "dask",
        "distributed",
        "dask-ml",
        "pyspark",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpus": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "python": platform.python_version(),
        "versions": versions,
    }


def run_bench(
    config: BenchConfig,
    out: Path,
    data_dir: Path,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the whole plan and write the results folder ``out`` (atomically, at the end;
    checked first: never the data folder, a non-empty folder only with ``overwrite``)."""
    config.validate()
    output = OutputDir(out, "bench", overwrite=overwrite, inputs=[data_dir], what="results folder")
    progress = progress or Progress()
    results: list[dict[str, Any]] = []
    with output as tmp:  # the temporary folder first: an unwritable place fails at once
        paths = datasets(config, data_dir, progress)
        plan = config.runs({task: [rows] for task, rows in paths if task in IMAGE_TASKS})
        logs = tmp / "logs"
        logs.mkdir()
        progress.start(f"benchmark: {len(plan)} runs", total=len(plan))
        # (task, workers, candidate) → the smallest size at which it ran past --timeout
        timed_out: dict[tuple[str, int, str], int] = {}
        for number, run in enumerate(plan):
            key = (run.task, run.workers, run.candidate.label)
            if key in timed_out and run.rows >= timed_out[key]:
                record = _not_rerun(run, timed_out[key], config.timeout)
            else:
                record = _one(run, paths, config, logs / f"run-{number:04d}.log")
                if record["status"] == "timeout":
                    timed_out[key] = run.rows
            results.append(record)
            progress.step(detail=f"{run.task} {run.rows:,} {run.candidate.label}")
        progress.finish()
        outputs = write_outputs(results, config.as_dict(), machine(), tmp)
    return {**outputs, "out": out, "runs": results}


def _describe(run: Run) -> dict[str, Any]:
    return {
        "task": run.task,
        "rows": run.rows,
        "features": run.features,
        "workers": run.workers,
        "candidate": run.candidate.label,
        "repeat": run.repeat,
    }


def _not_rerun(run: Run, rows: int, timeout: float) -> dict[str, Any]:
    """A candidate that ran past the timeout is not run again at that size or above: the
    answer (slower than ``timeout``) is known, and the plan's hour is not spent on it."""
    return {
        **_describe(run),
        "started": time.strftime("%H:%M:%S"),
        "status": "timeout",
        "error": f"not run: over {timeout:g}s at {rows:,} rows",
        "wall": 0.0,
        "peak_mb": None,
        "peak_pss_mb": None,
    }


def _one(
    run: Run, paths: dict[tuple[str, int], tuple[Path, Path]], config: BenchConfig, log: Path
) -> dict[str, Any]:
    train, holdout = paths[(run.task, run.rows)]
    spec = {
        "task": run.task,
        "features": run.features,
        "workers": run.workers,
        "candidate": asdict(run.candidate),
        "data": str(train),
        "holdout": str(holdout),
        "clusters": config.clusters,
        "seed": config.seed,
        "memory_limit": config.memory_limit,
    }
    started = time.strftime("%H:%M:%S")
    result = run_child(spec, log, config.timeout)
    record = {**_describe(run), "started": started, **result}
    if record.get("status") == "ok":
        seconds = (record.get("read") or 0.0) + (record.get("fit") or 0.0)
        record["rows_per_second"] = run.rows / seconds if seconds else None
    return record
