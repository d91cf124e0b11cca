"""Dataset discovery and up-front validation: every bad input names its culprit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import digits, regression_frame, write_parts

from distml.data import Dataset
from distml.errors import DataError


def test_plain_folder_resolves_schema_features_and_rows(regression_dir: Path) -> None:
    ds = Dataset(regression_dir, label="y")
    assert ds.features == ["x0", "x1", "x2", "x3", "x4"]
    assert ds.num_rows == 2000
    assert [p.num_rows for p in ds.partitions] == [500, 500, 500, 500]
    assert [p.row_offset for p in ds.partitions] == [0, 500, 1000, 1500]


def test_hive_partitions_are_keys_not_features_and_filters_prune(tmp_path: Path) -> None:
    frame = regression_frame(300)
    for i, year in enumerate((2023, 2024, 2025)):
        part = frame.iloc[i * 100 : (i + 1) * 100]
        write_parts(tmp_path / "hive" / f"year={year}", part, 2)
    ds = Dataset(tmp_path / "hive", label="y")
    assert ds.partition_keys == ["year"]
    assert "year" not in ds.features and "year" in ds.columns
    assert ds.num_rows == 300
    filtered = Dataset(tmp_path / "hive", label="y", filters=[("year", ">=", 2024)])
    assert filtered.num_rows == 200
    assert {p.partition_values["year"] for p in filtered.partitions} == {2024, 2025}


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such file or directory"):
        Dataset(tmp_path / "nowhere", label="y")


def test_empty_folder_and_folder_without_parquet(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no Parquet files"):
        Dataset(tmp_path / "empty", label="y")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"csv: no Parquet files"):
        Dataset(tmp_path / "csv", label="y")


def test_corrupt_file_is_named(regression_dir: Path) -> None:
    (regression_dir / "part-99999.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"part-99999.parquet"):
        Dataset(regression_dir, label="y")


def test_missing_label_with_suggestion(regression_dir: Path) -> None:
    with pytest.raises(DataError, match=r"label column 'yy' not found \(did you mean 'y'\?\)"):
        Dataset(regression_dir, label="yy")


def test_missing_feature(regression_dir: Path) -> None:
    with pytest.raises(DataError, match=r"feature column 'x9' not found"):
        Dataset(regression_dir, label="y", features=["x0", "x9"])


def test_non_numeric_feature_is_named(tmp_path: Path) -> None:
    frame = regression_frame(20)
    frame["city"] = "paris"
    write_parts(tmp_path / "d", frame, 1)
    with pytest.raises(DataError, match=r"column 'city' is not numeric \(string\)"):
        Dataset(tmp_path / "d", label="y")
    with pytest.raises(DataError, match=r"feature column 'city' is not numeric"):
        Dataset(tmp_path / "d", label="y", features=["x0", "city"])


def test_disagreeing_schemas_name_the_file(tmp_path: Path) -> None:
    frame = regression_frame(20)
    write_parts(tmp_path / "d", frame, 1)
    other = frame.astype({"x1": "float32"})
    pq.write_table(
        pa.Table.from_pandas(other, preserve_index=False), tmp_path / "d" / "part-00001.parquet"
    )
    with pytest.raises(
        DataError,
        match=r"part-00001.parquet: column 'x1' has type float, but double in .*part-00000.parquet",
    ):
        Dataset(tmp_path / "d", label="y")


def test_zero_rows(tmp_path: Path) -> None:
    write_parts(tmp_path / "d", regression_frame(20).iloc[:0], 1)
    with pytest.raises(DataError, match=r"d: the dataset has no rows"):
        Dataset(tmp_path / "d", label="y")


def test_filter_on_a_non_partition_column(regression_dir: Path) -> None:
    with pytest.raises(DataError, match=r"filter column 'x0' is not a partition key"):
        Dataset(regression_dir, label="y", filters=[("x0", ">", 1.0)])


def test_large_files_split_into_row_group_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distml.data.dataset as dataset_module

    monkeypatch.setattr(dataset_module, "MAX_PARTITION_ROWS", 100)
    (tmp_path / "d").mkdir()
    pq.write_table(
        pa.Table.from_pandas(regression_frame(1000), preserve_index=False),
        tmp_path / "d" / "one.parquet",
        row_group_size=100,
    )
    ds = Dataset(tmp_path / "d", label="y")
    assert len(ds.partitions) == 10
    assert [p.row_groups for p in ds.partitions][:2] == [(0,), (1,)]
    assert ds.partitions[-1].row_offset == 900


def test_a_partition_read_row_group_by_row_group_equals_its_whole_table(tmp_path: Path) -> None:
    """The matrix is filled one row group at a time (the read's memory peak): the same
    features and labels as from the partition's whole table — int, float32 and float64
    columns, string labels, a partition of some of a file's row groups — and a NaN count
    over the whole partition, not one row group."""
    from distml.data.reader import feature_matrix, label_vector, load_partition, read_table

    frame = pd.DataFrame(
        {
            "a": np.arange(10, dtype=np.int32),
            "b": np.linspace(0, 1, 10, dtype=np.float32),
            "c": np.linspace(-3, 3, 10),
            "y": [f"class{i % 3}" for i in range(10)],
        }
    )
    (tmp_path / "d").mkdir()
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "d" / "part.parquet", row_group_size=3)
    ds = Dataset(tmp_path / "d", label="y")
    part = ds.partitions[0]
    table = read_table(ds.uri, part, [*ds.features, "y"])
    got, _ = load_partition(ds.uri, part, ds.features, "y")
    np.testing.assert_array_equal(got.X, feature_matrix(table, ds.features, part.path))
    assert (
        got.X.flags.f_contiguous
        and got.y.tolist() == label_vector(table.column("y"), "y", part.path).tolist()
    )
    some = type(part)(0, part.path, 6, 0, (1, 2), {})  # row groups 1 and 2: rows 3-8
    got, _ = load_partition(ds.uri, some, ds.features, "y")
    np.testing.assert_array_equal(got.X[:, 2], frame["c"].to_numpy()[3:9])
    frame.loc[[1, 8], "c"] = np.nan  # in the first and the third row group
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "d" / "part.parquet", row_group_size=3)
    with pytest.raises(DataError, match=r"part.parquet: column 'c' has 2 missing, NaN or infinite"):
        load_partition(ds.uri, part, ds.features, "y")


def test_a_file_rewritten_after_planning_is_named_not_misread(tmp_path: Path) -> None:
    """Row offsets are planned from the footers up front: a file that has more rows when a
    worker reads it is an error naming it, not a matrix filled past its planned rows."""
    from distml.data.reader import load_partition

    write_parts(tmp_path / "d", regression_frame(40), 2)
    ds = Dataset(tmp_path / "d", label="y")
    write_parts(tmp_path / "d", regression_frame(60), 2)  # 30 rows a file now, 20 planned
    with pytest.raises(DataError, match=r"part-00000.parquet: has 30 rows, 20 when it was planned"):
        load_partition(ds.uri, ds.partitions[0], ds.features, ds.label)
    write_parts(tmp_path / "d", regression_frame(20), 2)  # 10 rows a file: fewer than planned
    with pytest.raises(DataError, match=r"part-00001.parquet: has 10 rows, 20 when it was planned"):
        load_partition(ds.uri, ds.partitions[1], ds.features, ds.label)
    pq.write_table(pa.table({"x0": [1.0]}), tmp_path / "d" / "part-00000.parquet")
    chunk = type(ds.partitions[0])(0, ds.partitions[0].path, 20, 0, (0, 1), {})  # 2 row groups
    with pytest.raises(DataError, match=r"part-00000.parquet: has 1 rows, 20 when it was planned"):
        load_partition(ds.uri, chunk, ["x0"], None)


def test_nan_in_features_is_reported_with_file_and_column(tmp_path: Path) -> None:
    from distml.data.reader import load_partition

    frame = regression_frame(50)
    frame.loc[3, "x2"] = np.nan
    write_parts(tmp_path / "d", frame, 1)
    ds = Dataset(tmp_path / "d", label="y")
    with pytest.raises(
        DataError, match=r"part-00000.parquet: column 'x2' has 1 missing, NaN or infinite"
    ):
        load_partition(ds.uri, ds.partitions[0], ds.features, ds.label)
    frame = regression_frame(50)
    frame.loc[7, "x0"] = np.inf
    write_parts(tmp_path / "e", frame, 1)
    ds = Dataset(tmp_path / "e", label="y")
    with pytest.raises(DataError, match=r"column 'x0' has 1 missing, NaN or infinite"):
        load_partition(ds.uri, ds.partitions[0], ds.features, ds.label)


def test_string_labels_are_read_as_strings(tmp_path: Path) -> None:
    from distml.data.reader import load_partition

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": ["cat", "dog", "cat"]})
    write_parts(tmp_path / "d", frame, 1)
    ds = Dataset(tmp_path / "d", label="label")
    part, _ = load_partition(ds.uri, ds.partitions[0], ds.features, ds.label)
    assert part.y.tolist() == ["cat", "dog", "cat"]


def test_object_store_settings_that_cannot_work_are_one_line(monkeypatch, tmp_path: Path) -> None:
    """Refused before any request: an endpoint that is not a URL, an Azure URL without a
    storage account, and an explanation sample from a dataset with one image."""
    from distml.interpret.keras_shap import sample_images

    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_BLOB_ENDPOINT", raising=False)
    for url, options in (
        ("s3://bucket/data", {"endpoint_url": "http://"}),
        ("gs://bucket/data", {"endpoint_url": "http://:9023"}),
    ):
        with pytest.raises(DataError, match=r"^http://(:9023)?: not an endpoint URL"):
            Dataset(url, storage_options=options)
    with pytest.raises(DataError, match=r"^azure: no storage account \(abfs://CONTAINER@ACCOUNT"):
        Dataset("az://container/data")
    from distml.data.mnist import mnist_table

    images, labels = digits(1, 0)
    pq.write_table(mnist_table(images, labels), tmp_path / "one.parquet")
    with pytest.raises(DataError, match=r"one.parquet: 1 rows; SHAP needs images to explain"):
        sample_images(str(tmp_path / "one.parquet"), "pixels", 784, 20, 20)
