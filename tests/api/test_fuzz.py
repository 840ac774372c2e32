"""Schemathesis over the app's own OpenAPI schema, against a live server with real cells.

User endpoints are called with a user's key, admin endpoints with the admin token. Every
schemathesis check runs: never a 5xx, only documented statuses, bodies and headers that match
the schema, invalid input refused, missing auth refused, 405s that list the allowed methods.

Only the rotation of credentials is left out: it replaces the very key and admin token the
fuzzer calls with (tests/api/test_signin.py covers it). DELETE /v1/users/{user_id} only meets
ids it made up (the fixture checks that the fuzzing user survived); DELETE /v1/cell and POST
/v1/cell/restart act on that user's own cell, which the next call recreates."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import Live

pytestmark = pytest.mark.docker

ADMIN_PATHS = r"^/v1/(users|admin)\b"
ROTATIONS = r"^/v1/(me/key|users/\{user_id\}/key|admin/token)$"
# Refusals the schema cannot express: a path that leaves the workspace, a user name the store
# refuses, a timeout above the server's maximum (400); quotas (413, 507). Schema violations
# themselves must be a 422 (negative_data_rejection). 429: restart and delete of the cell are
# churn-limited (a burst of 5), and the fuzzer churns.
ACCEPTABLE = ["2xx", "400", "401", "403", "404", "409", "413", "429", "507"]


@pytest.fixture
def api_schema(server: Live, request: pytest.FixtureRequest) -> Iterator[OpenApiSchema]:
    # schemathesis 4.32 renames the test node through `_nodeid`, which pytest 9.2 no longer has.
    request.node._nodeid = request.node.nodeid
    admin = f"Bearer {server.admin_token}"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        created = http.post("/v1/users", json={"name": "fuzz"}, headers={"Authorization": admin})
        user = f"Bearer {created.json()['api_key']}"
        config = schemathesis.Config.from_dict(
            {
                "base-url": server.url,
                # Not a global `headers`: in the fuzzing phase it overrides the per-operation ones.
                "operations": [
                    {"include-path-regex": ROTATIONS, "enabled": False},
                    {"include-path-regex": ADMIN_PATHS, "headers": {"Authorization": admin}},
                    {"exclude-path-regex": ADMIN_PATHS, "headers": {"Authorization": user}},
                ],
                # Derandomized, no example database; schemathesis sets deadline=None itself.
                "generation": {"max-examples": 20, "deterministic": True, "database": "none"},
                "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTABLE}},
            }
        )
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
        # Else every user endpoint after the deletion was only ever answered with a 401.
        assert http.get("/v1/me", headers={"Authorization": user}).status_code == 200


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_the_api_holds_up_to_fuzzing(case: schemathesis.Case) -> None:
    case.call_and_validate()
