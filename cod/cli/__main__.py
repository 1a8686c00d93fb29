"""`python -m cod.cli …` (devstack spawns `bridge` and `worker` this way)."""

from cod.cli import main

main()
