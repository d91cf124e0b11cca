"""Load test: ``distml serve`` and ``mlflow models serve`` on the same linear model, same run.

    python benchmarks/serve_load.py --out bench-out/serve [--seconds 10] [--clients 8]

A linear regression is trained with distml (``run_job``) on synthetic data; its
scikit-learn twin is fitted on the same rows and saved as an MLflow sklearn model
(``mlflow.sklearn.save_model``: a pyfunc). Both servers run as real processes, one
worker each (``--workers 1`` / ``-w 1``, ``--env-manager local``), started once and
measured in alternation, every scenario ``--repeat`` times:

* ``single-row``: ``dataframe_split`` with 1 row per request;
* ``1000-row``: ``dataframe_split`` with 1,000 rows per request.

Clients are closed-loop: ``--clients`` keep-alive HTTP/1.1 connections in one
asyncio (uvloop) process of their own, each sending its next request when the
previous reply is complete. The client is a minimal HTTP/1.1 writer/reader rather
than httpx because on a 2-core machine the client shares the CPU with the server,
and httpx spends more CPU per request (~0.3 ms) than distml's server does; both
servers are driven by the same client. Reported: requests/s, p50/p99 latency,
errors (non-200 replies, dropped connections). Before measuring, one request checks
that both servers return the same predictions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 10


# -- the client (runs in its own process: python serve_load.py --client ...) -------------------
async def _connection(
    host: str, port: int, request: bytes, deadline: float, warmup_end: float, out: dict[str, Any]
) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        out["errors"] += 1
        return
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            out["errors"] += 1
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.01)
            continue
        if started >= warmup_end:
            out["latencies"].append(time.perf_counter() - started)
            if status != 200:
                out["errors"] += 1
    writer.close()


async def _drive(
    url: str, body: bytes, clients: int, seconds: float, warmup: float
) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"POST /invocations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out: dict[str, Any] = {"latencies": [], "errors": 0}
    start = time.perf_counter()
    warmup_end, deadline = start + warmup, start + warmup + seconds
    await asyncio.gather(
        *[_connection(host, int(port), request, deadline, warmup_end, out) for _ in range(clients)]
    )
    lat = np.asarray(out["latencies"]) * 1000
    return {
        "requests": int(lat.size),
        "requests_per_s": lat.size / seconds,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "errors": out["errors"],
    }


def client_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    body = Path(args.body).read_bytes()
    result = asyncio.run(_drive(args.url, body, args.clients, args.seconds, args.warmup))
    print(json.dumps(result))


# -- models and servers -------------------------------------------------------------------------
def train(root: Path) -> tuple[Path, Path]:
    """A distml run folder and the MLflow sklearn model of the same fit."""
    import mlflow.sklearn
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.linear_model import LinearRegression

    from distml import load_model
    from distml.jobs import parse_spec, run_job

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, FEATURES))
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(FEATURES)])
    frame["y"] = X @ rng.normal(size=FEATURES) + 1.0 + rng.normal(scale=0.1, size=len(X))
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame), root / "data" / "part-00000.parquet")
    spec = {
        "name": "linear",
        "model": {"type": "linear_regression"},
        "data": {"train": str(root / "data"), "label": "y"},
        "output": {"plots": False, "predictions": False},
    }
    run = run_job(parse_spec(spec), root / "distml-run").out
    # the scikit-learn twin carries distml's coefficients (distml fitted on its train split)
    fitted = load_model(run / "model")
    twin = LinearRegression().fit(frame.drop(columns="y"), frame["y"])
    twin.coef_, twin.intercept_ = np.asarray(fitted.coef_), float(fitted.intercept_)
    mlflow.sklearn.save_model(twin, str(root / "mlflow-model"))
    return run, root / "mlflow-model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    command: list[str], port: int, log: Path, timeout: float = 180
) -> subprocess.Popen[bytes]:
    """Start a server and wait until ``/ping`` answers 200."""
    import httpx

    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{command[0]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{command} not ready within {timeout:.0f} s: {log.read_text()[-2000:]}")


def body(rows: int, seed: int) -> bytes:
    X = np.random.default_rng(seed).normal(size=(rows, FEATURES))
    split = {"columns": [f"x{j}" for j in range(FEATURES)], "data": X.tolist()}
    return json.dumps({"dataframe_split": split}).encode()


def drive(url: str, payload: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--client", "--url", url, "--body", str(payload),
        "--clients", str(args.clients), "--seconds", str(args.seconds), "--warmup", "1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 120)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/serve"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="serve-load-"))
    run, mlflow_model = train(root)
    ports = {"distml": free_port(), "mlflow": free_port()}
    bin_dir = Path(sys.executable).parent
    commands = {
        "distml": [
            str(bin_dir / "distml"), "serve", str(run), "--port", str(ports["distml"]),
            "--workers", "1",
        ],
        "mlflow": [
            str(bin_dir / "mlflow"), "models", "serve", "-m", str(mlflow_model), "-p",
            str(ports["mlflow"]), "-w", "1", "--env-manager", "local",
        ],
    }  # fmt: skip
    procs = {}
    try:
        for name, command in commands.items():
            procs[name] = start(command, ports[name], args.out / f"{name}.log")
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        check = body(5, seed=99)
        import httpx

        answers = {
            name: httpx.post(
                url + "/invocations", content=check, headers={"Content-Type": "application/json"}
            ).json()["predictions"]
            for name, url in urls.items()
        }
        np.testing.assert_allclose(answers["distml"], answers["mlflow"], rtol=1e-9)
        payloads = {}
        for scenario, rows in (("single-row", 1), ("1000-row", 1000)):
            payloads[scenario] = root / f"{scenario}.json"
            payloads[scenario].write_bytes(body(rows, seed=rows))
        results = []
        for repeat in range(args.repeat):
            for scenario, payload in payloads.items():
                for name in ("distml", "mlflow") if repeat % 2 == 0 else ("mlflow", "distml"):
                    load = os.getloadavg()[0]
                    result = drive(urls[name], payload, args)
                    result.update(
                        server=name, scenario=scenario, repeat=repeat, loadavg_1min=round(load, 2)
                    )
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    summary = summarize(results, args)
    (args.out / "results.json").write_text(
        json.dumps({"runs": results, "summary": summary}, indent=2)
    )
    (args.out / "results.md").write_text(table(summary, args))
    print(table(summary, args))


def summarize(results: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per server and scenario: the median over repeats of each measure, errors summed."""
    out = []
    for scenario in ("single-row", "1000-row"):
        for server in ("distml", "mlflow"):
            runs = [r for r in results if r["server"] == server and r["scenario"] == scenario]
            out.append(
                {
                    "scenario": scenario,
                    "server": server,
                    "requests_per_s": float(np.median([r["requests_per_s"] for r in runs])),
                    "p50_ms": float(np.median([r["p50_ms"] for r in runs])),
                    "p99_ms": float(np.median([r["p99_ms"] for r in runs])),
                    "errors": sum(r["errors"] for r in runs),
                    "requests": sum(r["requests"] for r in runs),
                }
            )
    return out


def table(summary: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"{args.clients} closed-loop clients, {args.seconds:g} s per run, median of "
        f"{args.repeat} runs; 1-min load average of the machine (shared) when written: {os.getloadavg()[0]:.1f}",
        "",
        "| request | server | requests/s | p50 ms | p99 ms | errors / requests |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in summary:
        lines.append(
            f"| {row['scenario']} | {row['server']} | {row['requests_per_s']:,.0f} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} / {row['requests']:,} |"
        )
    for scenario in ("single-row", "1000-row"):
        rps = {r["server"]: r["requests_per_s"] for r in summary if r["scenario"] == scenario}
        lines.append("")
        lines.append(
            f"{scenario}: distml / mlflow requests/s = {rps['distml'] / rps['mlflow']:.2f}x"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
