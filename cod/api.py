"""The REST API for frontends that show jobs to their users (`cod api`). Read-only.

`GET /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/logs`, `GET /nodes`, `GET /healthz`, `GET /metrics`;
OpenAPI at `/openapi.json`, interactive docs at `/docs`. The same models as `cod job … --output
json` (`cod.views`), so a script and a frontend see the same fields.

Open to anyone, so bounded: `/jobs` pages come from the ledger's index (or bounded log windows
without one), `follow` waits on the event loop for at most `COD_API_FOLLOW_MAX_S` with at most
`COD_API_MAX_FOLLOWERS` at once, and every error text passes through `redact` (no credential of a
configured URL ever reaches a response).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, FiniteFloat
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from bridge.chain import ChainError, JobStatus
from bridge.config import BridgeSettings
from bridge.logscan import DEFAULT_SCAN_BLOCKS
from bridge.redact import redact
from cod.jobs import NoSuchJob
from cod.nodes import BrokerUnavailable, check_broker, list_nodes
from cod.queries import JobReader, open_ledger
from cod.results import stream_log
from cod.views import JobDetail, JobPage, Links, NodeView
from protocol.ipfs import IpfsError, KuboClient

JobId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="The on-chain job id.")]


class ApiSettings(BridgeSettings):
    ipfs_gateway: str = "http://127.0.0.1:8080"  # where `links` point (COD_IPFS_GATEWAY)
    api_follow_max_s: float = 300.0  # longest `follow=true` wait; a longer `timeout` is cut to it
    api_max_followers: int = 64  # `follow=true` requests waiting at once; more get 503
    api_scan_blocks: int = DEFAULT_SCAN_BLOCKS  # without a ledger: blocks one request may scan


class Problem(BaseModel):
    detail: str


class Check(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"]
    checks: dict[str, Check]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Invalid parameters", 404: "No such job", 409: "The job has no logs (yet)",
            503: "A service the API reads from is unreachable"}
    return {code: {"model": Problem, "description": text[code]} for code in codes}


def create_app(settings: BridgeSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    defaults = ApiSettings()
    gateway = str(getattr(settings, "ipfs_gateway", defaults.ipfs_gateway)).rstrip("/")
    follow_max = float(getattr(settings, "api_follow_max_s", defaults.api_follow_max_s))
    max_followers = int(getattr(settings, "api_max_followers", defaults.api_max_followers))
    scan_blocks = int(getattr(settings, "api_scan_blocks", defaults.api_scan_blocks))
    secret_urls = (settings.rpc_url, settings.broker_url, settings.ledger_url, settings.ipfs_api,
                   gateway)

    def clean(text: str) -> str:
        return redact(text, *secret_urls)

    app = FastAPI(title="cod API", version="1",
                  description="Jobs of a cod JobManager: on-chain state merged with the "
                              "bridge's timeline, logs and results from IPFS, compute nodes.")
    lock = threading.Lock()
    cache: dict[str, JobReader] = {}
    followers = [0]  # `follow` requests waiting now (one event loop: no lock needed)

    @app.exception_handler(StarletteHTTPException)
    async def problem(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Every error body, whoever raised it, without the credentials of configured URLs."""
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": clean(detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    def reader() -> JobReader:
        with lock:
            if "reader" not in cache:
                try:
                    cache["reader"] = JobReader(settings, scan_blocks=scan_blocks)
                except ChainError as exc:
                    raise HTTPException(503, clean(str(exc))) from None
            return cache["reader"]

    def guarded(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except NoSuchJob as exc:
            raise HTTPException(404, clean(str(exc))) from None
        except ValueError as exc:
            raise HTTPException(400, clean(str(exc))) from None
        except (ChainError, ConnectionError, OSError) as exc:
            raise HTTPException(503, clean(f"chain unreachable: {exc}")) from None

    @app.get("/jobs", response_model=JobPage, responses=_errors(400, 503),
             summary="List jobs, newest first")
    def list_jobs(
        status: Literal["requested", "completed", "failed", "cancelled"] | None = None,
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
            since_ts: float | None = (since if since.tzinfo else since.replace(tzinfo=UTC)
                                      ).timestamp()
        else:
            since_ts = since
        page: JobPage = guarded(lambda: reader().list(status, requester, since_ts, limit, offset,
                                                      order == "oldest", cursor or None))
        return page

    @app.get("/jobs/{job_id}", response_model=JobDetail, responses=_errors(404, 503),
             summary="A job: state, spec, timeline, result and links")
    def get_job(job_id: JobId) -> JobDetail:
        detail: JobDetail = guarded(lambda: reader().describe(job_id))
        if detail.result_cid:
            cid = detail.result_cid
            outputs = [str(o.get("name")) for o in (detail.spec or {}).get("outputs", [])
                       if isinstance(o, dict)] or ["outputs"]
            links = Links(result=f"ipfs://{cid}", gateway=f"{gateway}/ipfs/{cid}/",
                          stdout=f"/jobs/{job_id}/logs?stream=stdout",
                          stderr=f"/jobs/{job_id}/logs?stream=stderr",
                          outputs={name: f"{gateway}/ipfs/{cid}/{name}/" for name in outputs})
            detail = detail.model_copy(update={"links": links})
        return detail

    @app.get("/jobs/{job_id}/logs", response_class=StreamingResponse,
             responses={200: {"content": {"text/plain": {}},
                              "description": "The log, streamed as it is read from IPFS"},
                        **_errors(404, 409, 503)},
             summary="A job's stdout or stderr (from its result; follow=true waits for it)")
    async def get_logs(
        job_id: JobId,
        stream: Literal["stdout", "stderr"] = "stdout",
        follow: bool = False,
        timeout: Annotated[float, Query(ge=0, le=3600, description=(
            "Seconds follow waits (at most the server's COD_API_FOLLOW_MAX_S, 300 by default)"))
                           ] = 300,
    ) -> StreamingResponse:
        progress = await run_in_threadpool(guarded, lambda: reader().progress(job_id))
        if progress.done and progress.job.status != JobStatus.COMPLETED:
            raise HTTPException(409, f"job {job_id} {progress.job.status.name.lower()} "
                                f"without a result: it has no logs ({progress.detail})")
        if not progress.done and not follow:
            raise HTTPException(409, f"job {job_id} is still {progress.stage}: logs are "
                                "published with its result (follow=true waits for them)")
        waiting = not progress.done
        if waiting and followers[0] >= max_followers:
            raise HTTPException(503, f"{max_followers} follow requests are waiting already: "
                                "try again later", headers={"Retry-After": "10"})
        wait_s = min(timeout, follow_max)
        followers[0] += waiting

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
                if current.job.status != JobStatus.COMPLETED:
                    yield f"cod: job {job_id} {current.job.status.name.lower()}\n".encode()
                    return
                chunks = stream_log(settings.ipfs_api, current.job.result_cid, stream)
                try:
                    while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
                        yield chunk
                except httpx.TransportError as exc:
                    yield clean(f"cod: IPFS unreachable at {settings.ipfs_api}: {exc}\n").encode()
            finally:
                followers[0] -= waiting

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")

    @app.get("/nodes", response_model=list[NodeView], responses=_errors(503),
             summary="Compute nodes that answer now")
    def get_nodes() -> list[NodeView]:
        try:
            return list_nodes(settings.broker_url)
        except BrokerUnavailable as exc:
            raise HTTPException(503, clean(str(exc))) from None

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}},
             summary="Whether the chain, IPFS, the broker and the ledger are reachable")
    def healthz() -> Any:
        checks = {"chain": _check(lambda: f"block {reader().w3.eth.block_number}", clean),
                  "ipfs": _check(lambda: _ipfs_version(settings.ipfs_api), clean),
                  "broker": _check(lambda: _broker(settings.broker_url), clean),
                  "ledger": _check(lambda: _ledger(settings), clean)}
        down = [name for name, check in checks.items() if not check.ok]
        status: Literal["ok", "degraded", "down"] = (
            "down" if "chain" in down else "degraded" if down else "ok")
        health = Health(status=status, checks=checks)
        if status == "down":
            return JSONResponse(health.model_dump(), status_code=503)
        return health

    @app.get("/metrics", response_class=PlainTextResponse, responses=_errors(503),
             summary="Prometheus metrics: jobs by status, chain head, nodes")
    def metrics() -> str:
        counts: dict[str, int] = guarded(lambda: reader().counts())
        head = guarded(lambda: int(reader().w3.eth.block_number))
        total = guarded(lambda: reader().job_count())
        try:
            nodes: int | None = len(list_nodes(settings.broker_url, timeout_s=0.5))
        except BrokerUnavailable:
            nodes = None
        lines = ["# HELP cod_jobs Jobs of the JobManager by on-chain status.",
                 "# TYPE cod_jobs gauge"]
        lines += [f'cod_jobs{{status="{status}"}} {count}' for status, count in counts.items()]
        lines += ["# HELP cod_jobs_requested_total Jobs ever requested from the JobManager.",
                  "# TYPE cod_jobs_requested_total counter", f"cod_jobs_requested_total {total}"]
        lines += ["# HELP cod_chain_head_block Latest block of the chain.",
                  "# TYPE cod_chain_head_block gauge", f"cod_chain_head_block {head}"]
        if nodes is not None:
            lines += ["# HELP cod_nodes Compute nodes that answered a broadcast.",
                      "# TYPE cod_nodes gauge", f"cod_nodes {nodes}"]
        return "\n".join(lines) + "\n"

    return app


def _check(probe: Callable[[], object], clean: Callable[[str], str]) -> Check:
    try:
        return Check(ok=True, detail=clean(str(probe())))
    except HTTPException as exc:
        return Check(ok=False, detail=clean(str(exc.detail)))
    except Exception as exc:  # a health check reports any failure, whatever its type
        return Check(ok=False, detail=clean(f"{type(exc).__name__}: {exc}"))


def _ipfs_version(api_url: str) -> str:
    kubo = KuboClient(api_url, timeout=3)
    try:
        return f"peer {kubo.id()['ID']}"
    except IpfsError as exc:
        raise RuntimeError(str(exc)) from None
    finally:
        kubo.close()


def _broker(url: str) -> str:
    check_broker(url)
    return "reachable"


def _ledger(settings: BridgeSettings) -> str:
    ledger = open_ledger(settings)
    if ledger is None:
        return "not configured (COD_LEDGER_URL): chain data only"
    ledger.engine.dispose()
    return "reachable"
