"""Checks a run makes before any work, from what the footers and the spec already tell."""

from __future__ import annotations

from distml.data.dataset import Dataset
from distml.data.split import Split
from distml.errors import DataError
from distml.jobs.spec import JobSpec
from distml.selection import search

RESERVED_COLUMNS = ("prediction", "probability")  # what a predictions file adds


def check_before_work(
    spec: JobSpec, dataset: Dataset, split: Split | None, plan: search.Plan | None
) -> None:
    """What the footers already tell: a split or folds without rows, clashing column names."""
    n_rows = dataset.num_rows
    n_train = n_rows
    if split is not None:
        n_test = split.n_test(n_rows)
        n_train = n_rows - n_test
        if n_train < 1 or n_test < 1:
            raise DataError(
                f"{spec.source}: split.test_size {split.test_size} leaves {n_train} training and "
                f"{n_test} test rows of {n_rows:,} in {dataset.uri}; each side needs at least one"
            )
    if plan is not None and plan.folds > n_train:
        raise DataError(
            f"{spec.source}: cv.folds is {plan.folds} but there are only {n_train:,} training "
            f"rows in {dataset.uri}; use at most {n_train} folds"
        )
    if spec.output.predictions:
        for column in dataset.columns:
            if column in RESERVED_COLUMNS:
                raise DataError(
                    f"{dataset.uri}: column '{column}' clashes with the '{column}' column that "
                    "predictions add; rename it, or set output.predictions: false"
                )
