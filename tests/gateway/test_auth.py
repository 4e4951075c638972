"""401 without a valid token, 403 without the scope, for every bearer-protected route."""

import httpx
import pytest

from tests.gateway.conftest import GatewayToken, email

MESSAGE = {"json": email(), "headers": {"Idempotency-Key": "k1"}}
ROUTES: list[tuple[str, str, str, dict[str, object]]] = [
    ("POST", "/v1/messages", "messages:write", MESSAGE),
    (
        "POST",
        "/v1/messages:batch",
        "messages:write",
        {"json": {"items": [{"idempotency_key": "k1", "message": email()}]}},
    ),
    ("GET", "/v1/messages/00000000-0000-4000-8000-000000000000", "messages:read", {}),
    ("GET", "/v1/messages", "messages:read", {}),
    ("GET", "/v1/suppressions", "messages:read", {}),
    ("GET", "/v1/status-changes", "messages:read", {}),
    ("DELETE", "/v1/suppressions/1", "admin", {}),
    ("GET", "/v1/providers", "messages:read", {}),
    ("PUT", "/v1/providers/log/switch", "admin", {"json": {"enabled": False}}),
    ("GET", "/v1/providers/log/switch/history", "admin", {}),
    ("POST", "/v1/providers/log:replay", "admin", {}),
]
OTHER_SCOPE = {"messages:write": "messages:read", "messages:read": "messages:write"}


def _request(
    client: httpx.AsyncClient, method: str, path: str, kw: dict[str, object], token: str | None
) -> object:
    headers = dict(kw.get("headers", {}))  # type: ignore[call-overload]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.request(method, path, json=kw.get("json"), headers=headers)


@pytest.mark.parametrize(
    ("method", "path", "scope", "kw"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
class TestAuthMatrix:
    async def test_without_token_is_401(
        self, client: httpx.AsyncClient, method: str, path: str, scope: str, kw: dict[str, object]
    ) -> None:
        r = await _request(client, method, path, kw, None)  # type: ignore[misc]
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"

    async def test_unknown_token_is_401(
        self, client: httpx.AsyncClient, method: str, path: str, scope: str, kw: dict[str, object]
    ) -> None:
        r = await _request(client, method, path, kw, "ntf_unknown")  # type: ignore[misc]
        assert r.status_code == 401

    async def test_token_without_the_scope_is_403(
        self,
        client: httpx.AsyncClient,
        gateway_token: GatewayToken,
        method: str,
        path: str,
        scope: str,
        kw: dict[str, object],
    ) -> None:
        other = OTHER_SCOPE.get(scope, "messages:write")
        headers = await gateway_token(other, *(["messages:read"] if scope == "admin" else []))
        token = headers["Authorization"].removeprefix("Bearer ")
        r = await _request(client, method, path, kw, token)  # type: ignore[misc]
        assert r.status_code == 403
        assert scope in r.json()["detail"]

    async def test_token_with_the_scope_passes(
        self,
        client: httpx.AsyncClient,
        gateway_token: GatewayToken,
        method: str,
        path: str,
        scope: str,
        kw: dict[str, object],
    ) -> None:
        headers = await gateway_token(scope)
        token = headers["Authorization"].removeprefix("Bearer ")
        r = await _request(client, method, path, kw, token)  # type: ignore[misc]
        assert r.status_code not in (401, 403)


async def test_revoked_token_is_401(client: httpx.AsyncClient, database_url: str) -> None:
    from gateway.tokens import create_token, list_tokens, revoke_token

    raw = await create_token(database_url, name="old", scopes=["messages:read"])
    [row] = await list_tokens(database_url)
    assert await revoke_token(database_url, row.id)
    r = await client.get("/v1/messages", headers={"Authorization": f"Bearer {raw}"})
    assert r.status_code == 401


async def test_ops_endpoints_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_metrics_count_sends_per_provider_and_outcome(
    client: httpx.AsyncClient, gateway_token: GatewayToken
) -> None:
    headers = await gateway_token("messages:write")
    await client.post("/v1/messages", json=email(), headers={**headers, "Idempotency-Key": "m1"})
    text = (await client.get("/metrics")).text
    assert 'gateway_sends_total{code="",outcome="accepted",provider="counting"}' in text
    assert 'gateway_provider_call_seconds_count{provider="counting"}' in text
