"""Progress of a job's stages (reading partitions, a fit's passes), engine-neutral.

Backends report to a :class:`Progress`: a stage starts (``reading`` with one step
per partition, ``fitting`` with one step per ``map_reduce`` pass), steps happen,
the stage ends. The library default logs through :mod:`logging`; the CLI swaps in
a progress bar on a terminal or throttled plain lines otherwise.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("distml.progress")


class Progress:
    """A sink for progress events; this base class logs them (throttled)."""

    #: Seconds between two log lines of the same stage (the last step is always logged).
    interval = 1.0

    def __init__(self) -> None:
        self.stage_name: str | None = None
        self.total: int | None = None
        self.completed = 0
        self._started = 0.0
        self._last_report = 0.0

    def start(self, stage: str, total: int | None = None) -> None:
        """Begin ``stage`` (ending the current one); ``total`` steps if known."""
        if self.stage_name is not None:
            self.finish()
        self.stage_name, self.total, self.completed = stage, total, 0
        self._started = self._last_report = time.monotonic()
        self.on_start()

    def step(self, n: int = 1, detail: str | None = None) -> None:
        """``n`` more steps of the current stage are done (ignored outside a stage)."""
        if self.stage_name is None:
            return
        self.completed += n
        now = time.monotonic()
        if now - self._last_report >= self.interval or self.completed == self.total:
            self._last_report = now
            self.on_step(detail)

    def finish(self) -> None:
        """End the current stage (no-op when none is running)."""
        if self.stage_name is not None:
            self.on_finish(time.monotonic() - self._started)
            self.stage_name = None

    def abandon(self) -> None:
        """End the current stage without calling it done (it failed or was interrupted)."""
        if self.stage_name is not None:
            self.on_abandon()
            self.stage_name = None

    def message(self, text: str) -> None:
        """A one-off line for the user (a dashboard link, a resumed checkpoint)."""
        log.info("%s", text)

    # -- what a display overrides ---------------------------------------------------------------
    def on_start(self) -> None:
        log.debug("%s: started", self.stage_name)

    def on_step(self, detail: str | None) -> None:
        log.info("%s", self.describe(detail))

    def on_finish(self, seconds: float) -> None:
        log.info("%s: done in %.2fs", self.stage_name, seconds)

    def on_abandon(self) -> None:
        log.debug("%s: stopped", self.stage_name)

    def describe(self, detail: str | None = None) -> str:
        """``reading: 12/16, 0:03 elapsed, ~0:01 left`` or ``fitting: pass 7 (lloyd_step)``."""
        if self.total is not None:
            text = f"{self.stage_name}: {self.completed}/{self.total}"
            elapsed = time.monotonic() - self._started
            left = self.seconds_left(elapsed)
            text += f", {clock(elapsed)} elapsed"
            if left is not None:
                text += f", ~{clock(left)} left"
        else:
            text = f"{self.stage_name}: pass {self.completed}"
        return f"{text} ({detail})" if detail else text

    def seconds_left(self, elapsed: float) -> float | None:
        """The stage's remaining time at its average pace so far (None before the first step)."""
        if self.total is None or self.completed <= 0:
            return None
        return elapsed / self.completed * max(self.total - self.completed, 0)


def clock(seconds: float) -> str:
    """``1:02:03`` / ``2:03``: elapsed and remaining times as people read them."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
