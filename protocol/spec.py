"""The job spec: the JSON text a requester passes to `requestJob`.

One pydantic model, imported by the bridge (to reject a bad spec before it is dispatched) and by
the executor (to run it). Concepts mirror Bacalhau's Task: engine, inputs, result paths, resources,
network, timeout.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol.engines import ENGINES, validate_engine_name
from protocol.outcome import MAX_RESULT_BYTES  # the small result, delivered on-chain
from protocol.sources import MAX_INLINE_BYTES, SCHEMES, is_cid, validate_source

__all__ = ["MAX_INLINE_BYTES", "MAX_RESULT_BYTES", "InputSource", "JobSpec", "OutputPath",
           "Resources", "SpecError", "input_roots", "is_cid", "parse_size", "parse_spec"]

MAX_TIMEOUT_S = 24 * 3600
DEFAULT_QUEUE_TIMEOUT_S = 600
MAX_SPEC_CHARS = 256 * 1024  # on-chain specs are at most 8 KiB; job files from the CLI may be larger
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SpecError(ValueError):
    """A spec that cannot be run; the message names the offending field."""


def parse_size(text: str | int) -> int:
    """Parse '512Mi', '1GB', '100M' or a plain byte count into bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 512Mi, 2G, 1048576)")
    number, unit = match.groups()
    unit = (unit or "").upper().removesuffix("B")
    return int(float(number) * _UNITS[unit])


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "/../" in f"{value}/" or "\x00" in value:
        raise ValueError(f"must be an absolute path without '..': {value!r}")
    return value.rstrip("/") or "/"


def _engine_schema(schema: dict[str, Any]) -> None:
    schema["enum"] = list(ENGINES)  # the engines registered when the schema is generated


def _source_schema(schema: dict[str, Any]) -> None:
    schemes = (f"{name} ({', '.join(s.prefixes)})" for name, s in SCHEMES.items())
    schema["description"] = f"a source of a registered scheme: {'; '.join(schemes)}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSource(_Strict):
    """Data mounted read-only into the job, as a source of one of the schemes of
    `protocol.sources`: `ipfs://CID[/path]`, an http(s) URL, or small inline data as a `data:`
    URL (RFC 2397, e.g. `data:,hello` or `data:;base64,aGVsbG8=`)."""

    source: str = Field(json_schema_extra=_source_schema)
    target: str

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return validate_source(value)  # the scheme registry: each scheme checks its own sources

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return _absolute_path(value)


class OutputPath(_Strict):
    """A writable directory in the job whose content is published under the output's name."""

    name: str
    path: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value) or value in {"stdout", "stderr", "exitCode"}:
            raise ValueError(f"invalid output name {value!r}")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _absolute_path(value)


class Resources(_Strict):
    """What the job may use. Sizes accept Kubernetes/Bacalhau notation (512Mi, 1G)."""

    cpu: Annotated[float, Field(gt=0, le=256)] = 1.0
    memory: str = "512Mi"
    disk: str | None = None
    gpu: Annotated[int, Field(ge=0, le=16)] = 0

    @field_validator("memory", "disk")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and parse_size(value) < 4 * 1024 * 1024:
            raise ValueError(f"{value!r} is below the 4Mi minimum")
        return value

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)

    @property
    def disk_bytes(self) -> int | None:
        return None if self.disk is None else parse_size(self.disk)


class JobSpec(_Strict):
    """A job: what to run, over which data, with which limits."""

    # A registered engine (`protocol.engines`), which validates its own part of the spec.
    engine: str = Field(default="docker", json_schema_extra=_engine_schema)
    # docker: an image reference; wasm: the module, as an input source (ipfs://, https://, data:)
    image: Annotated[str, Field(min_length=1, max_length=MAX_INLINE_BYTES * 4 // 3 + 256)]
    entrypoint: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    inputs: list[InputSource] = Field(default_factory=list)
    outputs: list[OutputPath] = Field(
        default_factory=lambda: [OutputPath(name="outputs", path="/outputs")]
    )
    resources: Resources = Field(default_factory=Resources)
    network: Literal["none", "full"] = "none"
    timeout: Annotated[int, Field(gt=0, le=MAX_TIMEOUT_S)] = 600
    # How long the job may wait for a node able to run it before it is failed.
    queue_timeout: Annotated[int, Field(gt=0, le=MAX_TIMEOUT_S)] = DEFAULT_QUEUE_TIMEOUT_S
    # False: always run, even if an identical job already has a result (see executor.cache).
    cache: bool = True
    # The small result: a file the job writes inside one of its outputs (e.g. "/outputs/answer"),
    # of at most MAX_RESULT_BYTES, delivered on-chain with the result CID (`onJobResult`'s
    # `result`). Unset: the on-chain result is empty; a named file the job did not write, too.
    result: str | None = None

    @field_validator("engine", mode="before")
    @classmethod
    def _known_engine(cls, value: object) -> str:
        return validate_engine_name(value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"invalid environment variable name {key!r}")
        return value

    @field_validator("outputs")
    @classmethod
    def _unique_outputs(cls, value: list[OutputPath]) -> list[OutputPath]:
        names = [o.name for o in value]
        if len(set(names)) != len(names):
            raise ValueError("output names must be unique")
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_path(value)

    @field_validator("result")
    @classmethod
    def _result_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if posixpath.normpath(value) != value:
            raise ValueError(f"must be a normalised absolute path (no '//', '.', '..'): {value!r}")
        return _absolute_path(value)

    @model_validator(mode="after")
    def _result_in_an_output(self) -> JobSpec:
        if self.result is not None and self.result_file() is None:
            outputs = ", ".join(o.path for o in self.outputs) or "none"
            raise ValueError(f"result: {self.result!r} is not a file inside an output "
                             f"(outputs: {outputs})")
        return self

    def result_file(self) -> tuple[str, str] | None:
        """The small result's place in the result directory: (output name, path inside it), by
        the deepest output that holds `result` (a nested mount shadows its parent); None if the
        spec names no result, or one outside every output."""
        if self.result is None:
            return None
        holders = [o for o in self.outputs
                   if self.result.startswith(o.path.rstrip("/") + "/") and self.result != o.path]
        if not holders:
            return None
        output = max(holders, key=lambda o: len(o.path))
        return output.name, self.result[len(output.path.rstrip("/")) + 1:]

    @model_validator(mode="after")
    def _image_for_engine(self) -> JobSpec:
        ENGINES[self.engine](self)  # the engine's own part of the spec (e.g. what `image` is)
        return self

    def to_json(self) -> str:
        """Compact JSON, the form passed on-chain."""
        return self.model_dump_json(exclude_defaults=True)


def parse_spec(text: str) -> JobSpec:
    """Parse and validate a spec string, raising SpecError that names the offending field.

    Total: whatever the text (a stranger wrote it), the answer is a JobSpec or a SpecError."""
    try:
        return _parse_spec(text)
    except SpecError:
        raise
    except Exception as exc:  # RecursionError, MemoryError-free ValueErrors, anything pydantic hits
        raise SpecError(f"invalid spec: {type(exc).__name__}: {str(exc)[:200]}") from None


def _parse_spec(text: str) -> JobSpec:
    if not isinstance(text, str):
        raise SpecError("invalid spec: expected text")
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"invalid spec: longer than {MAX_SPEC_CHARS} characters")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"invalid spec: not valid JSON ({exc.msg} at position {exc.pos})") from exc
    except RecursionError:
        raise SpecError("invalid spec: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise SpecError(f"invalid spec: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise SpecError("invalid spec: expected a JSON object")
    try:  # `\ud800` escapes give lone surrogates, which no later encoder accepts
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError("invalid spec: contains a lone UTF-16 surrogate (\\uD800-\\uDFFF)") from None
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "spec"
        message = first["msg"].removeprefix("Value error, ")
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SpecError(f"invalid spec: field '{field}': {message}{more}") from exc


_ROOT = re.compile(r"^ipfs://([A-Za-z0-9]+)")


def input_roots(spec: JobSpec) -> list[str]:
    """The root CIDs of a job's IPFS inputs (`ipfs://CID/sub/path` counts as CID)."""
    roots = []
    for source in spec.inputs:
        match = _ROOT.match(source.source)
        if match:
            roots.append(match.group(1))
    return roots
