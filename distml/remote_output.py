"""Outputs published to an object store (``s3://``, ``gs://``), all-or-nothing without a rename.

An object store has no atomic folder rename, so :class:`RemoteOutput` publishes in steps
that readers can tell apart by the marker :data:`~distml.atomic.MARKER`:

1. ``open()`` checks the destination before any work (the bucket exists, the prefix is
   empty or — with ``overwrite`` — a folder distml published; never an input) and proves
   write access by creating the hidden staging prefix ``.<name>.tmp-<pid>@<host>-<id>``
   beside it. Driver-side writers get a local staging folder (the same API as
   :class:`~distml.atomic.OutputDir`); worker-side writers (predictions, generated
   partitions) write straight into the staging prefix (:attr:`shared`).
2. ``publish()`` uploads the local files into the staging prefix, marks the destination
   ``"state": "publishing"`` (readers refuse it from here on), deletes a previous output's
   objects, copies the staged objects into place (server-side copies; ``_SUCCESS`` last)
   and finally rewrites the marker as ``"state": "complete"``.

A run killed at any point leaves either the previous complete output, nothing, or a
destination whose marker says ``publishing``, which every distml reader refuses and the
next ``--overwrite`` replaces; its staging prefix is hidden from listings and removed by
the next writer on the same host once the writer process is gone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from distml.atomic import MARKER, Destination, _alive, _owner
from distml.data.storage import (
    OBJECT_SCHEMES,
    Location,
    StorageOptions,
    delete_prefix,
    describe_error,
    endpoint_of,
    object_filesystem,
    split_location,
    with_environment,
)
from distml.errors import DataError

#: Locations distml can name but not write as object stores.
OTHER_STORES = ("hdfs", "http", "https")
#: Written last, before the final marker: Spark's and Hadoop's readers look for it.
LAST_FILES = ("_manifest.json", "_SUCCESS")
COMPLETE = "complete"
PUBLISHING = "publishing"


def as_url(text: str | os.PathLike[str]) -> str | None:
    """``text`` as an object-store URL, or None for a local path (click's Path type folds
    ``s3://b/k`` into ``s3:/b/k``; both are URLs)."""
    value = os.fspath(text)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):/+(.*)$", value)
    if match is None or match.group(1).lower() not in (*OBJECT_SCHEMES, *OTHER_STORES):
        return None
    return f"{match.group(1).lower()}://{match.group(2)}"


def is_remote(text: str | os.PathLike[str]) -> bool:
    return as_url(text) is not None


def _inside(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/")


def read_marker(fs: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    """The marker of the folder ``path`` on ``fs`` (None: there is none)."""
    try:
        with fs.open_input_stream(f"{path}/{MARKER}") as stream:
            return json.loads(stream.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {"state": "unreadable"}


def check_published(url: str, fs: pafs.FileSystem, path: str) -> None:
    """Refuse a distml output on an object store whose publication did not complete."""
    marker = read_marker(fs, path)
    if marker is not None and marker.get("state", COMPLETE) != COMPLETE:
        raise DataError(
            f"{url}: an incomplete distml output (its publication was interrupted or is "
            "still running); write it again with --overwrite"
        )


class RemoteOutput(Destination):
    """A folder on an object store, staged and then published (see the module docstring).

    A :class:`~distml.atomic.Destination` like :class:`~distml.atomic.OutputDir`: ``open()``
    gives a local staging folder; :attr:`final` is the destination URL and :attr:`shared`
    the staging prefix workers write into. ``publish()`` uploads the local files into the
    staging prefix *before* touching the destination, so a failed upload leaves the
    previous output as it was.
    """

    def __init__(
        self,
        final: str | os.PathLike[str],
        kind: str,
        overwrite: bool = False,
        inputs: Iterable[str | os.PathLike[str] | None] = (),
        what: str | None = None,
        storage_options: StorageOptions | dict[str, Any] | None = None,
    ) -> None:
        url = as_url(final)
        assert url is not None, final
        self.kind = kind
        self.what = what or f"{kind} folder"
        scheme = urlsplit(url).scheme
        if scheme not in OBJECT_SCHEMES:
            raise DataError(
                f"{url}: distml writes to S3-compatible stores (s3://), Google Cloud "
                f"Storage (gs://) and Azure (abfs://); {scheme}:// is not supported for the "
                f"{self.what}"
            )
        bucket, key = split_location(url)
        if not bucket or not key:
            raise DataError(f"{url}: give a prefix inside a bucket ({scheme}://BUCKET/PREFIX)")
        self.scheme = "gs" if scheme == "gcs" else scheme
        self.netloc = urlsplit(url).netloc  # Azure's container@account stays in URLs
        self.final = f"{self.scheme}://{self.netloc}/{key}"
        self.options = with_environment(StorageOptions.of(storage_options), self.final)
        self.bucket, self.key = bucket, key
        self.overwrite = overwrite
        for item in inputs:
            other = as_url(item) if item is not None else None
            if other is None:
                continue
            ob, ok = split_location(other)
            here = f"{bucket}/{key}"
            there = f"{ob}/{ok}".rstrip("/")
            if _inside(here, there) or _inside(there, here):
                raise DataError(
                    f"{self.final}: is, holds or lies inside input {other}; "
                    f"choose another prefix for the {self.what}"
                )
        self.fs = object_filesystem(self.final, self.options)
        self._check()
        self.tmp: Path | None = None
        self.staging: str | None = None  # bucket/key of the staging prefix

    # -- checks ----------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        """The URL of ``path`` (``bucket/key`` on the filesystem) in this output's store."""
        return f"{self.scheme}://{self.netloc}/{path.split('/', 1)[1] if '/' in path else ''}"

    def _path(self) -> str:
        return f"{self.bucket}/{self.key}"

    def _check(self) -> None:
        probe = object_filesystem(self.final, self.options, probe=True)
        where = f"at {endpoint_of(self.options, self.final)}"
        try:
            if probe.get_file_info(self.bucket).type == pafs.FileType.NotFound:
                raise DataError(f"{self.final}: no such bucket '{self.bucket}' {where}")
            info = probe.get_file_info(self._path())
        except OSError as exc:
            raise DataError(describe_error(self.final, exc)) from None
        if info.type == pafs.FileType.File:
            raise DataError(f"{self.final}: is an object, not a prefix; choose a prefix")
        if info.type == pafs.FileType.Directory and self._has_objects():
            if not self.overwrite:
                raise DataError(
                    f"{self.final}: prefix exists and is not empty (pass --overwrite to "
                    "replace a folder distml wrote)"
                )
            if read_marker(self.fs, self._path()) is None:
                raise DataError(
                    f"{self.final}: not a folder distml wrote (no {MARKER}); refusing to replace it"
                )

    def _has_objects(self) -> bool:
        selector = pafs.FileSelector(self._path(), recursive=True, allow_not_found=True)
        return any(i.type == pafs.FileType.File for i in self.fs.get_file_info(selector))

    # -- the OutputDir interface -----------------------------------------------------------
    def open(self) -> Path:
        """The local staging folder; creates the staging prefix (proving write access)."""
        if self.tmp is None:
            self.sweep_abandoned()
            parent = self.key.rsplit("/", 1)[0] + "/" if "/" in self.key else ""
            name = self.key.rsplit("/", 1)[-1]
            staging = f"{self.bucket}/{parent}.{name}.tmp-{_owner()}-{secrets.token_hex(4)}"
            try:
                self._put(f"{staging}/{MARKER}", {"kind": self.kind, "state": "staging"})
            except OSError as exc:
                raise DataError(describe_error(self.final, exc)) from None
            self.staging = staging
            self.tmp = Path(tempfile.mkdtemp(prefix="distml-out-"))
        return self.tmp

    @property
    def shared(self) -> Location:
        """The staging prefix: where workers on any host write their files."""
        self.open()
        return Location(self._url(self.staging), self.options)

    def publish(self, meta: dict | None = None) -> str:
        self.open()
        assert self.tmp is not None and self.staging is not None
        try:
            self._upload(self.tmp, self.staging)
            self._promote(meta or {})
        except OSError as exc:
            raise DataError(describe_error(self.final, exc)) from None
        self.discard()
        return self.final

    def discard(self) -> None:
        if self.staging is not None:
            try:
                delete_prefix(self.fs, self.staging)
            except OSError:
                pass  # best effort: the next writer on this host sweeps it
            self.staging = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # -- steps -----------------------------------------------------------------------------
    def _put(self, path: str, value: dict[str, Any]) -> None:
        with self.fs.open_output_stream(path) as stream:
            stream.write(json.dumps(value, indent=2).encode("utf-8"))

    def _upload(self, local: Path, prefix: str) -> None:
        for path in sorted(local.rglob("*")):
            if path.is_file():
                relative = path.relative_to(local).as_posix()
                with (
                    open(path, "rb") as source,
                    self.fs.open_output_stream(f"{prefix}/{relative}") as sink,
                ):
                    shutil.copyfileobj(source, sink, 8 << 20)

    def _promote(self, meta: dict[str, Any]) -> None:
        assert self.staging is not None
        final = self._path()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        marker = {"kind": self.kind, "written": stamp, **meta}
        staged = self._files(self.staging)
        if self._has_objects() and read_marker(self.fs, final) is None:
            raise DataError(f"{self.final}: appeared while writing and is not distml's; kept it")
        self._put(f"{final}/{MARKER}", {**marker, "state": PUBLISHING})
        for old in self._files(final):  # a previous output: replaced only now
            if old != MARKER:
                self.fs.delete_file(f"{final}/{old}")
        ordered = sorted(
            (f for f in staged if f != MARKER),
            key=lambda f: (f in LAST_FILES, LAST_FILES.index(f) if f in LAST_FILES else 0, f),
        )
        for relative in ordered:
            self.fs.copy_file(f"{self.staging}/{relative}", f"{final}/{relative}")
        self._put(f"{final}/{MARKER}", {**marker, "state": COMPLETE})

    def _files(self, prefix: str) -> list[str]:
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        return sorted(
            i.path[len(prefix) + 1 :]
            for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File
        )

    def sweep_abandoned(self) -> list[str]:
        """Remove staging prefixes of this destination left by dead writers of this host."""
        parent = self.key.rsplit("/", 1)[0] if "/" in self.key else ""
        name = re.escape(self.key.rsplit("/", 1)[-1])
        pattern = re.compile(rf"^\.{name}\.tmp-(\d+)@([A-Za-z0-9_.]+)-[0-9a-f]+$")
        host = _owner().split("@", 1)[1]
        base = f"{self.bucket}/{parent}".rstrip("/")
        removed = []
        try:
            siblings = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        except OSError:
            return removed
        for info in siblings:
            match = pattern.match(info.base_name)
            if match and match.group(2) == host and not _alive(int(match.group(1))):
                try:
                    delete_prefix(self.fs, info.path)
                    removed.append(self._url(info.path))
                except OSError:
                    pass
        return removed


@contextmanager
def local_copy(
    url: str, storage_options: StorageOptions | dict[str, Any] | None = None
) -> Iterator[Path]:
    """A published distml folder (or one file) on an object store, downloaded into a
    temporary local folder for the block (models are small: read them whole)."""
    location = as_url(url)
    assert location is not None, url
    if urlsplit(location).scheme not in OBJECT_SCHEMES:
        raise DataError(f"{location}: distml reads models from s3://, gs:// and abfs:// only")
    bucket, key = split_location(location)
    options = with_environment(StorageOptions.of(storage_options), location)
    fs = object_filesystem(location, options)
    path = f"{bucket}/{key}".rstrip("/")
    folder = Path(tempfile.mkdtemp(prefix="distml-model-"))
    try:
        try:
            info = object_filesystem(location, options, probe=True).get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                where = endpoint_of(options, location)
                raise DataError(f"{location}: no such model (nothing at {where})")
            if info.type == pafs.FileType.File:
                target = folder / info.base_name
                _download(fs, path, target)
            else:
                check_published(location, fs, path)
                target = folder / (key.rsplit("/", 1)[-1] or "model")
                selector = pafs.FileSelector(path, recursive=True)
                for item in fs.get_file_info(selector):
                    if item.type == pafs.FileType.File:
                        _download(fs, item.path, target / item.path[len(path) + 1 :])
        except OSError as exc:
            raise DataError(describe_error(location, exc)) from None
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _download(fs: pafs.FileSystem, path: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with fs.open_input_stream(path) as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, 8 << 20)
