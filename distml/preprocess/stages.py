"""Preprocessing stages with scikit-learn's meaning, fitted in one pass each.

A stage sees a *frame*: an ordered dict of columns (float64 with NaN for missing
values, or object arrays of strings with None). Fitting computes statistics with
``map_reduce`` over partitions transformed by the stages before it (on the
workers), so every engine fits the same stage. ``transform`` applies it to a
frame, on the workers during training and anywhere a saved model predicts.

| stage | scikit-learn twin | statistics |
| --- | --- | --- |
| ``impute`` | ``SimpleImputer`` | mean; exact median (:mod:`.median`); most frequent (smallest on ties); constant |
| ``scale`` | ``StandardScaler`` / ``MinMaxScaler`` | mean and population std (merged co-moments) / min, max |
| ``one_hot`` | ``OneHotEncoder(handle_unknown="ignore")`` | sorted categories |
| ``select`` | ``VarianceThreshold`` / ``SelectKBest(f_regression or f_classif)`` | variances / F scores |
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import numpy as np

from distml.algorithms.engine import Engine, Partition
from distml.errors import DataError, ModelError, did_you_mean
from distml.preprocess.median import medians

Frame = dict[str, np.ndarray]
Kinds = dict[str, str]  # column → "numeric" | "string"


def is_string(column: np.ndarray) -> bool:
    return column.dtype == object


def apply_stages(stages: list[Stage], frame: Frame) -> Frame:
    for stage in stages:
        frame = stage.transform(frame)
    return frame


class Prepared:
    """The frame of a partition after some fitted stages (picklable, runs on the workers)."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = list(stages)

    def __call__(self, part: Partition) -> Frame:
        assert part.frame is not None, "a pipeline needs partitions read with raw=True"
        return apply_stages(self.stages, part.frame)


def _stats_pass(part: Partition, prepare: Prepared, stage: Stage) -> Any:
    return stage.partition_stats(prepare(part), part.labels())


class Stage:
    """One preprocessing step: parameters, fitted statistics, and the transform."""

    name: ClassVar[str]
    _params: ClassVar[tuple[str, ...]]

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self._params}

    def set_params(self, **params: Any) -> Stage:
        for key, value in params.items():
            if key not in self._params:
                raise ModelError(
                    f"{self.name}: unknown parameter '{key}'{did_you_mean(key, self._params)}; "
                    f"parameters: {', '.join(self._params)}"
                )
            setattr(self, key, value)
        self.validate()
        return self

    def validate(self) -> None:
        """Raise :class:`ModelError` naming a bad parameter."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, engine: Engine, prepare: Prepared, kinds: Kinds, task: str) -> Kinds:
        """Fit on ``engine``'s partitions as ``prepare`` shapes them; return the output kinds."""
        self.columns_ = self._targets(kinds)
        self.task_ = task
        if self.columns_:
            stats = engine.map_reduce(_stats_pass, prepare, self, combine=self.combine)
            self.finish(stats)
        return self.output_kinds(kinds)

    def _targets(self, kinds: Kinds) -> list[str]:
        return []

    def partition_stats(self, frame: Frame, y: np.ndarray | None) -> Any:
        raise NotImplementedError

    def combine(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def finish(self, stats: Any) -> None:
        raise NotImplementedError

    def output_kinds(self, kinds: Kinds) -> Kinds:
        return dict(kinds)

    def transform(self, frame: Frame) -> Frame:
        raise NotImplementedError

    # -- persistence ----------------------------------------------------------------------------
    _fitted: ClassVar[tuple[str, ...]] = ()

    def state(self) -> dict[str, Any]:
        """Parameters and fitted statistics as plain JSON values."""
        fitted = {
            k: _plain(getattr(self, k)) for k in ("columns_", *self._fitted) if hasattr(self, k)
        }
        return {"stage": self.name, "params": _plain(self.get_params()), "fitted": fitted}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Stage:
        stage = STAGES[state["stage"]](**state["params"])
        for key, value in state["fitted"].items():
            setattr(stage, key, value)
        return stage


def _column_list(columns: Any, where: str) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise ModelError(f"{where}: columns must be a list of column names, got {columns!r}")
    return list(columns)


def _chosen(
    stage: Stage, columns: list[str] | None, kinds: Kinds, default: list[str], need: str | None
) -> list[str]:
    if columns is None:
        return default
    for column in columns:
        if column not in kinds:
            raise DataError(
                f"{stage.name}: column '{column}' not found{did_you_mean(column, kinds)}; "
                f"columns at this stage: {', '.join(kinds)}"
            )
        if need is not None and kinds[column] != need:
            raise DataError(
                f"{stage.name}: column '{column}' is {kinds[column]}, {stage.name} needs {need} columns"
            )
    return list(columns)


# -- impute ------------------------------------------------------------------------------------------
class Impute(Stage):
    """Fill missing values: ``mean``, ``median`` (exact), ``most_frequent`` or ``constant``."""

    name = "impute"
    _params = ("strategy", "columns", "fill_value")
    _fitted = ("statistics_",)
    STRATEGIES = ("mean", "median", "most_frequent", "constant")

    def __init__(
        self, strategy: str = "mean", columns: list[str] | None = None, fill_value: Any = None
    ):
        self.strategy = strategy
        self.columns = columns
        self.fill_value = fill_value
        self.validate()

    def validate(self) -> None:
        if self.strategy not in self.STRATEGIES:
            raise ModelError(
                f"impute: unknown strategy '{self.strategy}'{did_you_mean(self.strategy, self.STRATEGIES)}; "
                f"choose one of {', '.join(self.STRATEGIES)}"
            )
        _column_list(self.columns, "impute")
        if self.fill_value is not None and (
            isinstance(self.fill_value, bool) or not isinstance(self.fill_value, (str, int, float))
        ):
            raise ModelError(
                f"impute: fill_value must be a number or a string, got {type(self.fill_value).__name__}"
            )

    def _targets(self, kinds: Kinds) -> list[str]:
        numeric_only = self.strategy in ("mean", "median")
        default = [c for c, k in kinds.items() if k == "numeric" or not numeric_only]
        return _chosen(self, self.columns, kinds, default, "numeric" if numeric_only else None)

    def fit(self, engine: Engine, prepare: Prepared, kinds: Kinds, task: str) -> Kinds:
        self.columns_ = self._targets(kinds)
        self.kinds_ = {c: kinds[c] for c in self.columns_}
        if self.strategy == "median" and self.columns_:
            self.finish_values(medians(engine, prepare, self.columns_))
        elif self.strategy == "constant":
            self.statistics_ = [self._constant(c, self.kinds_[c]) for c in self.columns_]
        elif self.columns_:
            self.finish(engine.map_reduce(_stats_pass, prepare, self, combine=self.combine))
        return dict(kinds)

    def _constant(self, column: str, kind: str) -> Any:
        if self.fill_value is not None:
            if kind == "numeric" and not isinstance(self.fill_value, (int, float)):
                raise DataError(
                    f"impute: fill_value {str(self.fill_value)[:40]!r} is not a number, but column "
                    f"'{column}' is numeric; give a number or list string columns in impute.columns"
                )
            if kind == "numeric" and not np.isfinite(self.fill_value):
                raise DataError(f"impute: fill_value for numeric column '{column}' must be finite")
            return self.fill_value
        return "missing_value" if kind == "string" else 0.0  # scikit-learn's defaults

    def partition_stats(self, frame: Frame, y: np.ndarray | None) -> Any:
        out = []
        for c in self.columns_:
            column = frame[c]
            if self.strategy == "mean":
                values = column[~np.isnan(column)]
                out.append(np.array([len(values), values.sum()]))
            elif is_string(column):
                out.append(Counter(v for v in column if v is not None))
            else:
                values, counts = np.unique(column[~np.isnan(column)], return_counts=True)
                out.append(Counter(dict(zip(values.tolist(), counts.tolist(), strict=True))))
        return out

    def combine(self, a: Any, b: Any) -> Any:
        return [x + y for x, y in zip(a, b, strict=True)]

    def finish(self, stats: Any) -> None:
        if self.strategy == "mean":
            self.finish_values([s[1] / s[0] if s[0] else np.nan for s in stats])
        else:
            modes = []
            for counts in stats:
                top = max(counts.values(), default=0)
                modes.append(min(v for v, n in counts.items() if n == top) if top else np.nan)
            self.finish_values(modes)

    def finish_values(self, values: Any) -> None:
        for column, value in zip(self.columns_, values, strict=True):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                raise DataError(
                    f"impute: column '{column}' has no values to compute its {self.strategy} from"
                )
        self.statistics_ = [_plain(v) for v in values]

    def transform(self, frame: Frame) -> Frame:
        out = dict(frame)
        for column, value in zip(self.columns_, self.statistics_, strict=True):
            data = frame[column]
            if is_string(data):
                out[column] = np.where(np.equal(data, None), value, data).astype(object)
            else:
                out[column] = np.where(np.isnan(data), value, data)
        return out


# -- scale --------------------------------------------------------------------------------------------
class Scale(Stage):
    """``standard`` (zero mean, unit population variance) or ``minmax`` (to [0, 1]) scaling."""

    name = "scale"
    _params = ("method", "columns")
    _fitted = ("offset_", "scale_")
    METHODS = ("standard", "minmax")

    def __init__(self, method: str = "standard", columns: list[str] | None = None):
        self.method = method
        self.columns = columns
        self.validate()

    def validate(self) -> None:
        if self.method not in self.METHODS:
            raise ModelError(
                f"scale: unknown method '{self.method}'{did_you_mean(self.method, self.METHODS)}; "
                f"choose one of {', '.join(self.METHODS)}"
            )
        _column_list(self.columns, "scale")

    def _targets(self, kinds: Kinds) -> list[str]:
        default = [c for c, k in kinds.items() if k == "numeric"]
        return _chosen(self, self.columns, kinds, default, "numeric")

    def partition_stats(self, frame: Frame, y: np.ndarray | None) -> Any:
        out = []
        for c in self.columns_:
            values = frame[c][~np.isnan(frame[c])]
            if self.method == "minmax":
                out.append(
                    np.array([values.min(), values.max()])
                    if len(values)
                    else np.array([np.inf, -np.inf])
                )
            else:
                mean = values.mean() if len(values) else 0.0
                out.append(np.array([len(values), mean, ((values - mean) ** 2).sum()]))
        return out

    def combine(self, a: Any, b: Any) -> Any:
        if self.method == "minmax":
            return [np.array([min(x[0], y[0]), max(x[1], y[1])]) for x, y in zip(a, b, strict=True)]
        return [_merge_moments(x, y) for x, y in zip(a, b, strict=True)]

    def finish(self, stats: Any) -> None:
        offsets, scales = [], []
        for column, s in zip(self.columns_, stats, strict=True):
            if self.method == "minmax":
                if not np.isfinite(s).all():
                    raise DataError(f"scale: column '{column}' has no values")
                offsets.append(float(s[0]))
                scales.append(_nonzero(float(s[1] - s[0])))
            else:
                if s[0] == 0:
                    raise DataError(f"scale: column '{column}' has no values")
                offsets.append(float(s[1]))
                scales.append(_nonzero(float(np.sqrt(s[2] / s[0]))))
        self.offset_, self.scale_ = offsets, scales

    def transform(self, frame: Frame) -> Frame:
        out = dict(frame)
        for column, offset, scale in zip(self.columns_, self.offset_, self.scale_, strict=True):
            out[column] = (frame[column] - offset) / scale
        return out


def _merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Merge (count, mean, sum of squared deviations) exactly (Chan et al.)."""
    if a[0] == 0:
        return b
    if b[0] == 0:
        return a
    n = a[0] + b[0]
    delta = b[1] - a[1]
    return np.array([n, a[1] + delta * b[0] / n, a[2] + b[2] + delta * delta * a[0] * b[0] / n])


def _nonzero(scale: float) -> float:
    """scikit-learn's ``_handle_zeros_in_scale``: a (near) zero scale becomes 1."""
    return 1.0 if scale < 10 * np.finfo(np.float64).eps else scale


# -- one_hot ------------------------------------------------------------------------------------------
class OneHot(Stage):
    """One column per category (``col=value``); unseen categories encode as all zeros."""

    name = "one_hot"
    _params = ("columns",)
    _fitted = ("categories_",)

    def __init__(self, columns: list[str] | None = None):
        self.columns = columns
        self.validate()

    def validate(self) -> None:
        _column_list(self.columns, "one_hot")

    def _targets(self, kinds: Kinds) -> list[str]:
        return _chosen(
            self, self.columns, kinds, [c for c, k in kinds.items() if k == "string"], None
        )

    def partition_stats(self, frame: Frame, y: np.ndarray | None) -> Any:
        out = []
        for c in self.columns_:
            column = frame[c]
            missing = np.equal(column, None) if is_string(column) else np.isnan(column)
            if missing.any():
                raise DataError(
                    f"one_hot: column '{c}' has {int(missing.sum())} missing value(s); impute it first"
                )
            out.append(set(column.tolist()))
        return out

    def combine(self, a: Any, b: Any) -> Any:
        return [x | y for x, y in zip(a, b, strict=True)]

    def finish(self, stats: Any) -> None:
        self.categories_ = [sorted(s) for s in stats]

    def output_kinds(self, kinds: Kinds) -> Kinds:
        out: Kinds = {}
        for column, kind in kinds.items():
            if column in self.columns_:
                index = self.columns_.index(column)
                out.update({_encoded(column, v): "numeric" for v in self.categories_[index]})
            else:
                out[column] = kind
        return out

    def transform(self, frame: Frame) -> Frame:
        out: Frame = {}
        for column, data in frame.items():
            if column not in self.columns_:
                out[column] = data
                continue
            for value in self.categories_[self.columns_.index(column)]:
                out[_encoded(column, value)] = (data == value).astype(np.float64)
        return out


def _encoded(column: str, value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{column}={value}"


# -- select ---------------------------------------------------------------------------------------------
class Select(Stage):
    """Keep features: ``variance`` above ``threshold``, or the ``k_best`` by F-test against the label."""

    name = "select"
    _params = ("method", "threshold", "k")
    _fitted = ("scores_", "selected_")
    METHODS = ("variance", "k_best")

    def __init__(self, method: str = "variance", threshold: float = 0.0, k: int = 10):
        self.method = method
        self.threshold = threshold
        self.k = k
        self.validate()

    def validate(self) -> None:
        if self.method not in self.METHODS:
            raise ModelError(
                f"select: unknown method '{self.method}'{did_you_mean(self.method, self.METHODS)}; "
                f"choose one of {', '.join(self.METHODS)}"
            )
        if not isinstance(self.k, int) or self.k < 1:
            raise ModelError(f"select: k must be an integer >= 1, got {self.k!r}")
        if not isinstance(self.threshold, (int, float)) or self.threshold < 0:
            raise ModelError(f"select: threshold must be a number >= 0, got {self.threshold!r}")

    def _targets(self, kinds: Kinds) -> list[str]:
        strings = [c for c, k in kinds.items() if k == "string"]
        if strings:
            raise DataError(
                f"select: column '{strings[0]}' is a string column; one_hot-encode it first"
            )
        if self.method == "k_best" and self.k > len(kinds):
            raise DataError(
                f"select: k={self.k} is more than the {len(kinds)} features at this stage"
            )
        return list(kinds)

    def fit(self, engine: Engine, prepare: Prepared, kinds: Kinds, task: str) -> Kinds:
        if self.method == "k_best" and task not in ("regression", "classification"):
            raise ModelError(
                "select: k_best scores features against a label; use it with a regressor or classifier"
            )
        return super().fit(engine, prepare, kinds, task)

    def partition_stats(self, frame: Frame, y: np.ndarray | None) -> Any:
        X = np.column_stack([frame[c] for c in self.columns_])
        if np.isnan(X).any():
            column = self.columns_[int(np.nonzero(np.isnan(X).any(axis=0))[0][0])]
            raise DataError(f"select: column '{column}' has missing values; impute it first")
        if self.method == "variance":
            mean = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
            spread = (
                [X.min(axis=0), X.max(axis=0)]
                if len(X)
                else [np.full(X.shape[1], np.inf), np.full(X.shape[1], -np.inf)]
            )
            return {
                "n": float(len(X)),
                "mean": mean,
                "m2": ((X - mean) ** 2).sum(axis=0),
                "min": spread[0],
                "max": spread[1],
            }
        assert y is not None
        if self.task_ == "classification":
            classes, index = np.unique(y, return_inverse=True)
            sums = {c: X[index == i].sum(axis=0) for i, c in enumerate(classes.tolist())}
            counts = {c: float((index == i).sum()) for i, c in enumerate(classes.tolist())}
            return {"counts": Counter(counts), "sums": sums, "squares": (X * X).sum(axis=0)}
        y = y.astype(np.float64)
        mean_x = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
        mean_y = float(y.mean()) if len(y) else 0.0
        Xc, yc = X - mean_x, y - mean_y
        return {
            "n": float(len(X)),
            "mx": mean_x,
            "my": mean_y,
            "sxx": (Xc * Xc).sum(axis=0),
            "sxy": Xc.T @ yc,
            "syy": float(yc @ yc),
        }

    def combine(self, a: Any, b: Any) -> Any:
        if self.method == "variance":
            merged = _merge_vector_moments(a, b, "mean", "m2")
            merged.update(min=np.minimum(a["min"], b["min"]), max=np.maximum(a["max"], b["max"]))
            return merged
        if self.task_ == "classification":
            sums = dict(a["sums"])
            for c, s in b["sums"].items():
                sums[c] = sums[c] + s if c in sums else s
            return {
                "counts": a["counts"] + b["counts"],
                "sums": sums,
                "squares": a["squares"] + b["squares"],
            }
        if a["n"] == 0:
            return b
        if b["n"] == 0:
            return a
        n = a["n"] + b["n"]
        dx, dy = b["mx"] - a["mx"], b["my"] - a["my"]
        w = a["n"] * b["n"] / n
        return {
            "n": n,
            "mx": a["mx"] + dx * b["n"] / n,
            "my": a["my"] + dy * b["n"] / n,
            "sxx": a["sxx"] + b["sxx"] + dx * dx * w,
            "sxy": a["sxy"] + b["sxy"] + dx * dy * w,
            "syy": a["syy"] + b["syy"] + dy * dy * w,
        }

    def finish(self, stats: Any) -> None:
        if self.method == "variance":
            variance = stats["m2"] / stats["n"]
            if self.threshold == 0:  # scikit-learn also drops columns whose range is 0
                variance = np.minimum(variance, stats["max"] - stats["min"])
            self.scores_ = variance.tolist()
            keep = variance > self.threshold
            if not keep.any():
                raise DataError(f"select: no feature has a variance above {self.threshold}")
        else:
            scores = _f_classif(stats) if self.task_ == "classification" else _f_regression(stats)
            self.scores_ = [None if np.isnan(s) else float(s) for s in scores]
            clean = np.where(np.isnan(scores), np.finfo(np.float64).min, scores)
            keep = np.zeros(len(scores), dtype=bool)
            keep[np.argsort(clean, kind="mergesort")[-self.k :]] = True  # as SelectKBest
        self.selected_ = [c for c, k in zip(self.columns_, keep, strict=True) if k]

    def output_kinds(self, kinds: Kinds) -> Kinds:
        return {c: kinds[c] for c in self.selected_}

    def transform(self, frame: Frame) -> Frame:
        return {c: frame[c] for c in self.selected_}


def _merge_vector_moments(
    a: dict[str, Any], b: dict[str, Any], mean: str, m2: str
) -> dict[str, Any]:
    if a["n"] == 0:
        return dict(b)
    if b["n"] == 0:
        return dict(a)
    n = a["n"] + b["n"]
    delta = b[mean] - a[mean]
    return {
        "n": n,
        mean: a[mean] + delta * b["n"] / n,
        m2: a[m2] + b[m2] + delta * delta * a["n"] * b["n"] / n,
    }


def _f_regression(stats: dict[str, Any]) -> np.ndarray:
    """scikit-learn's ``f_regression`` (centred, ``force_finite``) from merged co-moments:
    a constant feature scores 0, a perfectly correlated one the largest float."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = stats["sxy"] / np.sqrt(stats["sxx"] * stats["syy"])
        f = r * r / (1 - r * r) * (stats["n"] - 2)
    f = np.where(np.isnan(f), 0.0, f)
    return np.where(np.isinf(f), np.finfo(np.float64).max, f)


def _f_classif(stats: dict[str, Any]) -> np.ndarray:
    """scikit-learn's ``f_classif`` (one-way ANOVA), with its own formula, from class sums."""
    classes = sorted(stats["sums"])
    counts = np.array([stats["counts"][c] for c in classes])
    sums = [stats["sums"][c] for c in classes]
    n = counts.sum()
    square_of_sums_all = sum(sums) ** 2
    sstot = stats["squares"] - square_of_sums_all / n
    ssbn = (
        sum(s * s / count for s, count in zip(sums, counts, strict=True)) - square_of_sums_all / n
    )
    sswn = sstot - ssbn
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ssbn / (len(classes) - 1)) / (sswn / (n - len(classes)))


STAGES: dict[str, type[Stage]] = {s.name: s for s in (Impute, Scale, OneHot, Select)}


def make_stage(name: str, params: dict[str, Any]) -> Stage:
    """The stage a job spec names, parameters checked (one-line errors)."""
    if name not in STAGES:
        raise ModelError(
            f"unknown preprocessing stage '{name}'{did_you_mean(name, STAGES)}; choose one of {', '.join(STAGES)}"
        )
    allowed = STAGES[name]._params
    for key in params:
        if key not in allowed:
            raise ModelError(
                f"{name}: unknown parameter '{key}'{did_you_mean(key, allowed)}; parameters: {', '.join(allowed)}"
            )
    return STAGES[name](**params)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


__all__ = [
    "STAGES",
    "Impute",
    "OneHot",
    "Prepared",
    "Scale",
    "Select",
    "Stage",
    "apply_stages",
    "make_stage",
]
