"""Where the Spark distribution is: ``$SPARK_HOME``, else the one inside the pyspark package.

Its ``jars/`` are the driver's classpath (the class archive's key), its ``conf/`` holds the
``spark-defaults.conf`` spark-submit reads, and its ``bin/`` starts a standalone cluster's
daemons and submits jobs. One rule for all of them, the one pyspark follows for a pip
install; pyspark's own finder is not used because it exits the process when it finds
nothing. Under spark-submit, which sets ``SPARK_HOME``, pyspark is imported from a zip.
"""

from __future__ import annotations

import os
from pathlib import Path


def spark_home() -> Path:
    """``$SPARK_HOME``, else the pyspark package's folder."""
    home = os.environ.get("SPARK_HOME")
    if home:
        return Path(home)
    import pyspark

    return Path(pyspark.__file__).parent
