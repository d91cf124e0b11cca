"""``distml demo``: the seed's examples 1-3, runnable from an installed package.

These are the same jobs as ``jobs/linear_regression.yaml``, ``jobs/logistic_regression.yaml``
and ``jobs/kmeans.yaml`` (a test keeps them in step), with the data under ``out/data``.
"""

from __future__ import annotations

from pathlib import Path

from distml.jobs.spec import JobSpec, parse_spec

DEMO_JOBS = {
    "linear-regression": {
        "model": {"type": "linear_regression", "solver": "auto", "params": {"fit_intercept": True}},
        "data": {"train": "data/example1", "label": "y", "generate": {"kind": "example1"}},
        "split": {"test_size": 0.2, "seed": 42},
    },
    "logistic-regression": {
        "model": {"type": "logistic_regression", "solver": "auto", "params": {"C": 1.0}},
        "data": {"train": "data/example2", "label": "y", "generate": {"kind": "example2"}},
        "split": {"test_size": 0.2, "seed": 42},
    },
    "kmeans": {
        "model": {
            "type": "kmeans",
            "solver": "auto",
            "params": {"n_clusters": 2, "init": "k-means++", "random_state": 0},
        },
        "data": {"train": "data/example3", "generate": {"kind": "example3"}},
    },
}


def demo_specs(out: str | Path, backend: str = "local") -> list[JobSpec]:
    """The three seed jobs, with data and runs under ``out``."""
    return [
        parse_spec({"name": name, **job, "backend": backend}, source=f"demo:{name}", base_dir=out)
        for name, job in DEMO_JOBS.items()
    ]
