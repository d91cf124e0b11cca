"""``python -m distml.cli``: the ``distml`` command (detached jobs start it this way)."""

from distml.cli import main

main()
