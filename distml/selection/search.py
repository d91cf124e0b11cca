"""Cross-validation and hyperparameter search on data read once and kept where it lives.

For each fold, the fold's training and validation rows are *derived* from the
cached training partitions (``Engine.derive``: no Parquet file is read again) and
every candidate is fitted on them as a separate fit; candidates run in parallel
driver threads, each fit's passes running on the engine. Candidates come from
scikit-learn's ``ParameterGrid`` / ``ParameterSampler``, so their order — and the
first-best tie-break — are ``GridSearchCV``'s / ``RandomizedSearchCV``'s. The
best candidate is then refitted on all the training data by the caller.

Parameters are named ``model.<param>`` (or just ``<param>``) and, for a
pipeline, ``<stage>.<param>`` (e.g. ``select.k``).
"""

from __future__ import annotations

import copy
import csv
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distml.backends.base import Backend, LoadedData
from distml.errors import DistmlError, ModelError, SpecError, did_you_mean
from distml.preprocess import Pipeline
from distml.progress import Progress
from distml.selection.folds import fold_rows

# metric → whether a larger value is better
METRICS = {
    "mse": False,
    "rmse": False,
    "mae": False,
    "r2": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "inertia": False,
}
DEFAULT_METRIC = {"regression": "r2", "classification": "accuracy", "clustering": "inertia"}
TASK_METRICS = {
    "regression": ("mse", "rmse", "mae", "r2"),
    "classification": ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    "clustering": ("inertia",),
}


@dataclass
class Plan:
    """What to try and how to score it."""

    candidates: list[dict[str, Any]]
    folds: int = 5
    seed: int = 0
    metric: str = "accuracy"
    parallel: int = 4

    @property
    def greater_is_better(self) -> bool:
        return METRICS[self.metric]


@dataclass
class Candidate:
    params: dict[str, Any]
    scores: list[float] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))


def full_name(key: str) -> str:
    """``C`` → ``model.C``; ``select.k`` and ``model.C`` stay as they are."""
    return key if "." in key else f"model.{key}"


def set_candidate(estimator: Any, params: dict[str, Any]) -> Any:
    """A copy of the (unfitted) estimator or pipeline with ``params`` set."""
    chosen = copy.deepcopy(estimator)
    known = (
        chosen.get_params()
        if isinstance(chosen, Pipeline)
        else {f"model.{k}": v for k, v in chosen.get_params().items()}
    )
    for key in params:
        if key not in known:
            raise ModelError(
                f"unknown parameter '{key}'{did_you_mean(key, known)}; parameters: {', '.join(sorted(known))}"
            )
    if isinstance(chosen, Pipeline):
        return chosen.set_params(**params)
    chosen.set_params(**{key.partition(".")[2]: value for key, value in params.items()})
    return chosen.validate()


def candidates(
    grid: dict[str, Any] | None, random: dict[str, Any] | None, trials: int, seed: int
) -> list[dict[str, Any]]:
    """scikit-learn's ``ParameterGrid`` or ``ParameterSampler`` over ``model.``-qualified names."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if grid:
        return list(ParameterGrid({full_name(k): list(v) for k, v in grid.items()}))
    if random:
        space = {full_name(k): distribution(k, v) for k, v in random.items()}
        return list(ParameterSampler(space, n_iter=trials, random_state=seed))
    return [{}]


def distribution(name: str, value: Any) -> Any:
    """A list of choices, or ``{uniform | loguniform: [low, high]}`` / ``{randint: [low, high)}``."""
    import scipy.stats

    if isinstance(value, list):
        return value
    makers = {
        "uniform": lambda lo, hi: scipy.stats.uniform(lo, hi - lo),
        "loguniform": scipy.stats.loguniform,
        "randint": scipy.stats.randint,
    }
    if isinstance(value, dict) and len(value) == 1:
        ((kind, bounds),) = value.items()
        if kind in makers and isinstance(bounds, list) and len(bounds) == 2:
            return makers[kind](*bounds)
        if kind not in makers:
            raise SpecError(
                f"search.random.{name}: unknown distribution '{kind}'{did_you_mean(kind, makers)}; choose one of {', '.join(makers)}"
            )
    raise SpecError(
        f"search.random.{name}: give a list of values or {{uniform|loguniform|randint: [low, high]}}, got {value!r}"
    )


def cross_validate(
    backend: Backend, estimator: Any, data: LoadedData, plan: Plan
) -> list[Candidate]:
    """Every candidate's score on every fold (fitted on the other folds)."""
    display = backend.progress
    results = [Candidate(dict(params)) for params in plan.candidates]
    display.start(
        f"cross-validating {len(results)} candidate(s) x {plan.folds} folds",
        total=len(results) * plan.folds,
    )
    backend.progress = Progress()  # the candidates' own fits report nothing
    try:
        for fold in range(plan.folds):
            train = data.train.derive(fold_rows, plan.folds, plan.seed, fold, False)
            valid = data.train.derive(fold_rows, plan.folds, plan.seed, fold, True)
            train.progress = valid.progress = None
            rows = LoadedData(train, None, data.dataset, 0.0)

            with ThreadPoolExecutor(max_workers=max(1, min(plan.parallel, len(results)))) as pool:
                run = functools.partial(
                    _fit_and_score, backend, estimator, rows, valid, plan.metric
                )
                for candidate, (value, seconds) in zip(
                    results, pool.map(run, results), strict=True
                ):
                    candidate.scores.append(value)
                    candidate.fit_seconds.append(seconds)
                    display.step()
            train.release()
            valid.release()
    finally:
        backend.progress = display
        display.finish()
    return results


def _fit_and_score(
    backend: Backend,
    estimator: Any,
    rows: LoadedData,
    valid: Any,
    metric: str,
    candidate: Candidate,
) -> tuple[float, float]:
    """Fit one candidate on a fold's training rows; its score on the fold's validation rows."""
    model = set_candidate(estimator, candidate.params)
    started = time.perf_counter()
    try:
        backend.fit(model, rows)
        value = backend.evaluate(model, valid, has_labels=rows.dataset.label is not None)[metric]
    except DistmlError as exc:
        raise type(exc)(f"search candidate {candidate.params}: {exc}") from None
    return float(value), time.perf_counter() - started


def best(results: list[Candidate], plan: Plan) -> Candidate:
    """The best mean score; the first such candidate on ties (as scikit-learn)."""
    means = np.array([r.mean for r in results])
    means = np.where(np.isnan(means), -np.inf if plan.greater_is_better else np.inf, means)
    index = int(np.argmax(means) if plan.greater_is_better else np.argmin(means))
    return results[index]


def ranks(results: list[Candidate], plan: Plan) -> list[int]:
    """scikit-learn's ``rank_test_score`` (1 = best; ties share the lowest rank)."""
    from scipy.stats import rankdata

    means = np.array([r.mean for r in results])
    keyed = -means if plan.greater_is_better else means
    keyed = np.where(np.isnan(keyed), np.inf, keyed)
    return [int(r) for r in rankdata(keyed, method="min")]


def write_table(results: list[Candidate], plan: Plan, path: Path) -> Path:
    """``search.csv``: one row per candidate — its parameters, fold scores, mean, std, rank."""
    names = sorted({k for r in results for k in r.params})
    metric = plan.metric
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                *names,
                *(f"split{i}_{metric}" for i in range(plan.folds)),
                f"mean_{metric}",
                f"std_{metric}",
                "rank",
                "mean_fit_seconds",
            ]
        )
        for candidate, rank in zip(results, ranks(results, plan), strict=True):
            writer.writerow(
                [
                    *(candidate.params.get(n, "") for n in names),
                    *candidate.scores,
                    candidate.mean,
                    candidate.std,
                    rank,
                    f"{np.mean(candidate.fit_seconds):.4f}",
                ]
            )
    return path


def summary(results: list[Candidate], plan: Plan, chosen: Candidate) -> dict[str, Any]:
    """What metrics.json records about the search."""
    return {
        "metric": plan.metric,
        "folds": plan.folds,
        "seed": plan.seed,
        "candidates": len(results),
        "best_params": chosen.params,
        "best_score": None if math.isnan(chosen.mean) else chosen.mean,
        "best_std": chosen.std,
    }
