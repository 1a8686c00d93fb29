#!/usr/bin/env bash
# The whole test suite: lint, type checks, contract tests, then the Python tests against real
# anvil, Kubo, Redis, Celery workers and Docker (started by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff";  .venv/bin/ruff check protocol bridge executor cod devstack tests bench
echo "== mypy";  .venv/bin/mypy
echo "== contracts (hardhat)"; npx hardhat test
echo "== python (pytest)"; .venv/bin/pytest -v -p no:cacheprovider "$@"
