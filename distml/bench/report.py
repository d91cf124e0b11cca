"""Turning benchmark runs into results.json/.csv, a markdown table, plots and a summary.

Times compared are *read + fit* seconds — what training costs once the engine is
up; start-up (a LocalCluster, a JVM) is reported beside them. Every figure is the
median of the repeats with their min–max; quality is measured on held-out rows
and compared with scikit-learn's on the same rows.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def _pyplot():  # type: ignore[no-untyped-def]
    """matplotlib's pyplot (Agg), imported only to draw: every benchmark child process
    imports this package, and matplotlib would add its import to each one's time and memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


QUALITY = {
    "linreg": ("MSE", False),
    "logreg": ("accuracy", True),
    "kmeans": ("inertia", False),
    "mnist": ("test accuracy", True),
}
FIELDS = [
    "task", "rows", "features", "workers", "candidate", "repeat", "status", "startup", "read",
    "fit", "train_seconds", "wall", "rows_per_second", "peak_mb", "peak_pss_mb", "quality", "streamed", "error",
]  # fmt: skip


def train_seconds(run: dict[str, Any]) -> float | None:
    """Read + fit (MLlib reads lazily inside its fit: fit alone is both)."""
    if run.get("status") != "ok":
        return None
    return (run.get("read") or 0.0) + (run.get("fit") or 0.0)


def cells(runs: list[dict[str, Any]]) -> dict[tuple[str, int, int, str], list[dict[str, Any]]]:
    grouped: dict[tuple[str, int, int, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        grouped[(run["task"], run["rows"], run["workers"], run["candidate"])].append(run)
    return grouped


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, rows, workers, candidate): medians, ranges, quality vs scikit-learn."""
    grouped = cells(runs)
    sklearn_quality = {
        (task, rows): _median([r.get("quality") for r in group])
        for (task, rows, _, candidate), group in grouped.items()
        if candidate == "scikit-learn"
    }
    rows = []
    for (task, n, workers, candidate), group in sorted(
        grouped.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3])
    ):
        ok = [r for r in group if r.get("status") == "ok"]
        times = [train_seconds(r) for r in ok]
        quality = _median([r.get("quality") for r in ok])
        reference = sklearn_quality.get((task, n))
        delta = None
        if quality is not None and reference not in (None, 0):
            delta = (quality - reference) / abs(reference)
        rows.append(
            {
                "task": task,
                "rows": n,
                "workers": workers,
                "candidate": candidate,
                "runs": len(group),
                "ok": len(ok),
                "status": "ok" if ok else (group[0].get("status") or "error"),
                "error": None if ok else group[0].get("error"),
                "startup": _median([r.get("startup") for r in ok]),
                "read": _median([r.get("read") for r in ok]),
                "fit": _median([r.get("fit") for r in ok]),
                "train_seconds": _median(times),
                "train_min": min(times) if times else None,
                "train_max": max(times) if times else None,
                "rows_per_second": n / _median(times) if times and _median(times) else None,
                "peak_mb": _median([r.get("peak_mb") for r in ok])
                or _median([r.get("peak_mb") for r in group]),
                "peak_pss_mb": _median([r.get("peak_pss_mb") for r in ok])
                or _median([r.get("peak_pss_mb") for r in group]),
                "quality": quality,
                "quality_vs_sklearn": delta,
                "streamed": any(r.get("streamed") for r in ok),
            }
        )
    return rows


def _median(values: list[Any]) -> float | None:
    clean = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(clean) if clean else None


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| task | rows | workers | candidate | start-up s | read + fit s (min–max) | rows/s | peak MB (RSS / PSS) | quality | vs scikit-learn |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in table:
        if row["status"] != "ok":
            timing = f"**{row['status']}**: {row['error']}"
        else:
            timing = (
                f"{_fmt(row['train_seconds'])} ({_fmt(row['train_min'])}–{_fmt(row['train_max'])})"
            )
            if row["streamed"]:
                timing += " streamed"
        name, _ = QUALITY[row["task"]]
        quality = "—" if row["quality"] is None else f"{name} {row['quality']:.6g}"
        delta = "—" if row["quality_vs_sklearn"] is None else f"{row['quality_vs_sklearn']:+.2e}"
        rate = "—" if row["rows_per_second"] is None else f"{row['rows_per_second']:,.0f}"
        lines.append(
            f"| {row['task']} | {row['rows']:,} | {row['workers']} | {row['candidate']} | {_fmt(row['startup'])} "
            f"| {timing} | {rate} | {_fmt(row['peak_mb'], 0)} / {_fmt(row.get('peak_pss_mb'), 0)} "
            f"| {quality} | {delta} |"
        )
    return "\n".join(lines) + "\n"


def advice(table: list[dict[str, Any]]) -> str:
    """One paragraph: the fastest configuration per task and size, against the floor and peers."""
    sentences = []
    by_cell: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        if row["status"] == "ok" and row["train_seconds"]:
            by_cell[(row["task"], row["rows"])].append(row)
    for (task, rows), group in sorted(by_cell.items()):
        ours = [r for r in group if r["candidate"].startswith("distml")]
        peers = [r for r in group if not r["candidate"].startswith(("distml", "floor"))]
        floor = next((r for r in group if r["candidate"].startswith("floor")), None)
        if not ours:
            continue
        fastest = min(ours, key=lambda r: r["train_seconds"])
        text = f"{task} at {rows:,} rows: {fastest['candidate']} ({fastest['workers']} workers) in {fastest['train_seconds']:.2f}s"
        if floor:
            text += f", {fastest['train_seconds'] / floor['train_seconds']:.1f}x the bare read"
        if peers:
            best_peer = min(peers, key=lambda r: r["train_seconds"])
            text += f"; the best peer, {best_peer['candidate']}, took {best_peer['train_seconds'] / fastest['train_seconds']:.1f}x as long"
        sentences.append(text + ".")
    return " ".join(sentences)


def growth(table: list[dict[str, Any]]) -> dict[str, float]:
    """For each distml candidate: read + fit at the largest size / at the one before (×)."""
    out: dict[str, float] = {}
    series: dict[tuple[str, str, int], dict[int, float]] = defaultdict(dict)
    for row in table:
        if row["status"] == "ok" and row["candidate"].startswith("distml") and row["train_seconds"]:
            series[(row["task"], row["candidate"], row["workers"])][row["rows"]] = row[
                "train_seconds"
            ]
    for (task, candidate, workers), points in series.items():
        sizes = sorted(points)
        if len(sizes) >= 2:
            out[f"{task} {candidate} ({workers}w) {sizes[-2]:,}→{sizes[-1]:,}"] = (
                points[sizes[-1]] / points[sizes[-2]]
            )
    return out


def _uses_workers(candidate: str) -> bool:
    """The floor and scikit-learn run in one process: their times hold for any worker count."""
    return not (candidate.startswith("floor") or candidate == "scikit-learn")


def plots(table: list[dict[str, Any]], out: Path) -> list[Path]:
    plt = _pyplot()
    written = []
    tasks = sorted({r["task"] for r in table})
    most_workers = max((r["workers"] for r in table), default=1)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for candidate in sorted({r["candidate"] for r in table if r["task"] == task}):
            points = sorted(
                (r["rows"], r["train_seconds"])
                for r in table
                if r["task"] == task
                and r["candidate"] == candidate
                and r["train_seconds"]
                and (r["workers"] == most_workers or not _uses_workers(candidate))
            )
            if points:
                style = "k--" if candidate.startswith("floor") else "-o"
                ax.plot(*zip(*points, strict=True), style, label=candidate)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows")
        ax.set_ylabel("read + fit seconds")
        ax.set_title(f"{task} ({most_workers} workers)")
        if ax.get_legend_handles_labels()[0]:  # every candidate may have failed or timed out
            ax.legend(fontsize=7)
    written.append(_save(fig, out / "time_vs_rows.png"))

    workers = sorted({r["workers"] for r in table})
    if len(workers) > 1:
        fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
        for ax, task in zip(axes[0], tasks, strict=True):
            largest = max(r["rows"] for r in table if r["task"] == task)
            for candidate in sorted({r["candidate"] for r in table if r["task"] == task}):
                times = {
                    r["workers"]: r["train_seconds"]
                    for r in table
                    if r["task"] == task
                    and r["rows"] == largest
                    and r["candidate"] == candidate
                    and r["train_seconds"]
                }
                if len(times) > 1 and workers[0] in times:
                    ax.plot(
                        sorted(times),
                        [times[workers[0]] / times[w] for w in sorted(times)],
                        "-o",
                        label=candidate,
                    )
            ax.plot(workers, [w / workers[0] for w in workers], "k:", label="linear")
            ax.set_xlabel("workers")
            ax.set_ylabel(f"speed-up over {workers[0]} worker(s)")
            ax.set_title(f"{task} at {largest:,} rows")
            ax.legend(fontsize=7)
        written.append(_save(fig, out / "speedup_vs_workers.png"))

    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        largest = max(r["rows"] for r in table if r["task"] == task)
        chosen = [
            r for r in table
            if r["task"] == task and r["rows"] == largest and r["quality_vs_sklearn"] is not None
            and r["workers"] == most_workers
        ]  # fmt: skip
        ax.barh([r["candidate"] for r in chosen], [r["quality_vs_sklearn"] for r in chosen])
        name, higher = QUALITY[task]
        ax.axvline(0, color="k", linewidth=0.8)
        ax.set_xlabel(
            f"{name} vs scikit-learn (relative; {'higher' if higher else 'lower'} is better)"
        )
        ax.set_title(f"{task} at {largest:,} rows")
    written.append(_save(fig, out / "quality_vs_sklearn.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def write_outputs(
    runs: list[dict[str, Any]], config: dict[str, Any], machine: dict[str, Any], out: Path
) -> dict[str, Any]:
    """results.json, results.csv, results.md (table + summary) and the PNG plots in ``out``."""
    table = summarize(runs)
    (out / "results.json").write_text(
        json.dumps(
            {"config": config, "machine": machine, "runs": runs, "summary": table},
            indent=2,
            default=str,
        )
    )
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for run in runs:
            writer.writerow({**run, "train_seconds": train_seconds(run)})
    pngs = plots(table, out)
    summary = advice(table)
    grown = growth(table)
    text = [
        "# distml bench results\n",
        f"Machine: {machine['cpus']} cores, {machine['memory_gb']:.0f} GB. Absolute seconds vary across "
        "machines and with load; compare the ratios between candidates of the same run. Times are read + fit "
        "(median of the repeats, min–max in brackets); start-up is beside them.\n",
        markdown(table),
        "## Summary\n",
        summary + "\n",
    ]
    if grown:
        text += [
            "## Growth with rows (read + fit, ×)\n",
            *[f"- {k}: {v:.1f}x" for k, v in sorted(grown.items())],
            "",
        ]
    text += ["## Plots\n", *[f"![{p.stem}]({p.name})" for p in pngs]]
    (out / "results.md").write_text("\n".join(text) + "\n")
    return {"table": table, "summary": summary, "growth": grown, "plots": pngs}
