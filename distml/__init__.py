"""distml: scalable distributed training with one job spec and three engines.

The Python API mirrors the CLI: ``Dataset`` describes partitioned Parquet,
estimators follow scikit-learn, backends run them (``get_backend``), and
``run_job`` runs a job spec end to end.
"""

from distml.backends import get_backend
from distml.data import Dataset, Split
from distml.errors import DistmlError
from distml.jobs import load_spec, parse_spec, run_job
from distml.models import KMeans, LinearRegression, LogisticRegression, load_model

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "DistmlError",
    "KMeans",
    "LinearRegression",
    "LogisticRegression",
    "Split",
    "__version__",
    "get_backend",
    "load_model",
    "load_spec",
    "parse_spec",
    "run_job",
]
