"""MLflow tracking of run folders (the ``mlflow`` extra; MLflow is imported only here,
and only when a run is tracked).

:func:`track_run` logs a published run folder — params, metrics, per-epoch history,
search candidates as child runs, artifacts and the model as an MLflow model;
:func:`track_result` does it for a run just finished and never raises: a tracking
failure leaves the run folder as it is and is reported as one line.
"""

from distml.tracking.log import track_result, track_run
from distml.tracking.store import TrackingError

__all__ = ["TrackingError", "track_result", "track_run"]
