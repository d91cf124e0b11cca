"""The data ``distml predict`` scores: every Parquet file of a folder, empty ones included.

Discovery, schema unification and hive keys are :class:`~distml.data.Dataset`'s (footers
only, the same errors naming file and column); what differs for scoring is the plan:
one task per *file* — each input file gives one output file at the same relative
path — and files without rows are kept, so they give empty outputs.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from distml.data.dataset import Dataset, Fragment, PartitionSpec, partition_values
from distml.errors import DataError
from distml.predict.task import InputFile


class ScoringInput(Dataset):
    """Partitioned Parquet to score: :attr:`files` in path order, with relative paths."""

    allow_empty: ClassVar[bool] = True

    def __init__(self, path: str | os.PathLike[str], filters: list[Any] | None = None) -> None:
        # every column is "a feature" here: the model's own check names what it needs
        self._files: list[InputFile] = []
        super().__init__(path, label=None, features=None, filters=filters, raw=True)

    def _resolve_features(self, features: list[str] | None) -> list[str]:
        return [n for n in self.schema.names if n not in self.partition_keys]

    def _plan_partitions(self, fragments: list[Fragment]) -> list[PartitionSpec]:
        is_folder = self.filesystem.get_file_info(self.root).type.name == "Directory"
        specs, offset = [], 0
        for index, fragment in enumerate(fragments):
            rows = fragment.metadata.num_rows
            values = partition_values(fragment)
            relpath = (
                os.path.relpath(fragment.path, self.root)
                if is_folder
                else os.path.basename(fragment.path)
            )
            if relpath.startswith(".."):
                raise DataError(f"{fragment.path}: lies outside {self.uri}")
            self._files.append(InputFile(index, fragment.path, relpath, rows, dict(values)))
            specs.append(PartitionSpec(index, fragment.path, rows, offset, None, dict(values)))
            offset += rows
        return specs

    @property
    def files(self) -> list[InputFile]:
        return list(self._files)

    @property
    def file_columns(self) -> list[str]:
        """Columns stored in the files (partition keys live in the folder names)."""
        return [n for n in self.schema.names if n not in self.partition_keys]
