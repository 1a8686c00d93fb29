"""`cod docker run`, `cod wasm run`, `cod job run`: build a spec, check it here, request it, follow it.

Flags follow Bacalhau's `docker run`. The spec is validated exactly as the bridge will validate it
before anything is sent; local input paths are added to IPFS only after that check.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cod.cli.common import (
    download_result,
    load_settings,
    outcome_code,
    print_logs,
    wait_for,
)
from cod.cli.output import USAGE, console, err, fail
from cod.options import MAX_REPLICAS, MIN_LEASE, format_wei, parse_fee, request_options, validate_spec

if TYPE_CHECKING:  # the spec, the chain and the read side load when a verb runs, not at start
    from cod.jobfile import JobDraft

Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the job to finish.")]
IdOnly = Annotated[bool, typer.Option("--id-only", help="Print only the job id.")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Print the job's logs when it ends "
                                      "(live logs are not available yet).")]
Download = Annotated[bool, typer.Option("--download", help="Download the result when it ends.")]
OutputDir = Annotated[Path | None, typer.Option("--output-dir", help="Where --download writes "
                                                "(default: ./job-ID).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the spec; request nothing.")]
Fee = Annotated[str | None, typer.Option("--fee", help="Fee: wei, or e.g. 0.002ether "
                                         "(default: the JobManager's minimum).")]
WaitTimeout = Annotated[float | None, typer.Option(
    "--wait-timeout", help="Seconds to wait (default: the job's timeout + 300).")]
Replicas = Annotated[int | None, typer.Option(
    "--replicas", help=f"Operators that each run the job, 1..{MAX_REPLICAS}; more than 1 settles "
    "by commit-reveal majority and costs that many fees (default 1, or the job file's).")]
Lease = Annotated[int, typer.Option(
    "--lease", help=f"Seconds a claiming operator has to deliver before another may take the "
    f"job over, at least {MIN_LEASE} (default: the JobManager's).")]
Claimer = Annotated[list[str] | None, typer.Option(
    "--claimer", help="Only this operator address may claim the job (repeatable; default: any "
    "staked operator).")]


@dataclass(frozen=True)
class Submit:
    wait: bool
    id_only: bool
    follow: bool
    download: bool
    output_dir: Path | None
    dry_run: bool
    fee: str | None
    wait_timeout: float | None
    replicas: int | None = None  # None: the job file's, else 1
    lease: int = 0
    claimers: tuple[str, ...] = ()


def parse_input(text: str) -> tuple[str, str | None]:
    """`-i SRC[:TARGET]` or Bacalhau's `-i src=SRC,dst=TARGET` → (source, target or None)."""
    if text.startswith("src="):
        parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
        return parts["src"], parts.get("dst") or parts.get("target")
    scheme, sep, rest = text.partition("://")
    body = rest if sep else text
    head, colon, tail = body.rpartition(":")
    if colon and tail.startswith("/"):
        return (f"{scheme}://{head}" if sep else head), tail
    return text, None


def input_fields(values: list[str]) -> list[dict[str, str]]:
    inputs = []
    for value in values:
        source, target = parse_input(value)
        source = source.removeprefix("file://")
        if source.startswith("ipfs://"):
            default = "/inputs"
        else:
            default = "/inputs/" + (source.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "input")
        inputs.append({"source": source, "target": target or default})
    targets = [i["target"] for i in inputs]
    for target in targets:
        if targets.count(target) > 1:
            fail(f"two inputs mount at {target}: give each a target (-i SRC:/inputs/NAME)", USAGE)
    return inputs


def docker_fields(image: str, command: list[str], inputs: list[str], outputs: list[str],
                  env: list[str], cpu: float | None, memory: str | None, disk: str | None,
                  gpu: int | None, network: str | None, timeout: int | None,
                  entrypoint: str | None, workdir: str | None) -> dict[str, Any]:
    """The raw spec fields for `docker run` flags (validated later, in one place)."""
    fields: dict[str, Any] = {"engine": "docker", "image": image}
    if command[:1] == ["--"]:  # flags end at the image (as with docker run); `--` is optional
        command = command[1:]
    argv = ([entrypoint] if entrypoint else []) + command
    if argv:
        fields["entrypoint"] = argv
    if inputs:
        fields["inputs"] = input_fields(inputs)
    if outputs:
        fields["outputs"] = []
        for item in outputs:
            name, sep, path = item.partition(":")
            if not sep:
                fail(f"-o/--output expects NAME:PATH, got {item!r}", USAGE)
            fields["outputs"].append({"name": name, "path": path})
    if env:
        fields["env"] = {}
        for item in env:
            name, sep, value = item.partition("=")
            if not sep:
                fail(f"-e/--env expects NAME=VALUE, got {item!r}", USAGE)
            fields["env"][name] = value
    resources = {k: v for k, v in (("cpu", cpu), ("memory", memory), ("disk", disk),
                                   ("gpu", gpu)) if v is not None}
    if resources:
        fields["resources"] = resources
    if network:
        fields["network"] = network
    if timeout is not None:
        fields["timeout"] = timeout
    if workdir:
        fields["workdir"] = workdir
    return fields


def submit(draft: JobDraft, options: Submit, base_dir: Path) -> None:
    """Check, resolve local inputs, then print (dry run) or request and follow the job."""
    from cod.jobfile import finish
    from cod.templates import CID_MARK

    try:
        request = request_options(
            options.replicas if options.replicas is not None else draft.replicas or 1,
            options.lease, options.claimers)
    except ValueError as exc:
        fail(f"{exc}", USAGE)
    local = draft.local_inputs()
    for index in local:  # first check everything with placeholders: nothing is sent on error
        path = (base_dir / draft.fields["inputs"][index]["source"]).resolve()
        if not path.exists():
            fail(f"input {draft.fields['inputs'][index]['source']}: no such file or directory "
                 "(use ipfs://CID, https://URL or an existing local path)", USAGE)
    # a local input not yet added to IPFS stands as the placeholder CID while the spec is checked
    validate_spec(finish(_with_sources(draft, {i: f"ipfs://{CID_MARK}" for i in local})))
    # a dry run over no local input needs no setting (and skips loading pydantic-settings)
    settings = (load_settings(contract=not options.dry_run, key=not options.dry_run)
                if local or not options.dry_run else None)
    fee = parse_fee(options.fee) if options.fee is not None else None
    if local:
        from protocol.ipfs import KuboClient

        assert settings is not None
        kubo = KuboClient(settings.ipfs_api)
        added = {}
        for index in local:
            path = (base_dir / draft.fields["inputs"][index]["source"]).resolve()
            cid = kubo.add_path(path)
            if not options.id_only:
                err.print(f"added {path} to IPFS: {cid}", soft_wrap=True)
            added[index] = f"ipfs://{cid}"
        draft = _with_sources(draft, added)
    spec = finish(draft)
    text = validate_spec(spec)
    if options.dry_run:
        print(json.dumps(json.loads(text), indent=2))
        print(f"request: {request.describe()}", file=sys.stderr)  # plain: rich is not loaded
        return
    from cod.jobs import JobClient
    from cod.queries import JobReader
    from cod.views import iso

    assert settings is not None
    client = JobClient(settings)
    requested = client.request(spec, fee, replicas=request.replicas, lease_s=request.lease_s,
                               claimers=request.claimers)
    job_id = requested.job_id
    if options.id_only:
        print(job_id, flush=True)
    else:
        options_note = "" if request.default else f"; {request.describe()}"
        console.print(f"Job {job_id} requested: fee {format_wei(requested.fee_wei)}, deadline "
                      f"{iso(requested.deadline)}, tx {requested.tx_hash}{options_note}",
                      soft_wrap=True, markup=False)
    if not options.wait:
        if not options.id_only:
            _next_steps(job_id)
        return
    reader = JobReader(settings, w3=client.w3)
    timeout = options.wait_timeout or spec.timeout + 300
    progress = wait_for(reader, job_id, timeout, show=not options.id_only)
    code = outcome_code(progress, quiet=options.id_only)
    if progress.result_cid:
        if options.follow:
            print_logs(settings, progress.result_cid)
        if options.download:
            target = options.output_dir or Path(f"job-{job_id}")
            download_result(settings, progress.result_cid, target)
            if not options.id_only:
                console.print(f"Result downloaded to {target}")
    if not options.id_only:
        _next_steps(job_id)
    raise typer.Exit(code)


def _with_sources(draft: JobDraft, sources: dict[int, str]) -> JobDraft:
    from cod.jobfile import JobDraft

    fields = dict(draft.fields)
    fields["inputs"] = [dict(item, source=sources[i]) if i in sources else item
                        for i, item in enumerate(fields.get("inputs", []))]
    if not fields["inputs"]:
        del fields["inputs"]
    return JobDraft(fields=fields, kind=draft.kind, notes=draft.notes, replicas=draft.replicas)


def _next_steps(job_id: int) -> None:
    console.print(f"\nTo get more details about the job:\n  cod job describe {job_id}\n"
                  f"  cod job logs {job_id}\n  cod job get {job_id}")


# ------------------------------------------------------------------------------------ commands

def docker_run(
    image: Annotated[str, typer.Argument(help="A Docker image present on the nodes.")],
    command: Annotated[list[str] | None, typer.Argument(help="Command and arguments (after --).")
                       ] = None,
    input: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="SRC[:TARGET]: ipfs://CID, https://URL or a local path (added to "
        "IPFS). Default target /inputs (ipfs) or /inputs/NAME.")] = None,
    output: Annotated[list[str] | None, typer.Option(
        "--output", "-o", help="NAME:PATH, a result folder (default outputs:/outputs).")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=VALUE.")] = None,
    cpu: Annotated[float | None, typer.Option(help="CPUs, e.g. 0.5.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 256Mi.")] = None,
    disk: Annotated[str | None, typer.Option(help="Disk, e.g. 1Gi.")] = None,
    gpu: Annotated[int | None, typer.Option(help="GPUs.")] = None,
    network: Annotated[str | None, typer.Option(help="none (default) or full.")] = None,
    timeout: Annotated[int | None, typer.Option(help="Seconds before the job is killed.")] = None,
    entrypoint: Annotated[str | None, typer.Option(help="Program to run; the command after -- "
                                                   "becomes its arguments.")] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w", help="Working directory.")
                       ] = None,
    wait: Wait = True, id_only: IdOnly = False, follow: Follow = False,
    download: Download = False, output_dir: OutputDir = None, dry_run: DryRun = False,
    fee: Fee = None, wait_timeout: WaitTimeout = None, replicas: Replicas = None,
    lease: Lease = 0, claimer: Claimer = None,
) -> None:
    """Run a Docker image as a job: `cod docker run IMAGE -- CMD ARGS…`."""
    from cod.jobfile import JobDraft

    fields = docker_fields(image, command or [], input or [], output or [], env or [], cpu,
                           memory, disk, gpu, network, timeout, entrypoint, workdir)
    submit(JobDraft(fields=fields, kind="cod"),
           Submit(wait, id_only, follow, download, output_dir, dry_run, fee, wait_timeout,
                  replicas, lease, tuple(claimer or ())),
           Path.cwd())


def wasm_run(
    module: Annotated[str, typer.Argument(help="The module: a CID, ipfs://CID or a local .wasm "
                                          "file (added to IPFS).")],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments (after --).")] = None,
    input: Annotated[list[str] | None, typer.Option("--input", "-i", help="SRC[:TARGET].")
                     ] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=VALUE.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit.")] = None,
    timeout: Annotated[int | None, typer.Option(help="Seconds before the job is killed.")] = None,
    wait: Wait = True, id_only: IdOnly = False, follow: Follow = False,
    download: Download = False, output_dir: OutputDir = None, dry_run: DryRun = False,
    fee: Fee = None, wait_timeout: WaitTimeout = None, replicas: Replicas = None,
    lease: Lease = 0, claimer: Claimer = None,
) -> None:
    """Run a WebAssembly (WASI) module as a job: `cod wasm run MODULE -- ARGS…`."""
    from cod.jobfile import JobDraft

    source = module if module.startswith("ipfs://") or Path(module).exists() else f"ipfs://{module}"
    if not source.startswith("ipfs://"):
        from protocol.ipfs import KuboClient

        settings = load_settings(contract=False)
        source = f"ipfs://{KuboClient(settings.ipfs_api).add_path(Path(source).resolve())}"
    fields = docker_fields(source, args or [], input or [], [], env or [], None, memory, None,
                           None, None, timeout, None, None)
    fields["engine"] = "wasm"
    submit(JobDraft(fields=fields, kind="cod"),
           Submit(wait, id_only, follow, download, output_dir, dry_run, fee, wait_timeout,
                  replicas, lease, tuple(claimer or ())),
           Path.cwd())


def job_run(
    file: Annotated[str, typer.Argument(help="A job file: our spec (JSON/YAML) or a Bacalhau v1 "
                                        "job YAML; - reads stdin.")],
    template_vars: Annotated[list[str] | None, typer.Option(
        "--template-vars", help="name=value[,name=value] for {{.name}} in the file.")] = None,
    template_envs: Annotated[str | None, typer.Option(
        "--template-envs", help="Regex: environment variables usable as {{.NAME}}.")] = None,
    wait: Wait = True, id_only: IdOnly = False, follow: Follow = False,
    download: Download = False, output_dir: OutputDir = None, dry_run: DryRun = False,
    fee: Fee = None, wait_timeout: WaitTimeout = None, replicas: Replicas = None,
    lease: Lease = 0, claimer: Claimer = None,
) -> None:
    """Run a job file. Local input paths are relative to the file and added to IPFS."""
    from cod.jobfile import parse_job_document, parse_template_vars

    if file == "-":
        text, base = sys.stdin.read(), Path.cwd()
    else:
        path = Path(file)
        if not path.is_file():
            fail(f"no such job file: {file}", USAGE)
        text, base = path.read_text(), path.resolve().parent
    variables = parse_template_vars(template_vars or [], template_envs)
    draft = parse_job_document(text, variables)
    if not id_only:
        for note in draft.notes:
            err.print(f"note: {note}", soft_wrap=True)
    submit(draft, Submit(wait, id_only, follow, download, output_dir, dry_run, fee, wait_timeout,
                         replicas, lease, tuple(claimer or ())),
           base)

