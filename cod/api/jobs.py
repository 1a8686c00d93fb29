"""`GET /jobs` (a page of jobs) and `GET /jobs/{id}` (one job, with links to its result)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import FiniteFloat

from cod.api.deps import Clean, Config, Reader, guarded
from cod.api.models import errors
from cod.views import JobDetail, JobPage, Links, Status

JobId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="The on-chain job id.")]

router = APIRouter()


@router.get("/jobs", response_model=JobPage, responses=errors(400, 503),
            summary="List jobs, newest first")
def list_jobs(
    reader: Reader,
    clean: Clean,
    status: Status | None = None,
    requester: Annotated[str | None, Query(pattern=r"^0x[0-9a-fA-F]{40}$")] = None,
    since: Annotated[datetime | FiniteFloat | None, Query(
        description="Only jobs requested at or after this time: ISO 8601 (UTC unless it "
                    "has an offset) or Unix seconds")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
    order: Literal["newest", "oldest"] = "newest",
    cursor: Annotated[str | None, Query(
        pattern=r"^\d{0,20}(@\d{1,20})?$", max_length=42,
        description="The `nextCursor` of the previous page: the next page without an offset")
    ] = None,
) -> JobPage:
    if isinstance(since, datetime):
        since_ts: float | None = (since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp()
    else:
        since_ts = since
    return guarded(clean, lambda: reader().list(status, requester, since_ts, limit, offset,
                                                order == "oldest", cursor or None))


@router.get("/jobs/{job_id}", response_model=JobDetail, responses=errors(404, 503),
            summary="A job: state, spec, timeline, result and links")
def get_job(job_id: JobId, reader: Reader, clean: Clean, config: Config) -> JobDetail:
    detail = guarded(clean, lambda: reader().describe(job_id))
    if detail.result_cid:
        cid, gateway = detail.result_cid, config.gateway
        outputs = [str(o.get("name")) for o in (detail.spec or {}).get("outputs", [])
                   if isinstance(o, dict)] or ["outputs"]
        links = Links(result=f"ipfs://{cid}", gateway=f"{gateway}/ipfs/{cid}/",
                      stdout=f"/jobs/{job_id}/logs?stream=stdout",
                      stderr=f"/jobs/{job_id}/logs?stream=stderr",
                      outputs={name: f"{gateway}/ipfs/{cid}/{name}/" for name in outputs})
        detail = detail.model_copy(update={"links": links})
    return detail
