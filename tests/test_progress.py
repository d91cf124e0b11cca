"""Progress: one step per partition read and per pass, shown as lines or a bar."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO
from rich.console import Console

import distml
from distml.cli import main
from distml.display import BarProgress, LineProgress
from distml.progress import Progress


class Recorder(Progress):
    """Keeps every event (no throttling) so tests can count them."""

    interval = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str | None, int]] = []

    def on_step(self, detail: str | None) -> None:
        self.events.append(("step", self.stage_name, self.completed))

    def on_finish(self, seconds: float) -> None:
        self.events.append(("finish", self.stage_name, self.completed))

    def message(self, text: str) -> None:
        self.events.append(("message", text, 0))


def test_reads_and_passes_are_counted(regression_dir: Path) -> None:
    recorder = Recorder()
    with distml.get_backend("local[2]") as backend:
        backend.progress = recorder
        data = backend.load(distml.Dataset(regression_dir, label="y"))
        backend.fit(distml.LinearRegression(), data)
        backend.fit(distml.KMeans(n_clusters=3, init="k-means++", max_iter=5, tol=0), data)
    finished = [(stage, n) for kind, stage, n in recorder.events if kind == "finish"]
    assert finished[0] == ("reading", 4)  # 4 files
    assert finished[1] == ("fitting linear_regression (native)", 1)  # one pass of moments
    # k-means++ with k=3: 1 (first row) + 1 (potentials) + 2 per further centre
    # + 5 Lloyd iterations + 1 final inertia (the tolerance rides on the first Lloyd pass)
    assert finished[2] == ("fitting kmeans (native)", 1 + 1 + 2 * 2 + 5 + 1)


def test_cli_prints_plain_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(REPO / "jobs" / "linear_regression.yaml"),
            "--set",
            f"data.train={tmp_path / 'ex1'}",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("linear-regression: 5 rows in 1 partition(s) on local[")
    assert any(line.startswith("reading: done (1/1,") for line in lines)
    assert any(
        line.startswith("fitting linear_regression (native): done (1 passes") for line in lines
    )
    assert "mse: 0.734694" in result.stdout


def test_line_progress_is_throttled() -> None:
    stream = io.StringIO()
    progress = LineProgress(stream)
    progress.interval = 3600.0
    progress.start("fitting", total=None)
    for _ in range(50):
        progress.step(detail="binary_loss_grad")
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fitting: done (50 passes, ")


def test_lines_of_a_stage_with_a_total_say_elapsed_and_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import distml.progress as progress_module

    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    progress = LineProgress(stream)
    progress.interval = 0.0
    progress.start("benchmark: 4 runs", total=4)
    now[0] += 30.0
    progress.step(detail="linreg 1,000")  # 30 s a step so far: 3 steps left
    now[0] += 3630.0
    progress.step()
    assert stream.getvalue().splitlines() == [
        "benchmark: 4 runs: 1/4, 0:30 elapsed, ~1:30 left (linreg 1,000)",
        "benchmark: 4 runs: 2/4, 1:01:00 elapsed, ~1:01:00 left",
    ]


@pytest.mark.parametrize("total", [4, None])
def test_bar_progress_on_a_terminal(total: int | None) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with BarProgress(console) as progress:
        progress.start("reading", total=total)
        for _ in range(4):
            progress.step()
        progress.message("dask dashboard: http://127.0.0.1:8787/status")
    text = out.getvalue()
    assert ("4/4" if total else "pass 4") in text
    # rich's time-remaining column: unknown ("-:--:--") before the first step of a stage
    # with a total; a stage of unknown length shows none
    assert ("-:--:--" in text) == (total is not None)
    assert "dask dashboard: http://127.0.0.1:8787/status" in text


def test_lines_beside_an_engine_that_draws_its_own_bar() -> None:
    from distml.display import progress_for

    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(progress_for(terminal), BarProgress)
    beside = progress_for(terminal, engine_draws=True)
    assert isinstance(beside, LineProgress)
    stream = io.StringIO()
    beside._stream = stream
    beside.message("spark stage 3 done: treeAggregate (16/16 tasks, ~0.4s)")
    # wipe the partial line Spark's console bar left, then print
    assert stream.getvalue() == "\r\033[Kspark stage 3 done: treeAggregate (16/16 tasks, ~0.4s)\n"
    piped = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(progress_for(piped, engine_draws=True), LineProgress)
