"""Response bodies of the API's own (the job and node views are `cod.views`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class Problem(BaseModel):
    detail: str


class Check(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"]
    checks: dict[str, Check]


_ERRORS = {400: "Invalid parameters", 404: "No such job", 409: "The job has no logs (yet)",
           503: "A service the API reads from is unreachable"}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route for these error statuses (each a `Problem`)."""
    return {code: {"model": Problem, "description": _ERRORS[code]} for code in codes}
