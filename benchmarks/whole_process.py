"""Whole-process time: `distml run` (local, Dask) against a scikit-learn script, same data.

What a user waits for, process start to exit: imports, engine start-up, reading the
Parquet files, the fit, one metric on the training rows and the model written to disk.
Each candidate runs in a fresh process, interleaved within each repeat so the machine's
drift hits all alike; the median wall time of the repeats is reported with its ratio to
scikit-learn's. Run by hand (not part of the test suite):

    distml data generate regression --rows 2e6 --features 20 --partitions 16 --out /tmp/wp/reg
    distml data generate classification --rows 2e6 --features 20 --partitions 16 --out /tmp/wp/cls
    distml data generate blobs --rows 2e6 --features 20 --partitions 16 --out /tmp/wp/blobs
    python benchmarks/whole_process.py --data /tmp/wp --repeat 3

``--old FOLDER`` adds `distml run` (local and Dask) from an older checkout (a ``git
worktree``), put first on ``PYTHONPATH``; run the script from outside the checkout then
(``python -m`` puts the current folder first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TASKS = {  # task: (data folder, distml model block, scikit-learn estimator, metric)
    "linreg": ("reg", "{type: linear_regression}", "LinearRegression()", "r2_score"),
    "logreg": ("cls", "{type: logistic_regression}", "LogisticRegression()", "accuracy_score"),
    "kmeans": (
        "blobs",
        "{type: kmeans, params: {n_clusters: 5, random_state: 0}}",
        "KMeans(n_clusters=5, n_init=1, random_state=0)",
        None,
    ),
}

SKLEARN = """
import pickle, sys
import numpy as np, pyarrow.dataset as ds
from sklearn import cluster, linear_model, metrics
table = ds.dataset(sys.argv[1], format="parquet").to_table()
names = [c for c in table.column_names if c != "y"]
X = np.column_stack([table.column(c).to_numpy() for c in names])
y = table.column("y").to_numpy()
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.cluster import KMeans
model = {estimator}.fit(X{fit_y})
{metric_line}
pickle.dump(model, open(sys.argv[2], "wb"))
"""


def _sklearn_script(task: str) -> str:
    _, _, estimator, metric = TASKS[task]
    metric_line = (
        f"print(metrics.{metric}(y, model.predict(X)))" if metric else "print(model.inertia_)"
    )
    fit_y = ", y" if metric else ""
    return SKLEARN.format(estimator=estimator, fit_y=fit_y, metric_line=metric_line)


def _spec(task: str, data: Path, folder: Path) -> Path:
    sub, model, _, _ = TASKS[task]
    spec = folder / f"{task}.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
            name: {task}
            model: {model}
            data: {{train: {data / sub}, label: y}}
            split: null
            output: {{predictions: false, plots: false}}
            """)
    )
    return spec


def _timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with reg/ cls/ blobs/")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", default="linreg,logreg,kmeans")
    parser.add_argument("--old", type=Path, help="an older checkout to compare with")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="distml-whole-"))
    print("| task | candidate | median wall s | runs | × scikit-learn |")
    print("| --- | --- | ---: | --- | ---: |")
    for task in args.tasks.split(","):
        spec = _spec(task, args.data, work)
        script = work / f"{task}_sklearn.py"
        script.write_text(_sklearn_script(task))
        sub = TASKS[task][0]
        old_env = {**os.environ, "PYTHONPATH": str(args.old)} if args.old else None
        backends = [("local", None), ("dask", None)]
        if args.old:
            backends += [("local", old_env), ("dask", old_env)]
        times: dict[str, list[float]] = {"scikit-learn (one process)": []}
        for i in range(args.repeat):
            times["scikit-learn (one process)"].append(
                _timed(
                    [
                        sys.executable,
                        str(script),
                        str(args.data / sub),
                        str(work / f"{task}-{i}.pkl"),
                    ]
                )
            )
            for backend, env in backends:
                name = (
                    "distml local" if backend == "local" else "distml dask (LocalCluster it starts)"
                )
                name += ", old checkout" if env is not None else ""
                out = work / f"{task}-{backend}-{'old-' if env else ''}{i}"
                command = [sys.executable, "-m", "distml", "run", str(spec), "--backend", backend,
                           "--out", str(out)]  # fmt: skip
                times.setdefault(name, []).append(_timed(command, env))
        base = statistics.median(times["scikit-learn (one process)"])
        for name, runs in times.items():
            median = statistics.median(runs)
            shown = ", ".join(f"{t:.2f}" for t in runs)
            print(f"| {task} | {name} | {median:.2f} | {shown} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
