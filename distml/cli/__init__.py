"""The ``distml`` command line: parse, call the library, print.

One module per command group (``run``, ``data``, ``bench``, ``cluster``/``submit``/``jobs``,
``report``, ``demo``, ``predict``, ``serve``, ``explain``, ``track``); :mod:`distml.cli.app`
holds the group, its error handling and signals. The CLI imports the library, never the reverse.
"""

from distml.cli import (  # noqa: F401 - registers the commands
    bench,
    cluster,
    data,
    demo,
    explain,
    predict,
    report,
    run,
    serve,
    track,
)
from distml.cli.app import main

__all__ = ["main"]
