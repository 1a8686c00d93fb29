"""`GET /jobs/{id}/logs`: a job's stdout or stderr from its result; `follow=true` waits for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import httpx
from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from bridge.chain import JobStatus
from cod.api.deps import Clean, Config, FollowerCount, Reader, guarded
from cod.api.jobs import JobId
from cod.api.models import errors
from cod.results import stream_log

router = APIRouter()


@router.get("/jobs/{job_id}/logs", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}},
                             "description": "The log, streamed as it is read from IPFS"},
                       **errors(404, 409, 503)},
            summary="A job's stdout or stderr (from its result; follow=true waits for it)")
async def get_logs(
    job_id: JobId,
    reader: Reader,
    clean: Clean,
    config: Config,
    followers: FollowerCount,
    stream: Literal["stdout", "stderr"] = "stdout",
    follow: bool = False,
    timeout: Annotated[float, Query(ge=0, le=3600, description=(
        "Seconds follow waits (at most the server's COD_API_FOLLOW_MAX_S, 300 by default)"))
                       ] = 300,
) -> StreamingResponse:
    progress = await run_in_threadpool(guarded, clean, lambda: reader().progress(job_id))
    if progress.done and progress.job.status != JobStatus.COMPLETED:
        raise HTTPException(409, f"job {job_id} {progress.job.status.name.lower()} "
                            f"without a result: it has no logs ({progress.detail})")
    if not progress.done and not follow:
        raise HTTPException(409, f"job {job_id} is still {progress.stage}: logs are "
                            "published with its result (follow=true waits for them)")
    waiting = not progress.done
    if waiting and followers.waiting >= config.max_followers:
        raise HTTPException(503, f"{config.max_followers} follow requests are waiting already: "
                            "try again later", headers={"Retry-After": "10"})
    wait_s = min(timeout, config.follow_max_s)
    ipfs_api = config.settings.ipfs_api
    followers.waiting += waiting

    async def body() -> AsyncIterator[bytes]:
        """Waits on the event loop (no thread is held while the job runs), then streams."""
        try:
            current = progress
            deadline = time.monotonic() + wait_s
            while not current.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    yield f"cod: job {job_id} still {current.stage} after {wait_s:.0f} s\n".encode()
                    return
                await asyncio.sleep(min(1.0, left))
                try:
                    current = await run_in_threadpool(reader().progress, job_id)
                except Exception as exc:  # the status line is sent: say it inline
                    yield clean(f"cod: chain unreachable: {exc}\n").encode()
                    return
            if current.job.status != JobStatus.COMPLETED or current.result_cid is None:
                yield f"cod: job {job_id} {current.job.status.name.lower()}\n".encode()
                return
            chunks = stream_log(ipfs_api, current.result_cid, stream)
            try:
                while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
                    yield chunk
            except httpx.TransportError as exc:
                yield clean(f"cod: IPFS unreachable at {ipfs_api}: {exc}\n").encode()
        finally:
            followers.waiting -= waiting

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")
