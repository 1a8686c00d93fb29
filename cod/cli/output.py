"""What every `cod` command shares: consoles, `--output` rendering, exit codes, error lines.

Errors are one line with the fix, never a traceback (`COD_DEBUG=1` shows it). Exit codes:

| code | meaning |
|---|---|
| 0 | success (for a job: it completed with exit code 0) |
| 1 | the job failed, was cancelled, or exited non-zero; or a result could not be read |
| 2 | usage: bad flag, invalid spec or job file, unknown job; nothing was sent |
| 3 | environment: a service (RPC, IPFS, broker) unreachable, or a setting missing |
| 4 | the chain refused (or would refuse) the transaction |
| 5 | still running: gave up waiting (the job goes on) |
| 130 | interrupted (Ctrl-C) |
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from cod.views import View

OK, JOB_FAILED, USAGE, ENVIRONMENT, REFUSED, STILL_RUNNING, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130


class LazyConsole:
    """A rich `Console` made on first use: importing rich costs ~50 ms that `--help` and
    `--dry-run` need not pay. Attributes are the console's."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            width = None if stream.isatty() else 120
            if self._stderr:
                self._console = Console(stderr=True, width=width, highlight=False)
            else:
                self._console = Console(width=width, highlight=False, soft_wrap=False)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self._get().print(*objects, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


console = LazyConsole()
err = LazyConsole(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = typer.Option("--output", help="table (for people), json or yaml (for scripts).")


class CliError(Exception):
    """An error with its exit code; the message is the whole line the user sees."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int) -> NoReturn:
    raise CliError(message, code)


def render(data: View | Sequence[View] | dict[str, Any], fmt: OutputFormat,
           table: Callable[[], None]) -> None:
    """Print `data` as JSON or YAML, or call `table` to print it for people."""
    from cod.views import View

    if fmt == OutputFormat.table:
        table()
        return
    if isinstance(data, View):
        plain: Any = data.to_data()
    elif isinstance(data, dict):
        plain = data
    else:
        plain = [item.to_data() for item in data]
    if fmt == OutputFormat.json:
        print(json.dumps(plain, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True), end="")


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for an exception that reached the top."""
    from celery.exceptions import CeleryError
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from web3.exceptions import TimeExhausted, Web3Exception

    from bridge.chain import ChainError
    from cod.jobfile import JobFileError
    from cod.jobs import NoSuchJob, RequestRefused
    from cod.nodes import BrokerUnavailable
    from protocol.ipfs import IpfsError, IpfsUnavailable
    from protocol.spec import SpecError

    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED, "interrupted"
    if isinstance(exc, (SpecError, JobFileError, NoSuchJob, FileExistsError)):
        return USAGE, str(exc)
    if isinstance(exc, FileNotFoundError):
        return USAGE, f"no such file: {exc.filename or exc}"
    if isinstance(exc, RequestRefused):
        return REFUSED, str(exc)
    if isinstance(exc, (ChainError, BrokerUnavailable)):
        return ENVIRONMENT, str(exc)
    if isinstance(exc, IpfsUnavailable):
        return ENVIRONMENT, f"{str(exc).split(': ')[0]}: start Kubo or set COD_IPFS_API"
    if isinstance(exc, IpfsError):
        return JOB_FAILED, str(exc)
    if isinstance(exc, RequestsConnectionError):
        return ENVIRONMENT, "lost the RPC connection: is the node still running? (COD_RPC_URL)"
    if isinstance(exc, TimeExhausted):
        return STILL_RUNNING, f"no receipt in time: {exc}"
    if isinstance(exc, (CeleryError, ConnectionError)):
        return ENVIRONMENT, f"broker error: {exc} (check COD_BROKER_URL)"
    if isinstance(exc, Web3Exception):
        return ENVIRONMENT, f"chain error: {exc}"
    if isinstance(exc, ValueError):
        return USAGE, str(exc)
    return 70, f"internal error: {type(exc).__name__}: {exc} (COD_DEBUG=1 shows the traceback)"


def report(exc: BaseException) -> int:
    """Print the error line for `exc` and return its exit code."""
    if os.environ.get("COD_DEBUG") and not isinstance(exc, CliError):
        import traceback

        traceback.print_exception(exc)
    from rich.markup import escape

    code, message = classify(exc)
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return code
