"""Where a `distml run` process's seconds go: imports, checks, engine start, read, fit,
evaluation, insights, saving, engine stop — one fresh process, wall clock per phase.

    python benchmarks/run_phases.py JOB.yaml --backend local --out /tmp/run   # any `distml run` args

Phases are timed by wrapping the backend's methods and the runner's steps in this process
(nothing is changed in what they do); "other" is the rest of the process after the imports
(spec parsing, footers, the run folder's publication, interpreter exit is not counted).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Any

STARTED = time.perf_counter()
SPENT: dict[str, float] = defaultdict(float)


def _timed(owner: Any, name: str, phase: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[phase] += time.perf_counter() - began

    setattr(owner, name, wrapper)


def main() -> None:
    import distml.cli  # noqa: F401 - the CLI's imports, as `distml run` pays them

    imported = time.perf_counter()
    from distml.backends.base import Backend
    from distml.backends.local import LocalBackend
    from distml.jobs import runner
    from distml.models.base import Model

    for name, phase in (
        ("start", "engine start"), ("fit", "fit"), ("evaluate", "evaluate"), ("stop", "engine stop"),
    ):  # fmt: skip
        _timed(Backend, name, phase)
    _timed(LocalBackend, "load", "read")
    if "dask" in sys.argv:
        from distml.backends.dask import DaskBackend

        _timed(DaskBackend, "load", "read")
    _timed(runner, "check_before_work", "checks (footers, spec)")
    _timed(runner, "write_insights", "insights (importance, coefficients)")
    _timed(Model, "save", "save model")
    from distml.cli import main as cli

    code = 0
    try:
        cli(["run", *sys.argv[1:]], standalone_mode=False)
    except SystemExit as exc:
        code = int(exc.code or 0)
    ended = time.perf_counter()
    print(f"imports (distml.cli): {imported - STARTED:.2f} s", file=sys.stderr)
    for phase, seconds in SPENT.items():
        print(f"{phase}: {seconds:.2f} s", file=sys.stderr)
    other = ended - imported - sum(SPENT.values())
    print(f"other: {other:.2f} s; total in process {ended - STARTED:.2f} s", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
