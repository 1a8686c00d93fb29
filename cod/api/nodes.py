"""`GET /nodes`: the compute nodes that answer a broadcast now."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from cod.api.deps import Clean, Settings
from cod.api.models import errors
from cod.nodes import BrokerUnavailable, list_nodes
from cod.views import NodeView

router = APIRouter()


@router.get("/nodes", response_model=list[NodeView], responses=errors(503),
            summary="Compute nodes that answer now")
def get_nodes(settings: Settings, clean: Clean) -> list[NodeView]:
    try:
        return list_nodes(settings.broker_url)
    except BrokerUnavailable as exc:
        raise HTTPException(503, clean(str(exc))) from None
