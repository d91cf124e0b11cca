"""`python -m distml ...`: the same as the `distml` command."""

from distml.cli import main

if __name__ == "__main__":
    main()
