"""The `cod` command line: Bacalhau's verbs over cod's contract, bridge and executors.

Exit codes and error handling: see `cod.cli.output`.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import typer

from cod.cli import data, jobs, operator, ops, run
from cod.cli.output import report


class _Cod(typer.Typer):
    """Typer whose uncaught errors become one line and a documented exit code."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit:
            raise
        except BaseException as exc:
            sys.exit(report(exc))


# Plain (click) help and usage errors: typer's rich rendering imports ~0.1 s of rich (markdown,
# tracebacks) on every `--help`; the texts are the same (see `_summaries`).
_PLAIN: dict[str, Any] = {"rich_markup_mode": None}


def _summaries(*groups: typer.Typer) -> None:
    """Each command's whole first docstring paragraph as its line in the command list (click
    would cut it to the first sentence that fits in the line)."""
    for group in groups:
        for info in group.registered_commands:
            doc = inspect.getdoc(info.callback) if info.callback else None
            if info.short_help is None and doc:
                info.short_help = " ".join(doc.split("\n\n", 1)[0].split())


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, **_PLAIN)


app = _Cod(help="cod: compute over data, bridged to smart contracts.", no_args_is_help=True,
           pretty_exceptions_enable=False, add_completion=False, **_PLAIN)
docker_app = _group("Run Docker jobs.")
wasm_app = _group("Run WebAssembly jobs.")
job_app = _group("Run, list and inspect jobs.")
node_app = _group("Compute nodes.")
contracts_app = _group("Deploy the contracts.")
config_app = _group("Settings.")
data_app = _group("Datasets this compute node holds (jobs over them run here).")
operator_app = _group("This bridge's operator record on the contract (stake, exit).")

docker_app.command("run", context_settings={"allow_interspersed_args": False})(run.docker_run)
wasm_app.command("run", context_settings={"allow_interspersed_args": False})(run.wasm_run)
job_app.command("run")(run.job_run)
job_app.command("list")(jobs.job_list)
job_app.command("describe")(jobs.job_describe)
job_app.command("logs")(jobs.job_logs)
job_app.command("get")(jobs.job_get)
job_app.command("cancel")(jobs.job_cancel)
node_app.command("list")(jobs.node_list)
contracts_app.command("deploy")(ops.contracts_deploy)
config_app.command("show")(ops.config_show)
data_app.command("pin")(data.data_pin)
data_app.command("unpin")(data.data_unpin)
data_app.command("ls")(data.data_ls)
operator_app.command("register")(operator.operator_register)
operator_app.command("status")(operator.operator_status)
operator_app.command("exit")(operator.operator_exit)
operator_app.command("withdraw")(operator.operator_withdraw)

app.command()(ops.devstack)
app.command("bridge")(ops.bridge_cmd)
app.command()(ops.worker)
app.command()(ops.api)
app.command("serve", hidden=True)(ops.api)
app.command()(ops.demo)
for name, group in (("docker", docker_app), ("wasm", wasm_app), ("job", job_app),
                    ("node", node_app), ("contracts", contracts_app), ("config", config_app),
                    ("data", data_app), ("operator", operator_app)):
    app.add_typer(group, name=name)
_summaries(app, docker_app, wasm_app, job_app, node_app, contracts_app, config_app, data_app,
           operator_app)


def main() -> None:
    app()
