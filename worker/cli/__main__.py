"""`python -m worker.cli`: the same commands as `connections`."""

from worker.cli import main

main()
