"""Job specs, their validation, and the runner that writes run folders."""

from distml.jobs.runner import RunResult, run_job
from distml.jobs.spec import JobSpec, load_spec, parse_spec

__all__ = ["JobSpec", "RunResult", "load_spec", "parse_spec", "run_job"]
