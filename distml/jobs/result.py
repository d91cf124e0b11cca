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
    #: what the run fitted: a distml Model (or a Pipeline around one), a keras.Model for
    #: Keras jobs, None when worker processes trained it (see ``model``)
    fitted: Any
    predictions: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    #: what MLflow tracking did (``run_id``, ``uri``, ...) or ``error``; None when not asked
    tracking: dict[str, Any] | None = None

    @property
    def model(self) -> Any:
        """The fitted model as users work with it: a scikit-learn estimator (or a pipeline
        around one), a ``keras.Model`` for Keras jobs (None when workers trained it: load
        ``model.keras`` from ``out``)."""
        from distml.loading import as_user_model

        self.fitted = as_user_model(self.fitted)
        return self.fitted
