"""What a run produced: the record every job kind returns (also on disk in its folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    """What a run produced (also on disk in ``out``)."""

    out: Path
    summary: dict[str, Any]
    model: Any  # a DistmlEstimator; a keras.Model for Keras jobs
    predictions: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    #: what MLflow tracking did (``run_id``, ``uri``, ...) or ``error``; None when not asked
    tracking: dict[str, Any] | None = None
