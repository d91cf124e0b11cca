"""``solver: mllib``: Spark MLlib fits with scikit-learn's meaning, as portable models.

MLlib differs from scikit-learn in ways that change the fitted model; each is
translated here so the model equals the local backend's:

* it standardises features by default → ``standardization=False``;
* it scales the penalty by the row count → ``regParam = 1 / (C·n)`` and
  ``elasticNetParam = l1_ratio`` for logistic regression;
* for linear regression it also fits the label divided by its standard deviation σ_y
  (the population one in the normal-equation solver used here; its L-BFGS/OWL-QN
  path uses the sample one), which scales the L2 term by σ_y but not the L1 term →
  with scikit-learn's L1 and ½L2 weights ``λ₁, λ₂`` on a ``1/(2n)``-scaled loss
  (ridge: ``0, alpha/n``; lasso: ``alpha, 0``; elastic net: ``alpha·l1_ratio,
  alpha·(1 - l1_ratio)``), ``regParam = λ₁ + λ₂·σ_y`` and ``elasticNetParam =
  λ₁ / regParam`` — equal to ``l1_ratio`` only when σ_y = 1;
* its stopping rules differ → logistic regression's ``tol`` on the gradient becomes
  MLlib's relative objective change ``tol²`` (linear regression's L1 ``tol``, already
  relative to the objective, passes as it is); k-means' total squared centre shift
  ``tol × mean variance`` becomes MLlib's per-centre shift ``sqrt(that / k)``;
* it has no k-means++ (``init="k-means++"`` uses MLlib's k-means||) and no
  ``n_init`` (distml runs it ``n_init`` times and keeps the lowest cost).

The data is read the way a Spark user reads it (``spark.read.parquet``, the
feature vector assembled once and cached). With a split, ``is_test`` is computed
from the global row number (the file's offset + ``_metadata.row_index``), so the
training rows are exactly those of every other engine.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from distml.data.dataset import Dataset
from distml.data.split import Split
from distml.errors import ConvergenceWarning, DataError, ModelError
from distml.models.base import Model

log = logging.getLogger(__name__)

FEATURES = "__features"
IS_TEST = "__is_test"
ROW_ID = "__row_id"


# -- reading -------------------------------------------------------------------------------------
def _spark_paths(dataset: Dataset) -> list[str]:
    files = sorted({p.path for p in dataset.partitions})
    if "://" in dataset.uri and not dataset.uri.startswith("file://"):
        scheme = dataset.uri.split("://", 1)[0]
        return [f"{scheme}://{f}" for f in files]
    return files


def _file_offsets(dataset: Dataset) -> dict[str, int]:
    offsets: dict[str, int] = {}
    for spec in dataset.partitions:
        offsets.setdefault(spec.path, spec.row_offset)
    return offsets


def read_frame(spark: Any, dataset: Dataset, split: Split | None) -> Any:
    """The dataset as a cached DataFrame: ``__features`` (vector), the label, ``__is_test``."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    reader = spark.read
    if dataset.partition_keys:
        reader = reader.option("basePath", dataset.root)
    frame = reader.parquet(*_spark_paths(dataset))
    columns = [F.col(c) for c in dataset.features]
    if dataset.label is not None:
        columns.append(F.col(dataset.label))
    if split is not None:
        pairs = itertools.chain.from_iterable(
            (F.lit(path), F.lit(offset)) for path, offset in _file_offsets(dataset).items()
        )
        # Spark reports ``file:/abs/path`` (URL-encoded); pyarrow knows ``/abs/path``
        path = F.expr(
            "url_decode(regexp_replace(_metadata.file_path, '^[A-Za-z][A-Za-z0-9+.-]*:(//)?', ''))"
        )
        row_id = F.element_at(F.create_map(*pairs), path) + F.col("_metadata.row_index")
        frame = frame.select(*columns, row_id.alias(ROW_ID))
        frame = frame.withColumn(IS_TEST, _test_flags(split, dataset.num_rows)(F.col(ROW_ID)))
    else:
        frame = frame.select(*columns)
    assembler = VectorAssembler(
        inputCols=list(dataset.features), outputCol=FEATURES, handleInvalid="keep"
    )
    keep = [FEATURES] + ([dataset.label] if dataset.label else []) + ([IS_TEST] if split else [])
    return assembler.transform(frame).select(*keep).cache()


def _test_flags(split: Split, n_total: int) -> Any:
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("boolean")  # type: ignore[call-overload]  # hints resolve in this module
    def is_test(row_id: pd.Series) -> pd.Series:
        return pd.Series(split.test_mask(n_total, row_id.to_numpy(dtype=np.int64)))

    return is_test


def summarize(frame: Any, dataset: Dataset, split: Split | None) -> dict[str, Any]:
    """Materialise the cache in one pass and check it: rows, means, variances (per feature).

    A NaN or infinite value, or rows Spark could not place in the dataset's row
    numbering, is reported like the other engines report it: file and column.
    """
    from pyspark.ml.stat import Summarizer
    from pyspark.sql import functions as F

    aggregates = [
        Summarizer.metrics("count", "mean", "variance").summary(F.col(FEATURES)).alias("s")
    ]
    if split is not None:
        aggregates.append(F.sum(F.col(IS_TEST).isNull().cast("long")).alias("unplaced"))
        aggregates.append(F.sum(F.col(IS_TEST).cast("long")).alias("test"))
    row = frame.agg(*aggregates).collect()[0]
    stats = row["s"]
    count = int(stats["count"]) if stats is not None else 0
    if count == 0:
        raise DataError(f"{dataset.uri}: the dataset has no rows")
    mean, variance = stats["mean"].toArray(), stats["variance"].toArray()
    if not (np.isfinite(mean).all() and np.isfinite(variance).all()):
        bad = int(np.nonzero(~(np.isfinite(mean) & np.isfinite(variance)))[0][0])
        raise DataError(_locate_bad_value(frame.sparkSession, dataset, dataset.features[bad]))
    if split is not None and row["unplaced"]:
        raise DataError(
            f"{dataset.uri}: Spark read {row['unplaced']} row(s) from files distml did not plan "
            "(did the data change since it was opened?)"
        )
    return {
        "count": count,
        "test": int(row["test"] or 0) if split is not None else 0,
        "mean": mean,
        "variance": variance,
    }


def _locate_bad_value(spark: Any, dataset: Dataset, column: str) -> str:
    from pyspark.sql import functions as F

    bad = F.isnan(F.col(column)) | F.col(column).isNull() | (F.abs(F.col(column)) == float("inf"))
    rows = (
        spark.read.parquet(*_spark_paths(dataset))
        .where(bad)
        .select(F.col("_metadata.file_path").alias("file"))
        .groupBy("file")
        .count()
        .limit(1)
        .collect()
    )
    where = rows[0]["file"].replace("file:", "", 1) if rows else dataset.uri
    count = rows[0]["count"] if rows else "some"
    return (
        f"{where}: column '{column}' has {count} missing, NaN or infinite value(s); "
        "impute or drop them before training"
    )


# -- fitting -------------------------------------------------------------------------------------
def fit(estimator: Model, frame: Any, stats: dict[str, Any], label: str | None) -> None:
    """Fit ``estimator`` with MLlib on ``frame`` and set its portable attributes."""
    kind = estimator.model_type
    if kind == "linear_regression":
        _linear(estimator, frame, stats, label)
    elif kind == "logistic_regression":
        _logistic(estimator, frame, stats, label)
    elif kind == "kmeans":
        _kmeans(estimator, frame, stats)
    else:  # pragma: no cover - every registered model type is handled above
        raise ModelError(f"solver 'mllib' cannot fit {kind}")


def _linear(estimator: Any, frame: Any, stats: dict[str, Any], label: str | None) -> None:
    from pyspark.ml.regression import LinearRegression
    from pyspark.sql import functions as F

    alpha = float(estimator.alpha)
    # scikit-learn's L1 and ½L2 weights on the 1/(2n)-scaled squared loss
    if estimator.penalty in ("l1", "elasticnet"):
        ratio = estimator.effective_l1_ratio()
        l1, l2 = alpha * ratio, alpha * (1.0 - ratio)
    else:
        l1, l2 = 0.0, alpha / stats["count"]
    reg = l1
    if l2 > 0:
        # the normal-equation solver divides by the population σ_y (L-BFGS by the sample one)
        label_std = frame.agg(F.stddev_pop(F.col(label))).collect()[0][0] or 1.0
        reg = l1 + l2 * label_std
    # with an L1 term the normal-equation solver iterates (OWL-QN): max_iter and tol pass on
    iterative = {"maxIter": int(estimator.max_iter), "tol": float(estimator.tol)} if l1 else {}
    model = LinearRegression(
        featuresCol=FEATURES,
        labelCol=label,
        fitIntercept=bool(estimator.fit_intercept),
        standardization=False,
        regParam=reg,
        elasticNetParam=l1 / reg if reg > 0 else 0.0,
        solver="normal",
        **iterative,
    ).fit(frame.withColumn(label, F.col(label).cast("double")))
    estimator.coef_ = model.coefficients.toArray()
    estimator.intercept_ = float(model.intercept)
    estimator.rank_ = len(estimator.coef_)
    estimator.singular_ = np.zeros(0)
    estimator.native_model_ = model
    iterations = int(model.summary.totalIterations) if l1 > 0 else None
    estimator._set_iterations(iterations, None)
    if iterations is not None and iterations >= int(estimator.max_iter):
        warnings.warn(
            f"MLlib linear regression stopped at max_iter={estimator.max_iter} iterations; "
            "increase max_iter or scale the features",
            ConvergenceWarning,
            stacklevel=4,
        )


def _logistic(estimator: Any, frame: Any, stats: dict[str, Any], label: str | None) -> None:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    classes = np.array(sorted(r[0] for r in frame.select(label).distinct().collect()))
    if len(classes) < 2:
        raise DataError(
            f"the label has only one class ({classes[0] if len(classes) else 'none'}); "
            "classification needs at least 2"
        )
    mapping = F.create_map(
        *itertools.chain.from_iterable(
            (F.lit(_plain(c)), F.lit(float(i))) for i, c in enumerate(classes)
        )
    )
    indexed = frame.withColumn("__label_index", F.element_at(mapping, F.col(label)))
    penalty, l1_ratio = estimator.effective_penalty()
    reg = 0.0 if penalty is None else 1.0 / (float(estimator.C) * stats["count"])
    model = LogisticRegression(
        featuresCol=FEATURES,
        labelCol="__label_index",
        family="binomial" if len(classes) == 2 else "multinomial",
        fitIntercept=bool(estimator.fit_intercept),
        standardization=False,
        regParam=reg,
        elasticNetParam=l1_ratio,
        maxIter=int(estimator.max_iter),
        tol=max(float(estimator.tol) ** 2, 1e-15),
    ).fit(indexed)
    summary = model.summary
    if len(classes) == 2:
        estimator.coef_ = model.coefficients.toArray().reshape(1, -1)
        estimator.intercept_ = np.array([model.intercept])
    else:
        estimator.coef_ = model.coefficientMatrix.toArray()
        estimator.intercept_ = model.interceptVector.toArray()
    estimator.classes_ = classes
    estimator.n_iter_ = int(summary.totalIterations)
    estimator.objective_ = float(summary.objectiveHistory[-1])
    estimator.native_model_ = model
    if estimator.n_iter_ >= int(estimator.max_iter):
        warnings.warn(
            f"MLlib logistic regression stopped at max_iter={estimator.max_iter} iterations; "
            "increase max_iter or scale the features",
            ConvergenceWarning,
            stacklevel=4,
        )


def _kmeans(estimator: Any, frame: Any, stats: dict[str, Any]) -> None:
    from pyspark.ml.clustering import KMeans

    if not isinstance(estimator.init, str):
        raise ModelError("solver 'mllib' cannot start from given centres; use solver native")
    k = int(estimator.n_clusters)
    if stats["count"] < k:
        raise DataError(f"n_clusters={k} is larger than the number of rows ({stats['count']})")
    mean_variance = float(np.mean(stats["variance"]) * (stats["count"] - 1) / stats["count"])
    shift = float(np.sqrt(float(estimator.tol) * mean_variance / k))
    rs = np.random.RandomState(estimator.random_state)
    best = None
    for _ in range(estimator._effective_n_init()):
        model = KMeans(
            featuresCol=FEATURES,
            k=k,
            maxIter=int(estimator.max_iter),
            tol=shift,
            seed=int(rs.randint(np.iinfo(np.int32).max)),
            initMode="random" if estimator.init == "random" else "k-means||",
            initSteps=2,
        ).fit(frame)
        if best is None or model.summary.trainingCost < best.summary.trainingCost:
            best = model
    assert best is not None
    estimator.cluster_centers_ = np.array([np.asarray(c) for c in best.clusterCenters()])
    estimator.inertia_ = float(best.summary.trainingCost)
    estimator.n_iter_ = int(best.summary.numIter)
    estimator.native_model_ = best


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
