"""How the CLI shows progress: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBar

from distml.progress import Progress


class BarProgress(Progress):
    """One rich progress bar per stage: ``reading 12/16``, ``fitting … pass 7``."""

    interval = 0.0

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._bar = RichBar(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),  # rich's estimate; "-:--:--" for stages of unknown length
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> BarProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.finish()
        else:  # a failed or interrupted stage is not "done"
            self.abandon()
        self._bar.stop()

    def _count(self) -> str:
        if self.total is not None:
            return f"{self.completed}/{self.total}"
        return f"pass {self.completed}" if self.completed else ""

    def on_start(self) -> None:
        self._task = self._bar.add_task(str(self.stage_name), total=self.total, count=self._count())

    def on_step(self, detail: str | None) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self.completed, count=self._count())

    def on_finish(self, seconds: float) -> None:
        if self._task is not None:
            total = self.total if self.total is not None else max(self.completed, 1)
            self._bar.update(self._task, total=total, completed=total, count=self._count())
            self._task = None

    def on_abandon(self) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None

    def message(self, text: str) -> None:
        self._bar.console.print(text, markup=False, highlight=False)


class LineProgress(Progress):
    """Plain, throttled lines on stderr (logs, pipes, CI): ``fitting: pass 12 (lloyd_step)``."""

    def __init__(self, stream: Any = None, clear_line: bool = False) -> None:
        super().__init__()
        self._stream = stream or sys.stderr
        # on a terminal shared with Spark's console progress bar: wipe its partial line first
        self._prefix = "\r\033[K" if clear_line else ""

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.finish()
        else:  # a failed or interrupted stage is not "done"; the error line says why
            self.abandon()

    def _line(self, text: str) -> None:
        print(self._prefix + text, file=self._stream, flush=True)

    def on_step(self, detail: str | None) -> None:
        self._line(self.describe(detail))

    def on_finish(self, seconds: float) -> None:
        done = (
            f"{self.completed}/{self.total}"
            if self.total is not None
            else f"{self.completed} passes"
        )
        self._line(f"{self.stage_name}: done ({done}, {seconds:.2f}s)")

    def on_abandon(self) -> None:
        pass  # no line: the error (or the interruption) is reported once, by the CLI

    def message(self, text: str) -> None:
        self._line(text)


def progress_for(console: Console, engine_draws: bool = False) -> BarProgress | LineProgress:
    """The display that suits where the output goes.

    ``engine_draws``: the engine draws its own progress bar on the terminal (Spark's
    console progress bar), so distml prints lines above it instead of a second bar.
    """
    if not console.is_terminal:
        return LineProgress()
    return LineProgress(clear_line=True) if engine_draws else BarProgress(console)
