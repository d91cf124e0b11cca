"""A description of partitioned Parquet data: where it is, which columns matter.

A :class:`Dataset` holds no data. Opening one reads only the Parquet footers
(schemas, row counts), validates everything a job will rely on, and lists the
partitions that backends read on their workers. Partitions are numbered in a
fixed order (sorted file paths, then row groups), so every engine assigns the
same global row numbers to the same rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Union

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from distml.atomic import MARKER
from distml.data.storage import (
    StorageOptions,
    describe_error,
    endpoint_of,
    is_object_store,
    open_location,
    probe_location,
    with_environment,
)
from distml.errors import DataError, SpecError, did_you_mean

if TYPE_CHECKING:  # pyarrow.dataset imports pandas (0.2 s): only for hive folders and filters
    import pyarrow.dataset as pads

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
# Files larger than this many rows are split into several partitions by row group.
MAX_PARTITION_ROWS = 1 << 21


@dataclass(frozen=True)
class PartitionSpec:
    """One unit of parallel work: a file (or some of its row groups)."""

    index: int
    path: str
    num_rows: int
    row_offset: int
    row_groups: tuple[int, ...] | None = None
    partition_values: dict[str, Any] = field(default_factory=dict)
    #: How to reach an object store; travels with the partition to the worker that reads it.
    storage: StorageOptions | None = field(default=None, repr=False, compare=False)


def _is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)


def _is_raw_feature(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return _is_numeric(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def _filesystem(uri: str, storage: StorageOptions | None = None) -> tuple[pafs.FileSystem, str]:
    if is_object_store(uri):
        return open_location(uri, storage)
    if "://" in uri and not uri.startswith("file://"):
        try:
            return pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise DataError(f"{uri}: cannot open this location ({exc})") from None
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(path)


def filesystem_for(uri: str, storage: StorageOptions | None = None) -> pafs.FileSystem:
    """The pyarrow filesystem that serves ``uri`` (workers call this to read partitions)."""
    return _filesystem(uri, storage)[0]


class Dataset:
    """Partitioned Parquet data for a job: path, label, features and partition filters.

    Parameters
    ----------
    path:
        A folder of Parquet files (hive-style ``key=value`` sub-folders or plain
        multi-file), a single Parquet file, or any URL pyarrow understands.
    label:
        The target column; ``None`` for clustering without ground truth.
    features:
        Feature columns; default: every column but the label and the partition keys.
    filters:
        Partition filters in pyarrow's DNF form, e.g. ``[("year", ">=", 2024)]``;
        they may name partition keys only, so row numbering stays known up front.
    raw:
        Read the features as they are — missing values kept, string columns allowed —
        for a preprocessing pipeline to impute, encode and assemble them.
    storage_options:
        For ``s3://`` URLs: ``endpoint_url``, ``region``, ``access_key``, ``secret_key``,
        ``anonymous`` (a dict or :class:`~distml.data.storage.StorageOptions`); unset
        ones come from the environment. They travel to the workers with the partitions.
    """

    #: Whether a dataset without rows is accepted (scoring: empty files give empty outputs).
    allow_empty: ClassVar[bool] = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        label: str | None = None,
        features: list[str] | None = None,
        filters: list[Any] | None = None,
        raw: bool = False,
        storage_options: StorageOptions | dict[str, Any] | None = None,
    ) -> None:
        self.uri = str(path)
        self.label = label
        self.filters = filters
        self.raw = raw
        self.storage = StorageOptions.of(storage_options)
        if self.storage is not None and not is_object_store(self.uri):
            raise SpecError(f"{self.uri}: storage_options apply to s3:// and gs:// URLs only")
        if is_object_store(self.uri):  # what the driver resolved travels to the workers
            self.storage = with_environment(self.storage, self.uri)
        self.filesystem, self.root = _filesystem(self.uri, self.storage)
        try:
            files, partitioning_keys = self._discover()
        except OSError as exc:  # the object store refused or could not be reached
            if not is_object_store(self.uri):
                raise
            raise DataError(describe_error(self.uri, exc)) from None
        self.schema = self._unify_schemas(files)
        self.partition_keys = partitioning_keys
        self.features = self._resolve_features(features)
        self.partitions = self._plan_partitions(files)
        self.num_rows = sum(p.num_rows for p in self.partitions)
        if self.num_rows == 0 and not self.allow_empty:
            raise DataError(f"{self.uri}: the dataset has no rows" + self._filter_note())

    # -- discovery -------------------------------------------------------------------------
    def _discover(self) -> tuple[list[Fragment], list[str]]:
        remote = is_object_store(self.uri)
        info = (
            probe_location(self.uri, self.storage)
            if remote
            else self.filesystem.get_file_info(self.root)
        )
        if info.type == pafs.FileType.NotFound:
            if remote:
                bucket = self.root.split("/", 1)[0]
                where = f"at {endpoint_of(self.storage, self.uri)}"
                if self.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
                    raise DataError(f"{self.uri}: no such bucket '{bucket}' {where}")
                raise DataError(f"{self.uri}: no such key or prefix in bucket '{bucket}' {where}")
            if os.path.islink(self.root):
                raise DataError(f"{self.uri}: a symbolic link to a missing target")
            raise DataError(f"{self.uri}: no such file or directory")
        if info.type == pafs.FileType.File:
            source: Any = [self.root]
        else:
            source = (
                _local_parquet_files(self.root)
                if isinstance(self.filesystem, pafs.LocalFileSystem)
                else self._remote_parquet_files()
            )
            if not source:
                raise DataError(f"{self.uri}: no Parquet files (*.parquet) in this folder")
        keys = self._hive_keys(source) if info.type == pafs.FileType.Directory else []
        if not keys and not self.filters:  # plain files: their footers, no pyarrow.dataset
            return [_Footer(path, self.filesystem) for path in sorted(source)], keys
        if keys:
            self._check_keys_are_not_columns(source[0], keys)
        try:
            import pyarrow.dataset as pads

            dataset = pads.dataset(
                source,
                filesystem=self.filesystem,
                format="parquet",
                partitioning="hive",
                partition_base_dir=self.root if info.type == pafs.FileType.Directory else None,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise DataError(f"{self.uri}: cannot read Parquet metadata ({exc})") from None
        expression = None
        if self.filters:
            expression = self._filter_expression(keys, dataset.schema)
        try:
            fragments = list(dataset.get_fragments(filter=expression))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise DataError(f"{self.uri}: filters {self.filters!r} do not apply ({exc})") from None
        return sorted(fragments, key=lambda f: f.path), keys

    def _remote_parquet_files(self) -> list[str]:
        selector = pafs.FileSelector(self.root, recursive=True)
        found = [i.path for i in self.filesystem.get_file_info(selector) if i.is_file]
        if f"{self.root}/{MARKER}" in found:  # a distml output: only once fully published
            from distml.remote_output import check_published

            check_published(self.uri, self.filesystem, self.root)
        return sorted(
            path
            for path in found
            if path.endswith(PARQUET_SUFFIXES) and not _hidden(os.path.relpath(path, self.root))
        )

    def _check_keys_are_not_columns(self, path: str, keys: list[str]) -> None:
        try:
            names = pq.read_schema(path, filesystem=self.filesystem).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        for key in keys:
            if key in names:
                raise DataError(
                    f"{path}: column '{key}' is also a partition key ({key}=... folders); "
                    "rename the column or the folders"
                )

    def _hive_keys(self, files: list[str]) -> list[str]:
        keys: list[str] = []
        for path in files:
            rel = os.path.relpath(path, self.root)
            for part in rel.split(os.sep)[:-1]:
                if "=" in part:
                    key = part.split("=", 1)[0]
                    if key not in keys:
                        keys.append(key)
        return keys

    def _filter_expression(self, keys: list[str], schema: pa.Schema) -> pads.Expression:
        clauses = normalize_filters(self.filters, self.uri)
        for clause in clauses:
            for i, (name, op, value) in enumerate(clause):
                if name not in keys:
                    raise DataError(
                        f"{self.uri}: filter column '{name}' is not a partition key "
                        f"(partition keys: {', '.join(keys) or 'none'})"
                    )
                clause[i] = (
                    name,
                    op,
                    _filter_value(self.uri, name, schema.field(name).type, value),
                )
        try:
            return pq.filters_to_expression([list(c) for c in clauses])
        except (TypeError, ValueError) as exc:
            raise DataError(f"{self.uri}: invalid filters {self.filters!r} ({exc})") from None

    def _unify_schemas(self, fragments: list[Fragment]) -> pa.Schema:
        if not fragments:
            raise DataError(f"{self.uri}: the dataset has no rows" + self._filter_note())
        reference: pa.Schema | None = None
        reference_path = ""
        for fragment in fragments:
            try:
                schema = fragment.physical_schema
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"{fragment.path}: not a readable Parquet file ({exc})") from None
            if reference is None:
                reference, reference_path = schema, fragment.path
                continue
            if not schema.equals(reference):
                raise DataError(
                    _schema_difference(fragment.path, schema, reference_path, reference)
                )
        assert reference is not None
        for key, value in partition_values(fragments[0]).items():
            if key not in reference.names:
                reference = reference.append(pa.field(key, pa.scalar(value).type))
        return reference

    def _resolve_features(self, features: list[str] | None) -> list[str]:
        names = self.schema.names
        if self.label is not None and self.label not in names:
            raise DataError(
                f"{self.uri}: label column '{self.label}' not found"
                f"{did_you_mean(self.label, names)}; columns: {', '.join(names)}"
            )
        accepted = _is_raw_feature if self.raw else _is_numeric
        kind = "numeric or string" if self.raw else "numeric"
        if features is None:
            features = [n for n in names if n != self.label and n not in self.partition_keys]
            non_numeric = [n for n in features if not accepted(self.schema.field(n).type)]
            if non_numeric:
                column = non_numeric[0]
                advice = "" if self.raw else " or one_hot-encode it in `preprocess`"
                raise DataError(
                    f"{self.uri}: column '{column}' is not {kind} "
                    f"({self.schema.field(column).type}); list `features` explicitly{advice}"
                )
        else:
            if not features:
                raise DataError(f"{self.uri}: `features` is an empty list")
            for column in features:
                if column not in names:
                    raise DataError(
                        f"{self.uri}: feature column '{column}' not found"
                        f"{did_you_mean(column, names)}; columns: {', '.join(names)}"
                    )
                if column == self.label:
                    raise DataError(f"{self.uri}: column '{column}' is both label and feature")
                if not accepted(self.schema.field(column).type):
                    raise DataError(
                        f"{self.uri}: feature column '{column}' is not {kind} "
                        f"({self.schema.field(column).type})"
                    )
        if not features:
            raise DataError(f"{self.uri}: no feature columns besides the label '{self.label}'")
        return list(features)

    def _plan_partitions(self, fragments: list[Fragment]) -> list[PartitionSpec]:
        partitions: list[PartitionSpec] = []
        offset = 0
        for fragment in fragments:
            metadata = fragment.metadata
            values = partition_values(fragment)
            groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
            for chunk in _chunk_row_groups(groups, MAX_PARTITION_ROWS):
                rows = sum(groups[i] for i in chunk)
                whole_file = len(chunk) == len(groups)
                if rows == 0:
                    continue
                partitions.append(
                    PartitionSpec(
                        index=len(partitions),
                        path=fragment.path,
                        num_rows=rows,
                        row_offset=offset,
                        row_groups=None if whole_file else tuple(chunk),
                        partition_values=dict(values),
                        storage=self.storage,
                    )
                )
                offset += rows
        return partitions

    def _filter_note(self) -> str:
        return f" after filters {self.filters!r}" if self.filters else ""

    # -- public helpers --------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """Every column of the data, partition keys included."""
        return list(self.schema.names)

    def feature_dtypes(self) -> dict[str, str]:
        """Arrow type names of the feature columns (kept in saved models)."""
        return {name: str(self.schema.field(name).type) for name in self.features}

    def __repr__(self) -> str:
        return (
            f"Dataset({self.uri!r}, label={self.label!r}, features={len(self.features)}, "
            f"rows={self.num_rows}, partitions={len(self.partitions)})"
        )


def _chunk_row_groups(groups: list[int], max_rows: int) -> list[list[int]]:
    chunks: list[list[int]] = [[]]
    rows = 0
    for i, n in enumerate(groups):
        if chunks[-1] and rows + n > max_rows:
            chunks.append([])
            rows = 0
        chunks[-1].append(i)
        rows += n
    return chunks if chunks[0] else [list(range(len(groups)))]


#: Comparison operators pyarrow's filters take.
FILTER_OPS = ("=", "==", "!=", "<", ">", "<=", ">=", "in", "not in")


def normalize_filters(filters: Any, where: str) -> list[list[tuple[str, str, Any]]]:
    """Filters as a list of AND-clauses (OR between them) of ``(column, op, value)``.

    Takes pyarrow's two forms as YAML writes them: ``[[col, op, value], ...]`` (one
    conjunction, the README's form) and ``[[[col, op, value], ...], ...]`` (disjunctive
    normal form). Anything else is a :class:`DataError` naming the part that is wrong.
    """

    def term(item: Any) -> tuple[str, str, Any]:
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 3
            or not isinstance(item[0], str)
            or not isinstance(item[1], str)
        ):
            raise DataError(
                f"{where}: filter {_short(item)} is not [column, operator, value], e.g. "
                '[year, ">=", 2024]'
            )
        if item[1] not in FILTER_OPS:
            raise DataError(
                f"{where}: filter operator {_short(item[1])} is not one of {', '.join(FILTER_OPS)}"
            )
        return item[0], item[1], item[2]

    if not isinstance(filters, (list, tuple)) or not filters:
        raise DataError(f"{where}: filters must be a non-empty list, got {_short(filters)}")
    if all(isinstance(t, (list, tuple)) and t and isinstance(t[0], str) for t in filters):
        return [[term(t) for t in filters]]
    clauses = []
    for clause in filters:
        if not isinstance(clause, (list, tuple)) or not clause:
            raise DataError(f"{where}: filter clause {_short(clause)} is not a list of filters")
        clauses.append([term(t) for t in clause])
    return clauses


def _filter_value(where: str, name: str, kind: pa.DataType, value: Any) -> Any:
    """``value`` as the partition key's type (hive keys like ``year=2024`` are integers)."""
    values = value if isinstance(value, (list, tuple, set)) else [value]
    converted = []
    for v in values:
        if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and isinstance(v, str):
            try:
                v = int(v) if pa.types.is_integer(kind) else float(v)
            except ValueError:
                raise DataError(
                    f"{where}: filter on '{name}' compares a numeric partition key with {_short(v)}"
                ) from None
        elif (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and not isinstance(
            v, str
        ):
            v = str(v)
        converted.append(v)
    return converted if isinstance(value, (list, tuple, set)) else converted[0]


def _short(value: Any, limit: int = 40) -> str:
    """A short, quoted rendering of user input for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split(os.sep))


def _local_parquet_files(root: str) -> list[str]:
    """Parquet files under ``root`` (hidden ``.``/``_`` names skipped), following symbolic
    links to folders once each; a link back into a folder already walked (a loop) and a
    link to a missing Parquet file are errors naming the link."""
    found: list[str] = []
    seen = {os.path.realpath(root)}
    for folder, dirs, files in os.walk(root, followlinks=True):
        for name in list(dirs):
            path = os.path.join(folder, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if target in seen or any(
                    target == s or s.startswith(target + os.sep) for s in seen
                ):
                    raise DataError(
                        f"{path}: a symbolic link loop (it leads back to {target}); "
                        "remove it from the data folder"
                    )
                seen.add(target)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.startswith((".", "_")) or not name.endswith(PARQUET_SUFFIXES):
                continue
            if _hidden(os.path.relpath(path, root)):
                continue
            if not os.path.exists(path):
                raise DataError(f"{path}: a symbolic link to a missing file")
            found.append(os.path.abspath(path))
    return sorted(found)


def _schema_difference(path: str, schema: pa.Schema, ref_path: str, ref: pa.Schema) -> str:
    for name in ref.names:
        if name not in schema.names:
            return f"{path}: column '{name}' is missing (present in {ref_path})"
        if not schema.field(name).type.equals(ref.field(name).type):
            return (
                f"{path}: column '{name}' has type {schema.field(name).type}, "
                f"but {ref.field(name).type} in {ref_path}"
            )
    extra = [n for n in schema.names if n not in ref.names]
    if extra:
        return f"{path}: extra column '{extra[0]}' (not in {ref_path})"
    return f"{path}: schema differs from {ref_path}"


class _Footer:
    """A plain Parquet file as the planner uses a ``pyarrow.dataset`` fragment: its path,
    footer and schema, read on first use (no partition keys)."""

    def __init__(self, path: str, filesystem: pafs.FileSystem) -> None:
        self.path = path
        self._filesystem = filesystem
        self._metadata: pq.FileMetaData | None = None

    @property
    def metadata(self) -> pq.FileMetaData:
        if self._metadata is None:
            self._metadata = pq.read_metadata(self.path, filesystem=self._filesystem)
        return self._metadata

    @property
    def physical_schema(self) -> pa.Schema:
        return self.metadata.schema.to_arrow_schema()


Fragment = Union[_Footer, "pads.ParquetFileFragment"]


def partition_values(fragment: Fragment) -> dict[str, Any]:
    """A file's hive partition keys and values ({} for a plain file)."""
    if isinstance(fragment, _Footer):
        return {}
    import pyarrow.dataset as pads

    return dict(pads.get_partition_keys(fragment.partition_expression))
