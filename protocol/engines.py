"""The engines a spec may name, keyed by name: `docker`, `wasm`.

Each engine validates its own part of the spec (what `image` means to it, and anything else only
it reads), after the fields every job shares have been validated; the bridge refuses a spec its
engine refuses, before it is dispatched. The executor runs each engine with the implementation
registered under the same name in `executor.engines`.

To add an engine: its validator (a function of the `JobSpec`, raising ValueError with a message
that starts with the field it is about) and one line in `ENGINES` below; on the executor side, one
module in `executor/engines/` and one line in its `ENGINES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocol.sources import validate_source

if TYPE_CHECKING:
    from protocol.spec import JobSpec

EngineValidator = Callable[["JobSpec"], None]
MAX_IMAGE_REFERENCE = 256


def _docker(spec: JobSpec) -> None:
    image = spec.image
    if len(image) > MAX_IMAGE_REFERENCE or "://" in image or image.startswith("data:"):
        raise ValueError(
            f"image: a docker image reference of at most {MAX_IMAGE_REFERENCE} characters")


def _wasm(spec: JobSpec) -> None:
    try:
        validate_source(spec.image)  # the module is given as a source, like an input
    except ValueError as exc:
        raise ValueError(f"image: the wasm module: {exc}") from None


ENGINES: dict[str, EngineValidator] = {
    "docker": _docker,
    "wasm": _wasm,
}


def validate_engine_name(value: object) -> str:
    """`value` if an engine of that name is registered; ValueError listing them otherwise."""
    if not isinstance(value, str) or value not in ENGINES:
        # worded as pydantic words the error of the `Literal` this replaced
        names = [repr(name) for name in ENGINES]
        known = " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]
        raise ValueError(f"Input should be {known}")
    return value
