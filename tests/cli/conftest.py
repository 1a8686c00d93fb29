"""Drive `cod` as a user does: a subprocess with the stack's `COD_*` variables in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.stack import DevStack, dev_key

COD = str(Path(sys.executable).parent / "cod")


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    def ok(self) -> Ran:
        assert self.code == 0, f"exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return self

    def error_line(self) -> str:
        """The one error line (and check there is no traceback)."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, self.stderr
        return lines[0]


class Cod:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str, env: dict[str, str | None] | None = None,
                 cwd: Path | None = None, stdin: str | None = None, timeout: float = 300
                 ) -> Ran:
        full = {**os.environ, **self.env}
        for name, value in (env or {}).items():
            if value is None:
                full.pop(name, None)
            else:
                full[name] = value
        done = subprocess.run([COD, *args], env=full, cwd=cwd or self.cwd, input=stdin,
                              capture_output=True, text=True, timeout=timeout)
        return Ran(done.returncode, done.stdout, done.stderr)


CLI_KEY_INDEX = 2  # an anvil dev account of its own: the session's `requester` caches its nonce


@pytest.fixture
def cod(stack: DevStack, tmp_path: Path) -> Cod:
    return Cod({**stack.env, "COD_PRIVATE_KEY": dev_key(CLI_KEY_INDEX)}, tmp_path)
