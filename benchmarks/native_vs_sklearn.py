"""Read + fit seconds: distml's native solvers on the local backend vs scikit-learn.

Run by hand (not part of the test suite):

    python benchmarks/native_vs_sklearn.py --rows 2e6 --features 20 --partitions 16 --repeat 3

Candidates are interleaved within each repeat so machine drift hits all alike; the
table reports medians and the ratio to scikit-learn (compare ratios: this machine is
shared and noisy). The floor is a bare pyarrow read of the same files into one matrix.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common import dataset, distml_run, floor, interleaved, median, sklearn_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e6)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", default="linreg,logreg,kmeans")
    parser.add_argument("--backend", default="local")
    parser.add_argument("--data", type=Path, default=Path("bench-out/data"))
    args = parser.parse_args()
    rows = int(args.rows)
    print(
        f"# {rows:,} rows x {args.features} features in {args.partitions} files, "
        f"backend {args.backend}, {args.repeat} repeats (median seconds)\n"
    )
    print(
        "| task | floor (pyarrow read) | scikit-learn read+fit | distml native read+fit "
        "| native / sklearn | native read / fit | quality sklearn / native |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for task in args.tasks.split(","):
        path = dataset(task, rows, args.features, args.partitions, args.data)
        features = [f"x{j}" for j in range(args.features)]
        runs = interleaved(
            {
                "floor": partial(floor, path, features, task),
                "sklearn": partial(sklearn_run, path, features, task),
                "native": partial(distml_run, path, task, args.backend),
            },
            args.repeat,
        )
        native, sk = runs["native"], runs["sklearn"]
        print(
            f"| {task} | {median(runs['floor']):.2f} | {median(sk):.2f} | {median(native):.2f} "
            f"| {median(native) / median(sk):.2f}x | {median(native, 'read'):.2f} / "
            f"{median(native, 'fit'):.2f} | {sk[0]['quality']:.6g} / {native[0]['quality']:.6g} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
