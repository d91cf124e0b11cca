"""The local backend and the registry: caching, streaming, predictions, solvers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from numpy.testing import assert_array_equal
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import adjusted_rand_score

import distml
from distml.backends import get_backend, parse_backend
from distml.data.generate import Recipe, generate
from distml.errors import BackendError, ModelError


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        Recipe("blobs", rows=20_000, features=4, partitions=5, seed=3, centers=4),
        tmp_path_factory.mktemp("blobs") / "b",
    )


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        Recipe("regression", rows=30_000, features=6, partitions=6, seed=1),
        tmp_path_factory.mktemp("reg") / "r",
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("local", ("local", {"threads": None})),
        ("local[4]", ("local", {"threads": 4})),
        ("local[*]", ("local", {"threads": None})),
        ("dask://10.0.0.1:8786", ("dask", {"address": "dask://10.0.0.1:8786"})),
        ("tls://h:8786", ("dask", {"address": "tls://h:8786"})),
        ("spark://h:7077", ("spark", {"master": "spark://h:7077"})),
        ("yarn", ("spark", {"master": "yarn"})),
        ("k8s://https://api:443", ("spark", {"master": "k8s://https://api:443"})),
    ],
)
def test_registry_resolves_names_and_urls(name: str, expected) -> None:
    assert parse_backend(name) == expected


def test_registry_errors() -> None:
    with pytest.raises(BackendError, match=r"unknown URL scheme 'http://'"):
        parse_backend("http://x")
    with pytest.raises(BackendError, match=r"unknown backend 'lokal' \(did you mean 'local'\?\)"):
        parse_backend("lokal")


def test_generated_data_recovers_the_true_coefficients(regression: Path) -> None:
    truth = json.loads((regression / "_truth.json").read_text())
    ds = distml.Dataset(regression, label="y")
    with get_backend("local[2]") as backend:
        model = backend.fit(distml.LinearRegression(), backend.load(ds))
    np.testing.assert_allclose(model.coef_, truth["coef"], atol=0.03)
    assert model.fit_info_["rows"] == 30_000 and model.fit_info_["backend"] == "local[2]"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = generate(
        Recipe("classification", rows=500, features=3, partitions=2, seed=9, classes=3),
        tmp_path / "a",
    )
    b = generate(
        Recipe("classification", rows=500, features=3, partitions=2, seed=9, classes=3),
        tmp_path / "b",
    )
    for name in ("part-00000.parquet", "part-00001.parquet"):
        assert pq.read_table(a / name).equals(pq.read_table(b / name))
    assert set(pq.read_table(a).column("y").to_pylist()) == {0, 1, 2}


def test_streaming_gives_the_cached_model(regression: Path, blobs: Path) -> None:
    ds = distml.Dataset(regression, label="y")
    with get_backend("local[2]") as cached, get_backend("local[2]", memory_limit=1) as streaming:
        split = distml.Split(0.2, 42)
        a, b = cached.load(ds, split), streaming.load(ds, split)
        assert a.train.can_cache and not b.train.can_cache
        assert a.train.partition_sizes == b.train.partition_sizes
        lin_a = cached.fit(distml.LinearRegression(), a)
        lin_b = streaming.fit(distml.LinearRegression(), b)
        np.testing.assert_allclose(lin_b.coef_, lin_a.coef_, rtol=1e-12)
        assert cached.evaluate(lin_a, a.test) == streaming.evaluate(lin_b, b.test)
        km = distml.Dataset(blobs, label="y")
        k_a = cached.fit(distml.KMeans(n_clusters=4, random_state=0), cached.load(km))
        k_b = streaming.fit(distml.KMeans(n_clusters=4, random_state=0), streaming.load(km))
        np.testing.assert_allclose(k_b.cluster_centers_, k_a.cluster_centers_, rtol=1e-12)
        # logistic regression streams too: one re-read per L-BFGS evaluation, the same model
        log_a = cached.fit(distml.LogisticRegression(), cached.load(km))
        log_b = streaming.fit(distml.LogisticRegression(), streaming.load(km))
        assert log_b.n_iter_ == log_a.n_iter_ > 1
        np.testing.assert_allclose(log_b.coef_, log_a.coef_, rtol=1e-12)
        np.testing.assert_allclose(log_b.intercept_, log_a.intercept_, rtol=1e-12)


def test_streamed_partitions_reuse_a_buffer_only_when_nothing_holds_it(regression: Path) -> None:
    """A streaming pass reads each partition into the thread's scratch buffer; a partition
    (or a view of it) that outlives its pass is never overwritten by the next read."""
    from distml.data.reader import scratch_matrix

    ds = distml.Dataset(regression, label="y")
    expected = [p.X.copy() for p in get_backend("local[1]").load(ds).train.partitions()]
    with get_backend("local[1]", memory_limit=1) as streaming:
        engine = streaming.load(ds).train
        kept = engine.partitions()  # every partition alive at once: distinct buffers
        assert len(kept) > 1
        for part, X in zip(kept, expected, strict=True):
            assert_array_equal(part.X, X)
        views = engine.map_reduce(lambda part: [part.X[:3]], combine=lambda a, b: a + b)
        engine.map_reduce(lambda part: part.n_rows, combine=lambda a, b: a + b)  # reads again
        assert [v.tolist() for v in views] == [X[:3].tolist() for X in expected]
    first = scratch_matrix(4, 2)
    first_address = first.__array_interface__["data"][0]
    del first
    again = scratch_matrix(3, 2)  # nothing holds the buffer: reused
    assert again.__array_interface__["data"][0] == first_address and again.flags.f_contiguous
    other = scratch_matrix(3, 2)  # `again` still holds it: a new buffer
    assert other.__array_interface__["data"][0] != first_address


def test_kmeans_on_blobs_matches_sklearn_and_truth(blobs: Path) -> None:
    ds = distml.Dataset(blobs, label="y")
    frame = pq.read_table(blobs).to_pandas()
    X = frame[ds.features].to_numpy()
    reference = SkKMeans(4, n_init=1, random_state=0).fit(X)
    with get_backend("local") as backend:
        data = backend.load(ds)
        model = backend.fit(distml.KMeans(n_clusters=4, random_state=0), data)
        metrics = backend.evaluate(model, data.train)
    assert model.inertia_ <= 1.001 * reference.inertia_
    assert metrics["adjusted_rand"] == pytest.approx(
        adjusted_rand_score(frame["y"], model.predict(X)), abs=1e-12
    )
    assert metrics["adjusted_rand"] > 0.99  # generated blobs (std 1) overlap a little


def test_integer_labels_are_cached_narrow_and_leave_in_their_own_type(
    blobs: Path, tmp_path: Path
) -> None:
    """The blobs' int64 labels 0-3 are cached as int8 (1 byte a row instead of 8); classes,
    samples, scikit-learn's solver and the written predictions still see int64."""
    from distml.algorithms.engine import Partition

    ds = distml.Dataset(blobs, label="y")
    truth = pq.read_table(blobs).column("y").to_numpy()
    with get_backend("local[2]") as backend:
        data = backend.load(ds, distml.Split(0.25, 0), keep_source=True)
        parts = data.train.partitions()
        assert {(p.y.dtype, p.label_dtype) for p in parts} == {
            (np.dtype("int8"), np.dtype("int64"))
        }
        assert all(p.labels().dtype == np.int64 for p in parts)
        rows = np.concatenate([p.row_ids for p in parts])
        assert_array_equal(np.concatenate([p.labels() for p in parts]), truth[rows])
        native = backend.fit(distml.LogisticRegression(max_iter=50), data)
        sklearn = backend.fit(distml.LogisticRegression(max_iter=50, solver="sklearn"), data)
        backend.write_predictions(native, data.test, str(tmp_path))
    for model in (native, sklearn):
        assert model.classes_.dtype == np.int64 and model.classes_.tolist() == [0, 1, 2, 3]
    predictions = pq.read_table(tmp_path)
    assert predictions.schema.field("prediction").type == predictions.schema.field("y").type
    assert np.mean(predictions.column("prediction").to_numpy() == predictions.column("y")) > 0.99
    # the narrowest type that holds the values; other labels stay as they are
    assert Partition(np.zeros((2, 1)), np.array([-129, 5]), 0).y.dtype == np.int16
    assert Partition(np.zeros((2, 1)), np.array([0, 70_000], np.int64), 0).y.dtype == np.int32
    assert Partition(np.zeros((2, 1)), np.array([0, 2**40]), 0).y.dtype == np.int64
    assert Partition(np.zeros((2, 1)), np.array([0, 200], np.uint16), 0).y.dtype == np.uint16
    assert Partition(np.zeros((2, 1)), np.array([0.5, 1.0]), 0).y.dtype == np.float64
    assert Partition(np.zeros((2, 1)), np.array(["a", "b"]), 0).labels().tolist() == ["a", "b"]


def test_predictions_are_written_per_partition(regression: Path, tmp_path: Path) -> None:
    ds = distml.Dataset(regression, label="y")
    with get_backend("local[2]") as backend:
        data = backend.load(ds, distml.Split(0.25, 0), keep_source=True)
        model = backend.fit(distml.LinearRegression(), data)
        files = backend.write_predictions(model, data.test, str(tmp_path))
    assert [Path(f).name for f in files] == [f"part-{i:05d}.parquet" for i in range(6)]
    table = pq.read_table(tmp_path).to_pandas()
    assert len(table) == data.test.n_rows
    np.testing.assert_allclose(table["prediction"], model.predict(table[ds.features].to_numpy()))


def test_unavailable_solver_is_named(regression: Path) -> None:
    ds = distml.Dataset(regression, label="y")
    with (
        get_backend("local") as backend,
        pytest.raises(ModelError, match="solver 'mllib' is not available on the local backend"),
    ):
        backend.fit(distml.LinearRegression(solver="mllib"), backend.load(ds))


def test_sklearn_solver_on_the_local_backend(regression: Path) -> None:
    ds = distml.Dataset(regression, label="y")
    with get_backend("local") as backend:
        data = backend.load(ds)
        native = backend.fit(distml.LinearRegression(), data)
        library = backend.fit(distml.LinearRegression(solver="sklearn"), data)
    np.testing.assert_allclose(library.coef_, native.coef_, rtol=1e-8)
    assert library.fit_info_["solver"] == "sklearn"


def test_stop_is_safe_twice() -> None:
    backend = get_backend("local[1]")
    backend.start()
    backend.stop()
    backend.stop()
    assert backend._pool is None


def test_memory_limit_strings() -> None:
    from distml.backends.local import parse_bytes

    assert parse_bytes("512MB") == 512 * 10**6
    assert parse_bytes("2GiB") == 2 * 2**30
    assert get_backend("local", memory_limit="1kb").memory_limit == 1000
    with pytest.raises(BackendError, match=r"memory_limit: cannot parse 'lots'"):
        get_backend("local", memory_limit="lots")


def test_cached_partitions_hold_their_features_and_label_not_their_row_numbers(
    regression: Path,
) -> None:
    """A whole file's partition keeps its first row number only (8 bytes a row less in
    the cache and in what travels to workers); a split's parts store the rows they kept.
    Either way ``row_ids`` are the global row numbers, which key splits and sampling."""
    import pickle

    with get_backend("local[2]") as backend:
        whole = backend.load(distml.Dataset(regression, label="y")).train.partitions()
        split = backend.load(distml.Dataset(regression, label="y"), distml.Split(0.25, seed=1))
        train, test = split.train.partitions(), split.test.partitions()
    assert [p.n_rows for p in whole] == [5_000] * 6
    for part in whole:
        first = part.index * 5_000
        assert_array_equal(part.row_ids, np.arange(first, first + 5_000))
        assert len(pickle.dumps(part)) < part.X.nbytes + part.y.nbytes + 1_000
    for a, b in zip(train, test, strict=True):
        ids = np.concatenate([a.row_ids, b.row_ids])
        first = a.index * 5_000
        assert_array_equal(np.sort(ids), np.arange(first, first + 5_000))
        assert len(pickle.dumps(a)) > a.X.nbytes + a.y.nbytes + 8 * a.n_rows
