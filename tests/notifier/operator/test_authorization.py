"""Every route x every scope: 401 without a token, 403 without the scope, otherwise anything but
401/403. The route list comes from ``app.routes``: a new route without an entry here fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from notifier.api.app import create_app

from tests.conftest import TokenFactory

PUBLIC = None
REQUIRED: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/v1/event-types"): PUBLIC,
    ("POST", "/v1/events"): "events:write",
    ("GET", "/v1/events"): "letters:read",
    ("GET", "/v1/events/{event_id}"): "letters:read",
    ("POST", "/v1/events:dry-run"): "letters:read",
    ("GET", "/v1/letters"): "letters:read",
    ("GET", "/v1/letters/{letter_id}"): "letters:read",
    ("POST", "/v1/letters/{letter_id}:cancel"): "letters:write",
    ("POST", "/v1/letters/{letter_id}:resend"): "letters:write",
    ("POST", "/v1/letters:retry"): "letters:write",
    ("POST", "/v1/letters:send"): "letters:write",
    ("POST", "/v1/templates/{letter}:preview"): "letters:read",
    ("GET", "/v1/config/letters"): "letters:read",
    ("GET", "/v1/config/letters/{name}"): "letters:read",
    ("PATCH", "/v1/config/letters/{name}"): "config:write",
    ("GET", "/v1/config/letters/{name}/audit"): "letters:read",
    ("GET", "/v1/config/integrations"): "letters:read",
    ("PUT", "/v1/config/integrations/{name}/switch"): "config:write",
    ("GET", "/v1/config/integrations/{name}/history"): "letters:read",
    ("GET", "/v1/suppressions"): "letters:read",
    ("POST", "/v1/suppressions"): "letters:write",
    ("DELETE", "/v1/suppressions/{suppression_id}"): "letters:write",
    ("GET", "/v1/unsubscribe/{token}"): PUBLIC,  # the signed token is the credential
    ("POST", "/v1/unsubscribe/{token}"): PUBLIC,
}
SCOPES = ("events:write", "letters:read", "letters:write", "config:write", "admin")
PATH_VALUES = {
    "letter_id": "1",
    "event_id": "3f1c5a0e-8d4b-4c36-9a57-0e0d3a8c2b11",
    "letter": "LowBalanceNotice",
    "name": "LowBalanceNotice",
    "token": "1.00000000000000000000000000000000",
    "suppression_id": "1",
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route, through included routers."""
    out: set[tuple[str, str]] = set()
    for route in app.routes:
        candidates = (
            route.effective_candidates() if hasattr(route, "effective_candidates") else [route]
        )
        for c in candidates:
            for method in getattr(c, "methods", None) or ():
                if method != "HEAD":
                    out.add((method, c.path))
    return out


def test_every_route_has_a_matrix_entry() -> None:
    routes = app_routes(create_app())
    assert routes - set(REQUIRED) == set(), "add the new routes to REQUIRED"
    assert set(REQUIRED) - routes == set(), "REQUIRED lists routes that no longer exist"


def expected(required: str | None, scope: str | None) -> str:
    if required is None:
        return "ok"
    if scope is None:
        return "401"
    return "ok" if scope in (required, "admin") else "403"


@pytest.fixture
def gateway() -> Iterator[None]:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="gateway.test").respond(200, json=[])
        router.route(host="upstream.test").respond(404, json={"detail": "not found"})
        yield


async def test_authorization_matrix(
    client: httpx.AsyncClient, make_token: TokenFactory, gateway: None
) -> None:
    tokens = {scope: await make_token(scope, name=f"matrix-{scope}") for scope in SCOPES}
    failures: list[str] = []
    for (method, path), required in sorted(REQUIRED.items()):
        url = path.format(**PATH_VALUES)
        for scope in (*SCOPES, None):
            headers = {"Authorization": f"Bearer {tokens[scope]}"} if scope else {}
            kwargs: dict[str, Any] = {"headers": headers}
            if method in ("POST", "PUT", "PATCH"):
                kwargs["json"] = {}
            r = await client.request(method, url, **kwargs)
            want = expected(required, scope)
            got = r.status_code
            ok = got not in (401, 403) and got < 500 if want == "ok" else str(got) == want
            if not ok:
                failures.append(f"{method} {path} as {scope}: {got}, expected {want}")
    assert failures == []
