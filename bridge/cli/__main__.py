"""`python -m bridge.cli …` (devstack spawns `bridge` and `worker` this way)."""

from bridge.cli import main

main()
