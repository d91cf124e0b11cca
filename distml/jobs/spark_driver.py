"""The application ``distml submit`` hands to ``spark-submit``: ``distml`` itself.

spark-submit runs this file as the driver (client mode) with the arguments of a
``distml run`` command, so a submitted job behaves, prints and exits like one.
"""

from distml.cli import main

if __name__ == "__main__":
    main()
