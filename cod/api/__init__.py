"""The REST API for frontends that show jobs to their users (`cod api`). Read-only.

`GET /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/logs`, `GET /nodes`, `GET /healthz`, `GET /metrics`;
OpenAPI at `/openapi.json`, interactive docs at `/docs`. The same models as `cod job … --output
json` (`cod.views`), so a script and a frontend see the same fields.

Open to anyone, so bounded: `/jobs` pages come from the ledger's index (or bounded log windows
without one), `follow` waits on the event loop for at most `COD_API_FOLLOW_MAX_S` with at most
`COD_API_MAX_FOLLOWERS` at once, and every error text passes through `redact` (no credential of a
configured URL ever reaches a response).

Layout: `app` (the factory), `config` (settings), `deps` (what the routes get by dependency
injection), `models` (bodies of their own), and one router per resource: `jobs`, `logs`, `nodes`,
`health` (`/healthz`, `/metrics`).
"""

from cod.api.app import create_app
from cod.api.config import ApiConfig, ApiSettings
from cod.api.models import Check, Health, Problem

__all__ = ["ApiConfig", "ApiSettings", "Check", "Health", "Problem", "create_app"]
