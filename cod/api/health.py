"""`GET /healthz` (are the chain, IPFS, the broker and the ledger reachable) and `GET /metrics`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse

from bridge.config import BridgeSettings
from cod.api.deps import Clean, Kubo, Reader, Settings, guarded
from cod.api.models import Check, Health, errors
from cod.nodes import BrokerUnavailable, check_broker, list_nodes
from cod.queries import open_ledger
from protocol.ipfs import IpfsError, KuboClient

router = APIRouter()


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}},
            summary="Whether the chain, IPFS, the broker and the ledger are reachable")
def healthz(settings: Settings, reader: Reader, kubo: Kubo, clean: Clean) -> Any:
    checks = {"chain": _check(lambda: f"block {reader().w3.eth.block_number}", clean),
              "ipfs": _check(lambda: _ipfs_version(kubo), clean),
              "broker": _check(lambda: _broker(settings.broker_url), clean),
              "ledger": _check(lambda: _ledger(settings), clean)}
    down = [name for name, check in checks.items() if not check.ok]
    status: Literal["ok", "degraded", "down"] = (
        "down" if "chain" in down else "degraded" if down else "ok")
    health = Health(status=status, checks=checks)
    if status == "down":
        return JSONResponse(health.model_dump(), status_code=503)
    return health


@router.get("/metrics", response_class=PlainTextResponse, responses=errors(503),
            summary="Prometheus metrics: jobs by status, chain head, nodes")
def metrics(settings: Settings, reader: Reader, clean: Clean) -> str:
    counts = guarded(clean, lambda: reader().counts())
    head = guarded(clean, lambda: int(reader().w3.eth.block_number))
    total = guarded(clean, lambda: reader().job_count())
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


def _check(probe: Callable[[], object], clean: Callable[[str], str]) -> Check:
    try:
        return Check(ok=True, detail=clean(str(probe())))
    except HTTPException as exc:
        return Check(ok=False, detail=clean(str(exc.detail)))
    except Exception as exc:  # a health check reports any failure, whatever its type
        return Check(ok=False, detail=clean(f"{type(exc).__name__}: {exc}"))


def _ipfs_version(kubo: KuboClient) -> str:
    try:
        return f"peer {kubo.id()['ID']}"
    except IpfsError as exc:
        raise RuntimeError(str(exc)) from None


def _broker(url: str) -> str:
    check_broker(url)
    return "reachable"


def _ledger(settings: BridgeSettings) -> str:
    ledger = open_ledger(settings)
    if ledger is None:
        return "not configured (COD_LEDGER_URL): chain data only"
    ledger.engine.dispose()
    return "reachable"
