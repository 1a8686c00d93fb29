"""The OpenAPI schema, fuzzed by schemathesis against the running API: no server errors, and every
response (status, content type, body) matches what the schema documents.

Schemathesis' pytest plugin does not work with this pytest, so each operation's hypothesis strategy
is driven directly.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case


def test_api_survives_fuzzed_requests(api_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Case) -> None:
            case.call_and_validate(timeout=60)

        check()
