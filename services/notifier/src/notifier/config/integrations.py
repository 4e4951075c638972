"""Integration switches live in the gateway (one switch per provider, audited there); the
notifier reads and flips them through the gateway API with its own token. The operator's token
name goes into the gateway's audit reason, so the trail says who asked."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from notifier_common.errors import AppError, NotFound
from pydantic import TypeAdapter, ValidationError

from notifier.config.schemas import IntegrationOut, SwitchChangeOut, SwitchIn


class GatewayUnavailable(AppError):
    status_code = 503
    title = "Service Unavailable"


class GatewayRefused(AppError):
    """The gateway is up but refuses the notifier's own token (401/403): a deployment's
    configuration to fix, not an outage to wait out, so 502 and not 503."""

    status_code = 502
    title = "Bad Gateway"


_PROVIDERS = TypeAdapter(list[IntegrationOut])
_HISTORY = TypeAdapter(list[SwitchChangeOut])


class Integrations:
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, token: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = await self._http.request(method, self._base + path, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"gateway unreachable: {type(exc).__name__}") from exc
        if r.status_code == 404:
            raise NotFound(_detail(r) or "provider not configured at the gateway")
        if r.status_code in (401, 403):
            raise GatewayRefused(
                f"the gateway refused the notifier's token ({r.status_code}: {_detail(r)}); "
                "switches need a gateway token with the admin scope in NOTIFIER_GATEWAY_TOKEN"
                " (gateway token create --name notifier --scope messages:write"
                " --scope messages:read --scope admin)"
            )
        if r.status_code >= 300:
            raise GatewayUnavailable(f"gateway answered {r.status_code}: {_detail(r)}")
        try:
            return r.json()
        except ValueError as exc:
            raise GatewayUnavailable("gateway answered invalid JSON") from exc

    async def providers(self) -> list[IntegrationOut]:
        return _parse(_PROVIDERS, await self._call("GET", "/v1/providers"))

    async def switch(self, name: str, body: SwitchIn, *, by: str) -> IntegrationOut:
        reason = f"{by}: {body.reason}" if body.reason else f"by {by}"
        payload = {"enabled": body.enabled, "reason": reason[:1000]}
        data = await self._call("PUT", f"/v1/providers/{quote(name, safe='')}/switch", json=payload)
        return _parse(TypeAdapter(IntegrationOut), data)

    async def history(self, name: str) -> list[SwitchChangeOut]:
        path = f"/v1/providers/{quote(name, safe='')}/switch/history"
        return _parse(_HISTORY, await self._call("GET", path))


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    return str(body.get("detail") or body.get("title") or "") if isinstance(body, dict) else ""


def _parse(adapter: TypeAdapter[Any], data: Any) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise GatewayUnavailable(f"unexpected gateway answer: {exc.error_count()} errors") from exc
