"""`cod` starts without the chain, Celery, the ledger, Docker or IPFS: `--help` and `--dry-run`
load only the argument parser and the spec (each check runs `cod` in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# what only a verb that talks to a service may import
HEAVY = ("web3", "eth_account", "eth_utils", "celery", "kombu", "redis", "sqlalchemy", "alembic",
         "docker", "httpx", "requests", "uvicorn", "fastapi", "pydantic_settings", "multiformats",
         "bridge.chain", "executor", "devstack", "cod.queries", "cod.jobs")

PROBE = """
import json, sys
from cod.cli import app
args = json.loads(sys.argv[1])
if args:
    try:
        app(args, prog_name="cod")
    except SystemExit as exc:
        assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""


def loaded(*args: str) -> set[str]:
    """The modules loaded after `import cod.cli` and, with `args`, one run of `cod ARGS`."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))],
                          capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", [
    (),
    ("--help",),
    ("job", "list", "--help"),
    ("docker", "run", "--help"),
    ("docker", "run", "--dry-run", "busybox:1.36", "--", "echo", "hi"),
])
def test_start_up_loads_no_service_client(args: tuple[str, ...]) -> None:
    assert heavy_in(loaded(*args)) == []


def test_import_loads_neither_rich_nor_pydantic() -> None:
    """Rich and pydantic load when a verb prints or checks a spec, not when `cod` is imported."""
    modules = loaded()
    assert not {m for m in modules if m.split(".")[0] in ("rich", "pydantic", "yaml")}
