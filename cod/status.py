"""A job's status as users see it (`cod job list --status`, `GET /jobs?status=`).

Its own module, free of pydantic, so `cod --help` can name the statuses without loading the views.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A job's status as users see it: the chain's (a job the bridge closed shows as cancelled,
    unless the chain says it was completed). `cod job list --status`, `GET /jobs?status=`."""

    REQUESTED = "requested"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUSES: tuple[str, ...] = tuple(Status)
