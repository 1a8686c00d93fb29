"""Job files for `cod job run`: our spec as JSON or YAML, or a Bacalhau v1 job YAML translated.

A Bacalhau job is translated field by field where the concept maps (engine, inputs, result paths,
resources, network, timeouts); anything that would change what runs, or where, without cod being
able to honour it is refused with a message naming the field. Purely informational fields (name,
labels, meta) are dropped with a note.

Template variables work like Bacalhau's `--template-vars`: `{{.name}}` in the file's text is
replaced before parsing; an unknown name is an error.

Total over any text: the answer is a draft or a JobFileError (then `finish`: a spec or a
SpecError). A file is bounded before it is translated (size, nodes — YAML aliases count at every
use, so an alias bomb is refused —, depth), and values of the wrong type name their field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocol.spec import JobSpec, SpecError, parse_spec

_TEMPLATE_RE = re.compile(r"\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")
_JOB_KEYS = {"Name", "Namespace", "Type", "Priority", "Count", "Constraints", "Meta", "Labels",
             "Tasks", "ID", "Version", "Revision", "CreateTime", "ModifyTime", "State"}
_INFO_JOB_KEYS = {"Name", "Namespace", "Priority", "Meta", "Labels", "ID", "Version", "Revision",
                  "CreateTime", "ModifyTime", "State"}
_TASK_KEYS = {"Name", "Engine", "Publisher", "Env", "Meta", "InputSources", "ResultPaths",
              "Resources", "Network", "Timeouts"}
MAX_FILE_CHARS = 1024 * 1024
if TYPE_CHECKING:
    import yaml
MAX_NODES = 10_000  # values in the document, an alias counted at each use
MAX_DEPTH = 32
MAX_REPLICAS = 7  # JobManager.MAX_REPLICAS (cod.jobs imports the chain; this module does not)


class JobFileError(ValueError):
    """A job file that cannot be turned into a cod spec; the message says which field and why."""


@dataclass
class JobDraft:
    """A spec as raw fields before validation: local input paths are still to be added to IPFS."""

    fields: dict[str, Any]
    kind: str  # "cod" or "bacalhau"
    notes: list[str] = field(default_factory=list)  # what was dropped or assumed
    replicas: int | None = None  # the file's `replicas:` (ours) or `Count:` (Bacalhau's)

    def local_inputs(self) -> list[int]:
        """Indexes of inputs whose source is a local path (not ipfs:// nor http(s)://)."""
        inputs = self.fields.get("inputs", [])
        return [i for i, item in enumerate(inputs if isinstance(inputs, list) else [])
                if isinstance(item, dict) and not _is_uri(_str(item.get("source", "")))]


def render_template(text: str, variables: Mapping[str, str]) -> str:
    """Replace `{{.name}}` with its value; an unknown name is an error."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none given"
            raise JobFileError(f"template variable '{name}' has no value (known: {known}): "
                               f"pass --template-vars {name}=…")
        return variables[name]
    return _TEMPLATE_RE.sub(replace, text)


def parse_template_vars(pairs: list[str], env_pattern: str | None = None) -> dict[str, str]:
    """`--template-vars a=1,b=2` (repeatable) and `--template-envs REGEX` (matching env vars)."""
    variables: dict[str, str] = {}
    if env_pattern:
        try:
            regex = re.compile(env_pattern)
        except re.error as exc:
            raise JobFileError(f"--template-envs: not a regular expression: {exc}") from exc
        variables.update({k: v for k, v in os.environ.items() if regex.fullmatch(k)})
    for pair in pairs:
        for item in pair.split(","):
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise JobFileError(f"--template-vars expects name=value, got {item!r}")
            variables[name.strip()] = value
    return variables


def _loader() -> type[yaml.SafeLoader]:
    """libyaml's parser when PyYAML has it: 30-1000x faster on hostile input ("[" * 6000 takes
    3.5 s in the pure-Python one, 1 ms in libyaml, which also caps nesting); same safe constructor."""
    import yaml

    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader


def parse_job_document(text: str, variables: Mapping[str, str] | None = None) -> JobDraft:
    """Parse a job file's text (JSON or YAML; ours or Bacalhau's) into a draft."""
    text = render_template(text, variables or {})
    if len(text) > MAX_FILE_CHARS:
        raise JobFileError(f"a job file is at most {MAX_FILE_CHARS // 1024} KiB")
    import yaml  # here, not at import: `cod docker run` reads no file

    try:
        document = yaml.load(text, Loader=_loader())  # a safe loader; JSON is YAML
    except yaml.YAMLError as exc:
        raise JobFileError(f"not valid YAML or JSON: {_str(exc)}".splitlines()[0]) from exc
    except RecursionError:
        raise JobFileError(f"not valid YAML or JSON: nested too deeply (at most {MAX_DEPTH} "
                           "levels)") from None
    except Exception as exc:  # PyYAML's constructors raise ValueError (a 4,300+ digit integer,
        # 2020-13-45), AttributeError (`!!timestamp x`), …: all mean the text is not a document
        raise JobFileError(f"not valid YAML or JSON: {type(exc).__name__}: "
                           f"{_str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise JobFileError("a job file must hold a mapping (our spec or a Bacalhau job)")
    _check_bounds(document)
    if "Job" in document and isinstance(document["Job"], dict) and len(document) == 1:
        document = document["Job"]  # the body of Bacalhau's PUT /api/v1/orchestrator/jobs
    if "APIVersion" in document or "Spec" in document:
        raise JobFileError("this is a Bacalhau v0 (APIVersion/Spec) job: cod reads v1 jobs "
                           "(Type, Tasks) — migrate it with Bacalhau's v1 format")
    if any(_str(key)[:1].isupper() for key in document):
        return translate_bacalhau(document)
    fields = dict(document)
    replicas = (_replicas(fields.pop("replicas"), "replicas") if "replicas" in fields
                else None)  # a request option, not part of the spec
    return JobDraft(fields=fields, kind="cod", replicas=replicas)


def finish(draft: JobDraft) -> JobSpec:
    """Validate a draft whose local inputs have been resolved; SpecError names the field."""
    try:
        text = json.dumps(draft.fields)
    except (TypeError, ValueError, RecursionError) as exc:  # dates, !!binary, !!set, 0x… numbers
        raise JobFileError(f"the job holds a value that is not JSON data: {_str(exc)[:200]} "
                           "(quote it as a string)") from None
    return parse_spec(text)


def _check_bounds(document: object) -> None:
    """Refuse a document too large or too deep to translate, before anything walks it."""
    stack: list[tuple[object, int]] = [(document, 0)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise JobFileError(f"a job file holds at most {MAX_NODES} values (YAML aliases "
                               "count at each use)")
        if depth > MAX_DEPTH:
            raise JobFileError(f"a job file is nested at most {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack += [(item, depth + 1) for pair in value.items() for item in pair]
        elif isinstance(value, list | tuple | set):
            stack += [(item, depth + 1) for item in value]


def _is_uri(source: str) -> bool:
    return source.startswith(("ipfs://", "https://", "http://"))


# --------------------------------------------------------------------------------- Bacalhau v1

def translate_bacalhau(job: Mapping[str, Any]) -> JobDraft:
    """Translate a Bacalhau v1 job (`Type: batch`, one task) into cod spec fields."""
    notes: list[str] = []
    _refuse_unknown(job, _JOB_KEYS, "job")
    job_type = _str(job.get("Type", "batch")).lower()
    if job_type != "batch":
        raise JobFileError(f"Type: {_plain(job['Type'])}: cod runs batch jobs only (each job runs "
                           "once, on one node)")
    count = job.get("Count")
    replicas = None if count is None else _replicas(count, "Count")
    if replicas is not None and replicas > 1:
        notes.append(f"Count: {replicas}: {replicas} operators each run the job (replicas = "
                     f"{replicas}); the result a majority commits to settles it")
    if job.get("Constraints"):
        raise JobFileError("Constraints: cod picks nodes by inputs and resources; node "
                           "constraints are not supported (remove them)")
    dropped = sorted(k for k in job if k in _INFO_JOB_KEYS and job[k] not in (None, "", {}, []))
    if dropped:
        notes.append(f"ignored (informational): {', '.join(dropped)}")
    tasks = job.get("Tasks")
    if not isinstance(tasks, list) or len(tasks) != 1 or not isinstance(tasks[0], dict):
        raise JobFileError("Tasks: a cod job has exactly one task")
    task: Mapping[str, Any] = tasks[0]
    _refuse_unknown(task, _TASK_KEYS, "Tasks[0]")
    if task.get("Meta"):
        notes.append("ignored (informational): Tasks[0].Meta")

    fields = _engine(_mapping(task.get("Engine"), "Tasks[0].Engine"))
    env = dict(fields.pop("env", {}))
    for name, value in _mapping(task.get("Env") or {}, "Tasks[0].Env").items():
        env[_str(name)] = _str(value)
    if env:
        fields["env"] = env
    inputs = [_input(item, f"Tasks[0].InputSources[{i}]")
              for i, item in enumerate(_list(task.get("InputSources"), "Tasks[0].InputSources"))]
    if inputs:
        fields["inputs"] = fields.get("inputs", []) + inputs
    if task.get("ResultPaths"):
        fields["outputs"] = [
            {"name": _get(_mapping(item, f"Tasks[0].ResultPaths[{i}]"), "Name",
                          f"Tasks[0].ResultPaths[{i}]"),
             "path": _get(item, "Path", f"Tasks[0].ResultPaths[{i}]")}
            for i, item in enumerate(_list(task["ResultPaths"], "Tasks[0].ResultPaths"))
        ]
    if task.get("Resources"):
        fields["resources"] = _resources(_mapping(task["Resources"], "Tasks[0].Resources"))
    if task.get("Network"):
        fields["network"] = _network(_mapping(task["Network"], "Tasks[0].Network"))
    if task.get("Timeouts"):
        timeout = _timeouts(_mapping(task["Timeouts"], "Tasks[0].Timeouts"), notes)
        if timeout is not None:
            fields["timeout"] = timeout
    publisher = task.get("Publisher")
    if publisher:
        kind = _str(_mapping(publisher, "Tasks[0].Publisher").get("Type", "")).lower()
        if kind in ("local", "noop"):
            notes.append(f"Publisher {_plain(publisher.get('Type'))}: results are published to "
                         "IPFS (fetch them with cod job get)")
        elif kind not in ("ipfs", ""):
            raise JobFileError(f"Tasks[0].Publisher.Type: {_plain(publisher.get('Type'))}: cod "
                               "always publishes results to IPFS (use Type: ipfs or remove "
                               "Publisher)")
    return JobDraft(fields=fields, kind="bacalhau", notes=notes, replicas=replicas)


def _replicas(value: Any, where: str) -> int:
    """A job file's replica count (`replicas:` or Bacalhau's `Count:`): a whole number
    1..MAX_REPLICAS."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPLICAS:
        raise JobFileError(f"{where}: {_show(value)}: the replicas of a job are a whole number "
                           f"1..{MAX_REPLICAS} (operators that each run it)")
    return value


def _engine(engine: Mapping[str, Any]) -> dict[str, Any]:
    kind = _str(engine.get("Type", "")).lower()
    params = _mapping(engine.get("Params") or {}, "Tasks[0].Engine.Params")
    env = _env_list(params.get("EnvironmentVariables") or [])
    where = "Tasks[0].Engine.Params"
    if kind == "docker":
        fields: dict[str, Any] = {
            "engine": "docker",
            "image": _get(params, "Image", "Tasks[0].Engine.Params"),
        }
        entrypoint = [_str(x) for x in _list(params.get("Entrypoint"), f"{where}.Entrypoint")]
        parameters = [_str(x) for x in _list(params.get("Parameters"), f"{where}.Parameters")]
        if entrypoint or parameters:
            fields["entrypoint"] = entrypoint + parameters
        if params.get("WorkingDirectory"):
            fields["workdir"] = _str(params["WorkingDirectory"])
    elif kind == "wasm":
        module = _input(_mapping(params.get("EntryModule"), "Tasks[0].Engine.Params.EntryModule"),
                        "Tasks[0].Engine.Params.EntryModule", need_target=False)
        if params.get("ImportModules"):
            raise JobFileError("Tasks[0].Engine.Params.ImportModules: cod's wasm engine runs one "
                               "module; import modules are not supported")
        entry = params.get("Entrypoint") or "_start"
        if entry != "_start":
            raise JobFileError(f"Tasks[0].Engine.Params.Entrypoint: {_plain(entry)}: cod calls "
                               "the module's _start (WASI command) only")
        fields = {"engine": "wasm", "image": module["source"]}
        parameters = [_str(x) for x in _list(params.get("Parameters"), f"{where}.Parameters")]
        if parameters:
            fields["entrypoint"] = parameters
    else:
        raise JobFileError(f"Tasks[0].Engine.Type: {_show(engine.get('Type'))}: cod runs docker "
                           "or wasm")
    if env:
        fields["env"] = env
    return fields


def _input(item: Any, where: str, need_target: bool = True) -> dict[str, str]:
    item = _mapping(item, where)
    source = _mapping(item.get("Source"), f"{where}.Source")
    kind = _str(source.get("Type", ""))
    params = _mapping(source.get("Params") or {}, f"{where}.Source.Params")
    if kind.lower() == "ipfs":
        uri = f"ipfs://{_str(_get(params, 'CID', f'{where}.Source.Params'))}"
        if params.get("Path"):
            uri += "/" + _str(params["Path"]).lstrip("/")
    elif kind.lower() == "urldownload":
        uri = _str(_get(params, "URL", f"{where}.Source.Params"))
    else:
        raise JobFileError(f"{where}.Source.Type: {_show(kind)}: cod fetches ipfs and "
                           "urlDownload inputs (add local data to IPFS and use its CID)")
    target = item.get("Target")
    if need_target and not target:
        raise JobFileError(f"{where}.Target is required (where to mount the input)")
    return {"source": uri, "target": _str(target or "/")}


def _resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if resources.get("CPU") not in (None, ""):
        text = _str(resources["CPU"]).strip()
        try:
            out["cpu"] = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise JobFileError(f"Tasks[0].Resources.CPU: {_show(text)} is not a CPU amount "
                               "(e.g. 0.5, 500m, 2)") from None
    for key in ("Memory", "Disk"):
        if resources.get(key) not in (None, ""):
            out[key.lower()] = _str(resources[key]).replace(" ", "")
    if resources.get("GPU") not in (None, ""):
        try:
            out["gpu"] = int(_str(resources["GPU"]))
        except ValueError:
            raise JobFileError(f"Tasks[0].Resources.GPU: {_show(resources['GPU'])} is not a "
                               "whole number") from None
    unknown = {_str(key) for key in resources} - {"CPU", "Memory", "Disk", "GPU"}
    if unknown:
        raise JobFileError(f"Tasks[0].Resources: unsupported {', '.join(sorted(unknown))}")
    return out


def _network(network: Mapping[str, Any]) -> str:
    kind = _str(network.get("Type", "None")).lower()
    if network.get("Domains"):
        raise JobFileError("Tasks[0].Network.Domains: cod has no per-domain network filter; "
                           "use Type: Full or None")
    if kind not in ("none", "full"):
        raise JobFileError(f"Tasks[0].Network.Type: {_plain(network.get('Type'))}: cod supports "
                           "None and Full")
    return kind


def _timeouts(timeouts: Mapping[str, Any], notes: list[str]) -> int | None:
    value = timeouts.get("ExecutionTimeout") or timeouts.get("TotalTimeout")
    if timeouts.get("QueueTimeout"):
        notes.append("ignored: Timeouts.QueueTimeout (the on-chain deadline bounds queueing)")
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: .inf
        raise JobFileError(f"Tasks[0].Timeouts: {_show(value)} is not a number of "
                           "seconds") from None


def _env_list(items: Any) -> dict[str, str]:
    if isinstance(items, dict):
        return {_str(k): _str(v) for k, v in items.items()}
    env = {}
    for item in _list(items, "EnvironmentVariables"):
        name, sep, value = _str(item).partition("=")
        if not sep:
            raise JobFileError(f"EnvironmentVariables: {_show(item)} is not NAME=value")
        env[name] = value
    return env


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise JobFileError(f"{where} must be a mapping")
    return value


def _list(value: Any, where: str) -> list[Any]:
    """A list field: absent is empty, anything else than a list is an error naming the field."""
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise JobFileError(f"{where} must be a list")
    return value


def _str(value: Any) -> str:
    """`str` of a parsed value; a YAML number too long to print (0x… beyond 4,300 digits) is
    named instead of raising."""
    try:
        return str(value)
    except ValueError:
        return "<a number too long to print>"


def _plain(value: Any) -> str:
    """A parsed value in a message as written (no quotes), cut to 80 characters."""
    text = _str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _show(value: Any) -> str:
    """A parsed value quoted in a message: its repr, cut to 80 characters."""
    try:
        text = repr(value)
    except ValueError:
        text = "<a number too long to print>"
    return text if len(text) <= 80 else text[:77] + "..."


def _get(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if mapping.get(key) in (None, ""):
        raise JobFileError(f"{where}.{key} is required")
    return mapping[key]


def _refuse_unknown(mapping: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted({_str(key) for key in mapping} - known)
    if unknown:
        raise JobFileError(f"{where}: unknown field(s) {', '.join(unknown)} "
                           "(not part of a Bacalhau v1 job, or not supported by cod)")


__all__ = ["JobDraft", "JobFileError", "SpecError", "finish", "parse_job_document",
           "parse_template_vars", "render_template", "translate_bacalhau"]
