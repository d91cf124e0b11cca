"""One scoring task: an input Parquet file in, its predictions file out (worker-side).

Every backend runs :func:`score_file` where the data lives (a local thread, a Dask
worker, a Spark executor). The file is read row group by row group, so memory stays
bounded by a row group, and each one is written as a row group of the output, which
lands at the input's relative path (hive ``key=value`` folders kept) under the
job's output folder. The file is written under a temporary name and renamed when
complete, so a task re-run after a lost worker never leaves a torn file.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distml.data.dataset import filesystem_for
from distml.data.storage import Location, StorageOptions, writable
from distml.errors import DataError
from distml.predict.scorers import Scorer


@dataclass(frozen=True)
class InputFile:
    """One input Parquet file: where it is, where its output goes, its hive keys."""

    index: int
    path: str
    relpath: str
    num_rows: int
    partition_values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreJob:
    """What every task of one ``distml predict`` shares (sent once per worker)."""

    scorer: Scorer
    uri: str  # the input location (its filesystem)
    out_dir: str | Location  # the hidden folder (or object-store prefix) outputs go into
    keep: tuple[str, ...]  # input columns copied to the output (in the files)
    output: str  # predict | proba | both
    schema: pa.Schema  # the output files' schema: kept columns, then the added ones
    storage: StorageOptions | None = None  # how to reach an object store holding the input


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: not floats (nearly all distinct, so the encoder
    builds a dictionary only to give it up — measured 8x slower writes) and not lists."""
    return [
        f.name
        for f in schema
        if not pa.types.is_floating(f.type) and not pa.types.is_fixed_size_list(f.type)
    ]


#: A copied float column whose input bytes were as many as its raw values (no dictionary
#: gain) and shrank by less than this under their codec is written uncompressed: the output
#: writes floats plain, the same bytes, so compressing them again costs CPU for nothing
#: (random floats do not compress; snappy was ~25% of the write of a float-only file).
USEFUL_COMPRESSION = 0.9


def uncompressed_copies(
    metadata: pq.FileMetaData, schema: pa.Schema, keep: tuple[str, ...]
) -> dict[str, str]:
    """``{column: "none"}`` for each copied float column the input itself stored without any
    gain, from its footer (every other column keeps snappy)."""
    floats = {
        name: schema.field(name).type.byte_width
        for name in keep
        if name in schema.names and pa.types.is_floating(schema.field(name).type)
    }
    sizes: dict[str, list[int]] = {}
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for i in range(group.num_columns):
            chunk = group.column(i)
            if chunk.path_in_schema in floats:
                size = sizes.setdefault(chunk.path_in_schema, [0, 0, 0])
                size[0] += chunk.total_compressed_size
                size[1] += chunk.total_uncompressed_size
                size[2] += chunk.num_values * floats[chunk.path_in_schema]
    return {
        name: "none"
        for name, (stored, encoded, raw) in sizes.items()
        if raw and encoded >= USEFUL_COMPRESSION * raw and stored >= USEFUL_COMPRESSION * encoded
    }


def output_codecs(schema: pa.Schema, plain: dict[str, str]) -> str | dict[str, str]:
    """Snappy for every leaf column of ``schema`` but the ``plain`` ones (pyarrow's per-column
    form names leaves: ``probability.list.element``); plain snappy when a column nests deeper
    than a list of values."""
    codecs = {}
    for f in schema:
        kind = f.type
        if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
            if pa.types.is_nested(kind.value_type):
                return "snappy"
            codecs[f"{f.name}.list.element"] = "snappy"
        elif pa.types.is_nested(kind):
            return "snappy"
        else:
            codecs[f.name] = plain.get(f.name, "snappy")
    return codecs


def score_file(file: InputFile, job: ScoreJob) -> int:
    """Score ``file`` into ``job.out_dir/file.relpath``; the number of rows written."""
    keys = file.partition_values
    wanted = [*job.keep, *(c for c in job.scorer.columns() if c not in job.keep)]
    in_file = [c for c in wanted if c not in keys]
    fs, target = writable(job.out_dir, file.relpath)
    # a local file is renamed into place when whole; an object appears whole on completion
    partial = f"{target}.{uuid.uuid4().hex}.tmp" if fs is None else target
    rows = 0
    try:
        parquet = pq.ParquetFile(file.path, filesystem=filesystem_for(job.uri, job.storage))
        codecs = output_codecs(
            job.schema, uncompressed_copies(parquet.metadata, job.schema, job.keep)
        )
        with pq.ParquetWriter(
            partial,
            job.schema,
            use_dictionary=dictionary_columns(job.schema),
            compression=codecs,
            filesystem=fs,
        ) as writer:
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=in_file, use_threads=False)
                for key, value in keys.items():  # a hive key the model reads: a constant column
                    if key in wanted:
                        table = table.append_column(key, pa.array([value] * table.num_rows))
                added = job.scorer.score(table, job.output, file.path)
                columns = [table.column(name) for name in job.keep] + added
                writer.write_table(pa.Table.from_arrays(columns, schema=job.schema))
                rows += table.num_rows
        if fs is None:
            os.replace(partial, target)
    except FileNotFoundError as exc:
        if exc.filename not in (None, file.path):
            raise
        raise DataError(f"{file.path}: not found where this task ran") from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{file.path}: cannot score ({exc})") from None
    finally:
        if fs is None and os.path.exists(partial):
            os.unlink(partial)
    return rows
