"""Job files for `cod job run`: our spec as JSON or YAML, or a Bacalhau v1 job YAML translated.

A Bacalhau job is translated field by field where the concept maps (engine, inputs, result paths,
resources, network, timeouts); anything that would change what runs, or where, without cod being
able to honour it is refused with a message naming the field. Purely informational fields (name,
labels, meta) are dropped with a note.

Template variables work like Bacalhau's `--template-vars`: `{{.name}}` in the file's text is
replaced before parsing; an unknown name is an error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from executor.spec import JobSpec, SpecError, parse_spec

_TEMPLATE_RE = re.compile(r"\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")
_JOB_KEYS = {"Name", "Namespace", "Type", "Priority", "Count", "Constraints", "Meta", "Labels",
             "Tasks", "ID", "Version", "Revision", "CreateTime", "ModifyTime", "State"}
_INFO_JOB_KEYS = {"Name", "Namespace", "Priority", "Meta", "Labels", "ID", "Version", "Revision",
                  "CreateTime", "ModifyTime", "State"}
_TASK_KEYS = {"Name", "Engine", "Publisher", "Env", "Meta", "InputSources", "ResultPaths",
              "Resources", "Network", "Timeouts"}


class JobFileError(ValueError):
    """A job file that cannot be turned into a cod spec; the message says which field and why."""


@dataclass
class JobDraft:
    """A spec as raw fields before validation: local input paths are still to be added to IPFS."""

    fields: dict[str, Any]
    kind: str  # "cod" or "bacalhau"
    notes: list[str] = field(default_factory=list)  # what was dropped or assumed

    def local_inputs(self) -> list[int]:
        """Indexes of inputs whose source is a local path (not ipfs:// nor http(s)://)."""
        return [i for i, item in enumerate(self.fields.get("inputs", []))
                if isinstance(item, dict) and not _is_uri(str(item.get("source", "")))]


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


def parse_job_document(text: str, variables: Mapping[str, str] | None = None) -> JobDraft:
    """Parse a job file's text (JSON or YAML; ours or Bacalhau's) into a draft."""
    text = render_template(text, variables or {})
    try:
        document = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise JobFileError(f"not valid YAML or JSON: {exc}".splitlines()[0]) from exc
    if not isinstance(document, dict):
        raise JobFileError("a job file must hold a mapping (our spec or a Bacalhau job)")
    if "Job" in document and isinstance(document["Job"], dict) and len(document) == 1:
        document = document["Job"]  # the body of Bacalhau's PUT /api/v1/orchestrator/jobs
    if "APIVersion" in document or "Spec" in document:
        raise JobFileError("this is a Bacalhau v0 (APIVersion/Spec) job: cod reads v1 jobs "
                           "(Type, Tasks) — migrate it with Bacalhau's v1 format")
    if any(key[:1].isupper() for key in document):
        return translate_bacalhau(document)
    return JobDraft(fields=document, kind="cod")


def finish(draft: JobDraft) -> JobSpec:
    """Validate a draft whose local inputs have been resolved; SpecError names the field."""
    return parse_spec(json.dumps(draft.fields))


def _is_uri(source: str) -> bool:
    return source.startswith(("ipfs://", "https://", "http://"))


# --------------------------------------------------------------------------------- Bacalhau v1

def translate_bacalhau(job: Mapping[str, Any]) -> JobDraft:
    """Translate a Bacalhau v1 job (`Type: batch`, one task) into cod spec fields."""
    notes: list[str] = []
    _refuse_unknown(job, _JOB_KEYS, "job")
    job_type = str(job.get("Type", "batch")).lower()
    if job_type != "batch":
        raise JobFileError(f"Type: {job['Type']}: cod runs batch jobs only (each job runs once, "
                           "on one node)")
    count = job.get("Count", 1)
    if count not in (1, None):
        raise JobFileError(f"Count: {count}: a cod job runs once; request {count} jobs instead")
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
        env[str(name)] = str(value)
    if env:
        fields["env"] = env
    inputs = [_input(item, f"Tasks[0].InputSources[{i}]")
              for i, item in enumerate(task.get("InputSources") or [])]
    if inputs:
        fields["inputs"] = fields.get("inputs", []) + inputs
    if task.get("ResultPaths"):
        fields["outputs"] = [
            {"name": _get(item, "Name", f"Tasks[0].ResultPaths[{i}]"),
             "path": _get(item, "Path", f"Tasks[0].ResultPaths[{i}]")}
            for i, item in enumerate(task["ResultPaths"])
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
        kind = str(_mapping(publisher, "Tasks[0].Publisher").get("Type", "")).lower()
        if kind in ("local", "noop"):
            notes.append(f"Publisher {publisher.get('Type')}: results are published to IPFS "
                         "(fetch them with cod job get)")
        elif kind not in ("ipfs", ""):
            raise JobFileError(f"Tasks[0].Publisher.Type: {publisher.get('Type')}: cod always "
                               "publishes results to IPFS (use Type: ipfs or remove Publisher)")
    return JobDraft(fields=fields, kind="bacalhau", notes=notes)


def _engine(engine: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(engine.get("Type", "")).lower()
    params = _mapping(engine.get("Params") or {}, "Tasks[0].Engine.Params")
    env = _env_list(params.get("EnvironmentVariables") or [])
    if kind == "docker":
        fields: dict[str, Any] = {
            "engine": "docker",
            "image": _get(params, "Image", "Tasks[0].Engine.Params"),
        }
        entrypoint = [str(x) for x in params.get("Entrypoint") or []]
        parameters = [str(x) for x in params.get("Parameters") or []]
        if entrypoint or parameters:
            fields["entrypoint"] = entrypoint + parameters
        if params.get("WorkingDirectory"):
            fields["workdir"] = str(params["WorkingDirectory"])
    elif kind == "wasm":
        module = _input(_mapping(params.get("EntryModule"), "Tasks[0].Engine.Params.EntryModule"),
                        "Tasks[0].Engine.Params.EntryModule", need_target=False)
        if params.get("ImportModules"):
            raise JobFileError("Tasks[0].Engine.Params.ImportModules: cod's wasm engine runs one "
                               "module; import modules are not supported")
        entry = params.get("Entrypoint") or "_start"
        if entry != "_start":
            raise JobFileError(f"Tasks[0].Engine.Params.Entrypoint: {entry}: cod calls the "
                               "module's _start (WASI command) only")
        fields = {"engine": "wasm", "image": module["source"]}
        parameters = [str(x) for x in params.get("Parameters") or []]
        if parameters:
            fields["entrypoint"] = parameters
    else:
        raise JobFileError(f"Tasks[0].Engine.Type: {engine.get('Type')!r}: cod runs docker or wasm")
    if env:
        fields["env"] = env
    return fields


def _input(item: Any, where: str, need_target: bool = True) -> dict[str, str]:
    item = _mapping(item, where)
    source = _mapping(item.get("Source"), f"{where}.Source")
    kind = str(source.get("Type", ""))
    params = _mapping(source.get("Params") or {}, f"{where}.Source.Params")
    if kind.lower() == "ipfs":
        uri = f"ipfs://{_get(params, 'CID', f'{where}.Source.Params')}"
        if params.get("Path"):
            uri += "/" + str(params["Path"]).lstrip("/")
    elif kind.lower() == "urldownload":
        uri = str(_get(params, "URL", f"{where}.Source.Params"))
    else:
        raise JobFileError(f"{where}.Source.Type: {kind!r}: cod fetches ipfs and urlDownload "
                           "inputs (add local data to IPFS and use its CID)")
    target = item.get("Target")
    if need_target and not target:
        raise JobFileError(f"{where}.Target is required (where to mount the input)")
    return {"source": uri, "target": str(target or "/")}


def _resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if resources.get("CPU") not in (None, ""):
        text = str(resources["CPU"]).strip()
        try:
            out["cpu"] = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise JobFileError(f"Tasks[0].Resources.CPU: {text!r} is not a CPU amount "
                               "(e.g. 0.5, 500m, 2)") from None
    for key in ("Memory", "Disk"):
        if resources.get(key) not in (None, ""):
            out[key.lower()] = str(resources[key]).replace(" ", "")
    if resources.get("GPU") not in (None, ""):
        try:
            out["gpu"] = int(str(resources["GPU"]))
        except ValueError:
            raise JobFileError(f"Tasks[0].Resources.GPU: {resources['GPU']!r} is not a "
                               "whole number") from None
    unknown = set(resources) - {"CPU", "Memory", "Disk", "GPU"}
    if unknown:
        raise JobFileError(f"Tasks[0].Resources: unsupported {', '.join(sorted(unknown))}")
    return out


def _network(network: Mapping[str, Any]) -> str:
    kind = str(network.get("Type", "None")).lower()
    if network.get("Domains"):
        raise JobFileError("Tasks[0].Network.Domains: cod has no per-domain network filter; "
                           "use Type: Full or None")
    if kind not in ("none", "full"):
        raise JobFileError(f"Tasks[0].Network.Type: {network.get('Type')}: cod supports None "
                           "and Full")
    return kind


def _timeouts(timeouts: Mapping[str, Any], notes: list[str]) -> int | None:
    value = timeouts.get("ExecutionTimeout") or timeouts.get("TotalTimeout")
    if timeouts.get("QueueTimeout"):
        notes.append("ignored: Timeouts.QueueTimeout (the on-chain deadline bounds queueing)")
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise JobFileError(f"Tasks[0].Timeouts: {value!r} is not a number of seconds") from None


def _env_list(items: Any) -> dict[str, str]:
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    env = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep:
            raise JobFileError(f"EnvironmentVariables: {item!r} is not NAME=value")
        env[name] = value
    return env


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise JobFileError(f"{where} must be a mapping")
    return value


def _get(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if mapping.get(key) in (None, ""):
        raise JobFileError(f"{where}.{key} is required")
    return mapping[key]


def _refuse_unknown(mapping: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise JobFileError(f"{where}: unknown field(s) {', '.join(unknown)} "
                           "(not part of a Bacalhau v1 job, or not supported by cod)")


__all__ = ["JobDraft", "JobFileError", "SpecError", "finish", "parse_job_document",
           "parse_template_vars", "render_template", "translate_bacalhau"]
