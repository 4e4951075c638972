"""Integration switches live in the gateway (one switch per provider, audited there); the
notifier reads and flips them through the gateway API with its own token. The operator's token
name goes into the gateway's audit reason, so the trail says who asked.

The same client lifts a suppression at the gateway when an operator lifts it in the notifier
(decision 0108): the gateway enforces its own list at send time too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from notifier_common.errors import AppError, NotFound
from pydantic import TypeAdapter, ValidationError

from notifier.config.schemas import IntegrationOut, SwitchChangeOut, SwitchIn
from notifier.suppressions.feed import RemoteSuppression

if TYPE_CHECKING:
    from notifier.settings import NotifierSettings


class GatewayUnavailable(AppError):
    status_code = 503
    title = "Service Unavailable"


class GatewayRefused(AppError):
    """The gateway is up but refuses the notifier's own token (401/403): a deployment's
    configuration to fix, not an outage to wait out, so 502 and not 503."""

    status_code = 502
    title = "Bad Gateway"


class GatewaySuppression(RemoteSuppression):
    """A row of the gateway's ``GET /v1/suppressions``, with the id its DELETE takes."""

    id: int


_PROVIDERS = TypeAdapter(list[IntegrationOut])
_HISTORY = TypeAdapter(list[SwitchChangeOut])
_SUPPRESSIONS = TypeAdapter(list[GatewaySuppression])


class Integrations:
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, token: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    def of(cls, clients: Mapping[str, Any], settings: NotifierSettings) -> Integrations:
        """On the process's shared gateway client (``clients["gateway_http"]``)."""
        return cls(
            clients["gateway_http"], base_url=settings.gateway_url, token=settings.gateway_token
        )

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
                "switches and suppression lifts need a gateway token with the admin scope in "
                "NOTIFIER_GATEWAY_TOKEN (gateway token create --name notifier --scope "
                "messages:write --scope messages:read --scope admin)"
            )
        if r.status_code >= 300:
            raise GatewayUnavailable(f"gateway answered {r.status_code}: {_detail(r)}")
        if r.status_code == 204:
            return None
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

    async def suppressions(self, *, address: str, scope: str) -> list[GatewaySuppression]:
        """The gateway's rows for this (address, scope): at most one (unique there too)."""
        params = {"address": address, "scope": scope, "limit": 100}
        try:
            data = await self._call("GET", "/v1/suppressions", params=params)
        except NotFound as exc:  # the route exists in every gateway: a wrong NOTIFIER_GATEWAY_URL
            detail = f"gateway answered 404 to GET /v1/suppressions: {exc.detail}"
            raise GatewayUnavailable(detail) from exc
        return _parse(_SUPPRESSIONS, data.get("items") if isinstance(data, dict) else None)

    async def lift_suppression(self, *, address: str, scope: str) -> int:
        """Delete the gateway's rows for (address, scope); a row already gone (404) is fine.
        Returns how many this call deleted."""
        lifted = 0
        for row in await self.suppressions(address=address, scope=scope):
            if row.address != address or row.scope != scope:
                continue  # the gateway filters exactly; never delete anything else
            try:
                await self._call("DELETE", f"/v1/suppressions/{row.id}")
            except NotFound:
                continue  # lifted meanwhile (another lift, an operator at the gateway)
            lifted += 1
        return lifted


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
