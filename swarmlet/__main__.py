"""`python -m swarmlet`: the same command line as the `swarmlet` console script."""

from swarmlet.cli.main import main

if __name__ == "__main__":
    main()
