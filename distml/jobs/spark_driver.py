"""The application ``distml submit`` hands to ``spark-submit``: ``distml`` itself.

spark-submit runs this file as the driver (client mode) with the arguments of a
``distml run`` command, so a submitted job behaves, prints and exits like one.
spark-submit merges a Python driver's stderr into its stdout; to keep progress
and errors on the user's stderr, they go to the file ``distml submit`` follows.
"""

import os
import sys

from distml.cli import main

if __name__ == "__main__":
    follow = os.environ.get("DISTML_DRIVER_STDERR")
    if follow:
        sys.stderr = open(follow, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    main()
