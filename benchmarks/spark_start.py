"""What a user waits for on Spark with a small job: ``distml run`` of the article's k-means
example on ``local[2]``, process start to exit, in fresh processes, candidates interleaved.

Candidates: the driver JVM without a class archive (``DISTML_SPARK_CLASS_ARCHIVE=off``) and
with one (recorded once before timing, untimed); with ``--old PATH`` also an older checkout
of distml put first on ``PYTHONPATH`` (e.g. a ``git worktree`` of the commit before).

    python benchmarks/spark_start.py --repeat 3 [--old /tmp/old]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(workdir: Path, env: dict[str, str], tag: str) -> tuple[float, float]:
    """Wall seconds of one ``distml run``, and the fit's seconds from its own stage line."""
    out = workdir / f"run-{tag}-{time.monotonic_ns()}"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "distml.cli", "run", str(REPO / "jobs" / "kmeans.yaml"),
         "--backend", "spark", "--set", "backend.master=local[2]",
         "--set", f"data.train={workdir / 'example3'}", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
        cwd=workdir,  # not the checkout: `python -m` puts the working folder first on sys.path
    )  # fmt: skip
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{tag}: exit {result.returncode}\n{result.stderr[-2000:]}")
    fit = re.search(r"fitting kmeans \(native\): done \(\d+ passes, ([\d.]+)s\)", result.stderr)
    return wall, float(fit.group(1)) if fit else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old", type=Path, help="an older checkout to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="distml-spark-start-") as folder:
        work = Path(folder)
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        candidates = {
            "no archive": {**base, "DISTML_SPARK_CLASS_ARCHIVE": "off"},
            "archive": {**base, "DISTML_SPARK_CLASS_ARCHIVE": str(work / "classes")},
        }
        if args.old:
            candidates = {"old checkout": {**base, "PYTHONPATH": str(args.old)}, **candidates}
        run(work, candidates["archive"], "record")  # records the archive: untimed
        seen: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
        for _ in range(args.repeat):
            for name, env in candidates.items():
                seen[name].append(run(work, env, name.replace(" ", "-")))
        print(f"| candidate | wall s (median of {args.repeat}, min–max) | fit s (median) |")
        print("| --- | --- | --- |")
        for name, runs in seen.items():
            walls = [w for w, _ in runs]
            fits = [f for _, f in runs]
            print(
                f"| {name} | {statistics.median(walls):.1f} ({min(walls):.1f}–{max(walls):.1f}) "
                f"| {statistics.median(fits):.2f} |"
            )


if __name__ == "__main__":
    main()
