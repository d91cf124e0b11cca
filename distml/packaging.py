"""distml as one zip, built on the fly, for workers whose Python lacks it.

``distml submit`` ships this zip to the cluster (Spark: ``--py-files``; Dask:
``Client.upload_file``), so executors and workers import the very distml the
driver runs. Only the package's own files go in (no ``__pycache__``); its
dependencies (numpy, pyarrow, scikit-learn…) must be in the workers' Python.
"""

from __future__ import annotations

import uuid
import zipfile
from pathlib import Path

import distml

PACKAGE = Path(distml.__file__).resolve().parent


def package_zip(folder: Path) -> Path:
    """Write ``distml-<version>-<random>.zip`` (importable as ``distml``) into ``folder``.

    Each submission's zip has a name of its own: a long-lived Dask worker that is sent a
    second zip under a name it already imported can fail with ``KeyError: '<path>.zip'``
    (CPython gh-121342, a stale ``zipimport`` directory cache, seen as dask/distributed#8708).
    """
    target = folder / f"distml-{distml.__version__}-{uuid.uuid4().hex[:8]}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                archive.write(path, Path("distml") / path.relative_to(PACKAGE))
    return target
