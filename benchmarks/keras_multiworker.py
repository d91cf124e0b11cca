"""Keras MNIST throughput: MirroredStrategy in one process vs MultiWorkerMirroredStrategy.

Run by hand (not part of the test suite):

    python benchmarks/keras_multiworker.py --source ../shared/data/mnist --architectures mlp,cnn

Candidates, each a fresh ``distml run`` of the same spec (same data, seed, per-replica
batch; Adam's rate scaled by the replica count, distml's default):

* ``mirrored 1x2`` — one process, ``MirroredStrategy`` over 2 devices (``train.devices: 2``:
  two logical CPU devices on a CPU-only machine, else 2 GPUs);
* ``workers 2x1`` — ``train.workers: 2``: two worker processes on the local backend, one
  device each, all-reducing over gRPC (RING) or NCCL (every worker with a GPU);
* ``worker 1x1`` — ``train.workers: 1``: the same worker code alone (no peer to talk to),
  with every core of the machine;
* ``worker 1x1, 1 thread`` (CPU only) — the same with ``train.threads: 1``: one worker with
  the resources each of the 2 workers has (the local launcher binds it to one core, as it
  binds each of the 2 workers to its own), so ``2x1 / (1x1, 1 thread)`` is the speed-up
  from adding a worker and its shortfall the communication cost;
* ``worker 1x1, 1 thread, unbound`` — the same with ``train.bind_cpus: false``: its input
  pipeline and runtime threads may use the other core too.

``--gpu`` runs ``mirrored`` over every GPU and ``workers`` with one GPU each (see
``keras_multiworker_gpu.sh``); with a single GPU, which has no peer to all-reduce with, it
runs ``mirrored 1x1 (GPU)``, ``worker 1x1 (GPU)`` and ``worker 1x1 (CPU)`` (the GPU
hidden), so the machine's GPU and CPU figures come from one run. Candidates are interleaved per repeat, so drift on a
shared machine hits all alike. samples/s is distml's own figure in ``metrics.json``:
training rows over the seconds spent in the training loops (evaluation excluded); the
``last epoch`` column drops the first epoch's tracing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

CPU_ONLY = "cpu_only"  # a candidate key (not a spec key): its run sees no GPU


def candidates(args: argparse.Namespace, gpus: int) -> list[tuple[str, dict[str, object]]]:
    only = {name.strip() for name in args.only.split(";") if name.strip()}
    chosen = [(n, t) for n, t in base_candidates(args.gpu, gpus) if not only or n in only]
    values = [int(v) for v in args.steps_per_execution.split(",") if v.strip()]
    if not values:
        return chosen
    return [
        (
            f"{name}, {v} steps/call" if len(values) > 1 else name,
            {**train, "steps_per_execution": v},
        )
        for name, train in chosen
        for v in values
    ]


def base_candidates(gpu: bool, gpus: int) -> list[tuple[str, dict[str, object]]]:
    if gpu and gpus == 1:  # no second GPU to all-reduce with: the GPU against the CPU
        return [
            ("mirrored 1x1 (GPU)", {"devices": 1}),
            ("worker 1x1 (GPU)", {"workers": 1}),
            ("worker 1x1 (CPU)", {"workers": 1, CPU_ONLY: True}),
        ]
    if gpu:
        return [
            (f"mirrored 1x{gpus}", {"devices": gpus}),
            (f"workers {gpus}x1", {"workers": gpus}),
            ("worker 1x1", {"workers": 1}),
        ]
    return [
        ("mirrored 1x2", {"devices": 2}),
        ("workers 2x1", {"workers": 2}),
        ("worker 1x1", {"workers": 1}),
        ("worker 1x1, 1 thread", {"workers": 1, "threads": 1}),
        ("worker 1x1, 1 thread, unbound", {"workers": 1, "threads": 1, "bind_cpus": False}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="../shared/data/mnist", help="IDX folder or 'keras'")
    parser.add_argument("--data", type=Path, default=Path("bench-out/data/mnist"))
    parser.add_argument("--out", type=Path, default=Path("bench-out/keras-multiworker"))
    parser.add_argument("--architectures", default="mlp,cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="per replica")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--rows", type=int, default=0, help="use the first N training rows")
    parser.add_argument("--gpu", action="store_true", help="GPUs: mirrored over all, 1 per worker")
    parser.add_argument(
        "--only", default="", help="candidate names to run, separated by ';' (default: all)"
    )
    parser.add_argument(
        "--steps-per-execution",
        default="",
        help="train.steps_per_execution values, comma-separated; each one a candidate of its own",
    )
    args = parser.parse_args()
    data = prepare(args)
    gpus = count_gpus() if args.gpu else 0
    if args.gpu and gpus < 1:
        sys.exit("--gpu needs a GPU (nvidia-smi -L lists none)")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.repeat):
        for arch in args.architectures.split(","):
            for name, train in candidates(args, gpus):
                summary = run(args, data, arch, name, train, r)
                results.setdefault((arch, name), []).append(summary)
                print(
                    f"# repeat {r + 1}: {arch} {name}: {summary['samples_per_second']:,.0f} "
                    f"samples/s, accuracy {summary['accuracy']:.4f}, wall {summary['wall']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    report(results, args, gpus)


def prepare(args: argparse.Namespace) -> Path:
    if not (args.data / "train").exists():
        from distml.data.mnist import write_mnist

        write_mnist(args.data, args.source)
    if not args.rows:
        return args.data
    import pyarrow.parquet as pq

    small = args.data.with_name(f"{args.data.name}-{args.rows}")
    if not (small / "train").exists():
        for split in ("train", "test"):
            (small / split).mkdir(parents=True, exist_ok=True)
            table = pq.read_table(args.data / split)
            if split == "train":
                table = table.slice(0, args.rows)
            pq.write_table(table, small / split / "part-00000.parquet", row_group_size=5000)
    return small


def count_gpus() -> int:
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU") for line in listed.stdout.splitlines())


def run(
    args: argparse.Namespace, data: Path, arch: str, name: str, train: dict, repeat: int
) -> dict:
    plain = name.replace(" ", "-").replace(",", "").replace("/", "-per-")
    tag = f"{arch}-{plain.replace('(', '').replace(')', '')}-{repeat}"
    spec = {
        "name": f"bench-{tag}",
        "model": {"type": "keras", "params": {"architecture": arch}},
        "data": {
            "train": str((data / "train").resolve()),
            "test": str((data / "test").resolve()),
            "label": "label",
        },
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seed": 0,
            **{k: v for k, v in train.items() if k != CPU_ONLY},
        },
        "output": {"predictions": False, "plots": False},
    }
    path = args.out / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = args.out / tag
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "distml.cli", "run", str(path), "--out", str(out), "--overwrite"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **({"CUDA_VISIBLE_DEVICES": ""} if train.get(CPU_ONLY) else {}),
        },
    )
    if done.returncode != 0:
        sys.exit(f"{tag} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    summary = json.loads((out / "metrics.json").read_text())
    summary["wall"] = time.perf_counter() - started
    history = summary.get("history", {})
    last = (history.get("samples_per_second") or [None])[-1]
    if last is None and history.get("train_seconds"):
        last = summary["rows_train"] / history["train_seconds"][-1]
    summary["last_epoch_samples_per_second"] = last
    return summary


def report(results: dict[tuple[str, str], list[dict]], args: argparse.Namespace, gpus: int) -> None:
    print(f"\n{args.epochs} epochs, {args.batch_size} rows per replica, {args.repeat} repeat(s)")
    print("| model | candidate | samples/s (all epochs) | samples/s (last epoch) | "
          "vs worker 1x1 | vs 1 worker, 1 thread | test accuracy | "
          "wall s (process start to published) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for arch in args.architectures.split(","):
        names = [name for name, _ in candidates(args, gpus)]
        base = median_rate(
            results,
            arch,
            next((n for n in names if n.startswith("worker 1x1") and "thread" not in n), None),
        )
        one = median_rate(results, arch, next((n for n in names if "1 thread" in n), None))
        for name in names:
            runs = results[(arch, name)]
            rate = statistics.median(s["samples_per_second"] for s in runs)
            lasts = [s["last_epoch_samples_per_second"] for s in runs]
            last = statistics.median(lasts) if None not in lasts else float("nan")
            accuracy = ", ".join(f"{s['accuracy']:.4f}" for s in runs)
            wall = statistics.median(s["wall"] for s in runs)
            print(
                f"| {arch} | {name} | {rate:,.0f} | {last:,.0f} | {ratio(rate, base)} | {ratio(rate, one)} | "
                f"{accuracy} | {wall:.0f} |"
            )


def ratio(rate: float, base: float) -> str:
    return "—" if base != base else f"{rate / base:.2f}x"  # NaN: that candidate did not run


def median_rate(results: dict[tuple[str, str], list[dict]], arch: str, name: str | None) -> float:
    if name is None:
        return float("nan")
    return statistics.median(s["samples_per_second"] for s in results[(arch, name)])


if __name__ == "__main__":
    main()
