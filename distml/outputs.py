"""Where an output goes: a local or shared folder (:class:`~distml.atomic.OutputDir`,
published by one rename) or an object-store prefix (:class:`~distml.remote_output.RemoteOutput`,
published with a marker). Writers ask here, so they need not know which."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distml.atomic import Destination, OutputDir, check_destination
from distml.remote_output import RemoteOutput, as_url

Output = Destination  # an OutputDir or a RemoteOutput


def output_dir(
    final: str | os.PathLike[str],
    kind: str,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    what: str | None = None,
    storage_options: Any = None,
) -> Output:
    """The output ``final`` checked before any work: a folder or an ``s3://`` prefix."""
    url = as_url(final)
    if url is not None:
        return RemoteOutput(url, kind, overwrite, list(inputs), what, storage_options)
    return OutputDir(final, kind, overwrite=overwrite, inputs=inputs, what=what)


def output_path(final: str | Path, *names: str) -> str:
    """A file inside a published output: a path, or a URL on an object store."""
    if isinstance(final, Path):
        return str(final.joinpath(*names))
    return "/".join([final.rstrip("/"), *names])


def check_output(
    final: str | os.PathLike[str],
    what: str = "output",
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    storage_options: Any = None,
) -> str | Path:
    """Validate ``final`` as :func:`output_dir` would, writing nothing; its normal form."""
    url = as_url(final)
    if url is not None:
        return RemoteOutput(url, "output", overwrite, list(inputs), what, storage_options).final
    return check_destination(final, what, overwrite, inputs)


@contextmanager
def atomic_dir(
    final: str | os.PathLike[str],
    kind: str = "output",
    overwrite: bool = True,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> Iterator[Path]:
    """A local staging folder that replaces ``final`` (a folder or ``s3://`` prefix) when the
    block succeeds; ``overwrite`` (the default for library calls such as ``model.save``)
    still replaces only folders distml wrote."""
    with output_dir(final, kind, overwrite=overwrite, inputs=inputs) as tmp:
        yield tmp
