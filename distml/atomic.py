"""Outputs written atomically, into destinations checked before any work.

Every writer (run folders, models, generated data, predictions, benchmark results,
reports) goes through :class:`OutputDir` or :func:`atomic_file`:

* the destination is checked up front: it must be absent, empty, or — with
  ``overwrite`` — a folder distml wrote itself (it holds the marker file
  :data:`MARKER`); it may never be an input of the job, hold one, or lie inside one;
  its parent must be a writable folder (proved by creating the temporary sibling);
* the output is built in a hidden sibling and renamed into place only when complete,
  so a failure or Ctrl-C leaves the destination as it was (absent, or the previous
  complete version), never half-written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from distml.errors import DataError

#: Written into every folder distml publishes; names its kind (run, dataset, ...).
MARKER = "_distml.json"
#: Paths no output may be written under (kernel interfaces that accept writes and fail).
_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def _resolve(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the path as written
        return path


def _related(out: Path, other: Path) -> str | None:
    """How ``out`` overlaps ``other``: 'is', 'holds' or 'is inside' (None: apart)."""
    a, b = _real(out), _real(other)
    if a == b:
        return "is"
    if a in b.parents:
        return "holds"
    if b in a.parents:
        return "is inside"
    return None


def is_distml_output(path: Path) -> bool:
    """True when ``path`` is a folder distml published (it holds :data:`MARKER`)."""
    return (path / MARKER).is_file()


_URL_OUT = re.compile(r"^(s3|s3a|s3n|gs|gcs|abfs|abfss|az|hdfs|https?)://?", re.IGNORECASE)


def check_destination(
    out: str | os.PathLike[str],
    what: str = "output",
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> Path:
    """Refuse a destination that would lose or corrupt data; return it as an absolute path.

    Raises :class:`DataError` naming the destination when it is an input (or holds one,
    or lies inside one), a file, a system folder, a non-empty folder without
    ``overwrite``, or — with ``overwrite`` — a folder distml did not write.
    """
    text = os.fspath(out)
    if _URL_OUT.match(text):  # Path() folds "s3://b/k" into "s3:/b/k": both are URLs
        url = text if "://" in text else text.replace(":/", "://", 1)
        raise DataError(
            f"{url}: the {what} cannot be written to an object store; "
            "write it to a local or shared folder"
        )
    final = _resolve(out)
    if str(final) == os.sep or str(_real(final)) == os.sep:
        raise DataError(f"{text}: refusing to write {what} over the filesystem root")
    for root in _SYSTEM_ROOTS:
        if final == Path(root) or Path(root) in final.parents:
            raise DataError(f"{text}: cannot write {what} under {root} (a system folder)")
    for item in inputs:
        if item is None or "://" in os.fspath(item):
            continue
        relation = _related(final, _resolve(item))
        if relation is not None:
            raise DataError(
                f"{text}: {relation} {'the input' if relation == 'is' else 'input'} "
                f"{os.fspath(item)}; choose another folder for the {what}"
            )
    if final.is_symlink() and not final.exists():
        raise DataError(f"{text}: a dangling symbolic link; remove it or choose another folder")
    if final.exists():
        if not final.is_dir():
            raise DataError(f"{text}: exists and is not a folder; choose a folder for the {what}")
        if any(final.iterdir()):
            if not overwrite:
                raise DataError(
                    f"{text}: folder exists and is not empty (pass --overwrite to replace "
                    f"a folder distml wrote)"
                )
            if not is_distml_output(final):
                raise DataError(
                    f"{text}: not a folder distml wrote (no {MARKER}); refusing to replace it"
                )
    _check_parent(final, text, what)
    return final


def _check_parent(final: Path, text: str, what: str) -> None:
    """The first existing ancestor must be a writable folder."""
    parent = final.parent
    while not parent.exists():
        if parent.is_symlink():
            raise DataError(f"{text}: {parent} is a dangling symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{text}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{text}: {parent} is not writable; choose another place for the {what}")


class Destination:
    """Where an output is built and then published all at once: :class:`OutputDir` (a folder,
    one rename) or :class:`~distml.remote_output.RemoteOutput` (an object-store prefix, a
    marker). ``open()`` gives the local folder to write into, ``shared`` the place workers
    write into, ``publish()`` puts it in place, ``discard()`` drops it. As a context manager
    it publishes on success and discards on any exception (Ctrl-C included)."""

    def open(self) -> Path:
        raise NotImplementedError

    def publish(self, meta: dict | None = None) -> Any:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Path:
        return self.open()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()


class OutputDir(Destination):
    """A folder built in a hidden sibling and published by one rename.

    ``open()`` checks the destination and creates the temporary folder (so an
    unwritable place fails before any work); ``publish()`` writes the marker and
    renames it into place, replacing a previous distml output only then;
    ``discard()`` removes the temporary folder.
    """

    def __init__(
        self,
        final: str | os.PathLike[str],
        kind: str,
        overwrite: bool = False,
        inputs: Iterable[str | os.PathLike[str] | None] = (),
        what: str | None = None,
    ) -> None:
        self.kind = kind
        self.what = what or f"{kind} folder"
        self.final = check_destination(final, self.what, overwrite, inputs)
        self.tmp: Path | None = None
        self._made: list[Path] = []  # parent folders open() created (removed again by discard)

    def open(self) -> Path:
        if self.tmp is None:
            self._made = _make_parents(self.final.parent)
            sweep_abandoned(self.final)
            try:
                tmp = tempfile.mkdtemp(prefix=_hidden(self.final, "tmp"), dir=self.final.parent)
            except OSError as exc:
                raise DataError(
                    f"{self.final}: cannot write here ({exc.strerror or exc})"
                ) from None
            self.tmp = Path(tmp)
            os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp makes it private
        return self.tmp

    @property
    def shared(self) -> str:
        """The temporary folder as a string: where workers write (they must see it)."""
        return str(self.open())

    def publish(self, meta: dict | None = None) -> Path:
        tmp = self.open()
        marker = {"kind": self.kind, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / MARKER).write_text(json.dumps({**marker, **(meta or {})}, indent=2))
        final = self.final
        if final.is_dir() and any(final.iterdir()) and not is_distml_output(final):
            # something else appeared there while we worked: never replace it
            raise DataError(f"{final}: appeared while writing and is not distml's; kept it")
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=_hidden(final, "old"), dir=final.parent))
            os.replace(final, trash / "old")
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        self.tmp = None
        return final

    def discard(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
            for folder in self._made:  # parents this output created, if still empty
                try:
                    folder.rmdir()
                except OSError:
                    break
            self._made = []


def _owner() -> str:
    """``<pid>@<host>``: who is building a hidden sibling (the host: shared filesystems)."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:60] or "host"
    return f"{os.getpid()}@{host}"


def _hidden(final: Path, role: str) -> str:
    """The prefix of ``final``'s hidden sibling: ``.<name>.<tmp|old>-<pid>@<host>-``."""
    return f".{final.name}.{role}-{_owner()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_abandoned(final: Path) -> list[Path]:
    """Remove hidden siblings of ``final`` left by distml processes of this host that died
    mid-write (SIGKILL, power loss: no ``finally`` ran); returns what was removed.

    Only siblings named by :func:`_hidden` whose process no longer exists on this host are
    touched: a live writer's, another host's (a shared filesystem) and anything else are kept.
    """
    name = re.escape(final.name)  # mkdtemp appends [a-z0-9_] characters to _hidden's prefix
    pattern = re.compile(rf"^\.{name}\.(?:tmp|old)-(\d+)@([A-Za-z0-9_.]+)-[A-Za-z0-9_]+$")
    host = _owner().split("@", 1)[1]
    removed = []
    try:
        siblings = list(final.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        match = pattern.match(path.name)
        if match is None or match.group(2) != host or _alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest first."""
    missing = []
    for candidate in [folder, *folder.parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def atomic_file(
    target: str | os.PathLike[str],
    text: str,
    overwrite: bool = True,
    is_own: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> Path:
    """Write ``text`` to ``target`` through a temporary sibling and one rename.

    An existing file is replaced only with ``overwrite`` and when ``is_own`` says
    distml wrote it; the file gets the usual permissions (umask), not mkstemp's 0600.
    """
    final = _resolve(target)
    for root in _SYSTEM_ROOTS:
        if Path(root) in final.parents:
            raise DataError(f"{target}: cannot write under {root} (a system folder)")
    for item in inputs:
        if item is not None and _related(final, _resolve(item)) is not None:
            raise DataError(f"{target}: is or lies inside input {item}; choose another file")
    if final.is_dir():
        raise DataError(f"{target}: is a folder; give a file name")
    if final.exists() and not (overwrite and is_own):
        raise DataError(
            f"{target}: exists and is not a report distml wrote (pass --overwrite to replace "
            "a distml report)"
            if not is_own
            else f"{target}: exists (pass --overwrite to replace it)"
        )
    _check_parent(final, os.fspath(target), "file")
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    except OSError as exc:
        raise DataError(f"{target}: cannot write here ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (umask() is global)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0)
    os.umask(current)
    return current
