from __future__ import annotations

import httpx
import respx

GATEWAY = "http://gateway.test"


class TestLetterConfig:
    async def test_catalog_lists_every_letter_with_defaults_and_schema(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        r = await client.get("/v1/config/letters", headers=reader)
        assert r.status_code == 200, r.text
        by_name = {item["name"]: item for item in r.json()}
        assert len(by_name) == 22  # the 13 corp letters + 9 integration letters
        low = by_name["LowBalanceNotice"]
        assert low["enabled"] is True
        assert low["overrides"] == {}
        assert low["defaults"]["min_interval"] == low["effective"]["min_interval"] == "P1D"
        assert "min_interval" in low["params_schema"]["properties"]
        assert low["triggers"] == ["client.balance_changed"]
        assert set(low["locales"]) >= {"en", "ru"}
        assert by_name["FirstRemindPrepaidNotice"]["cancelled_by"] == [
            "client.payment_received",
            "contract.closed",
        ]
        assert (low["channel"], low["action"], low["rendered"]) == ("email", "send", True)
        crm = by_name["CrmEmailChange"]
        assert (crm["channel"], crm["action"], crm["rendered"]) == ("crm", "change_email", False)
        assert crm["locales"] == []

    async def test_unknown_letter_is_404(
        self, client: httpx.AsyncClient, configurer: dict[str, str]
    ) -> None:
        assert (await client.get("/v1/config/letters/Nope", headers=configurer)).status_code == 404
        r = await client.patch(
            "/v1/config/letters/Nope", json={"enabled": False}, headers=configurer
        )
        assert r.status_code == 404

    async def test_patch_changes_effective_params_and_is_audited(
        self, client: httpx.AsyncClient, configurer: dict[str, str]
    ) -> None:
        url = "/v1/config/letters/PrepaidFirstTakeARideNotice"
        r = await client.patch(url, json={"params": {"days": 5}}, headers=configurer)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["overrides"] == {"days": 5}
        assert body["effective"]["days"] == 5
        assert body["defaults"]["days"] == 3
        assert body["updated_by"] == "ops-bob"
        assert body["timing"] == "5 day(s) after the event at 11:00 local"
        r = await client.patch(url, json={"enabled": False}, headers=configurer)
        assert r.json()["enabled"] is False
        assert r.json()["overrides"] == {"days": 5}  # partial: params kept

        audit = (await client.get(f"{url}/audit", headers=configurer)).json()
        assert [(a["changed_by"], a["old"], a["new"]) for a in audit] == [
            (
                "ops-bob",
                {"enabled": True, "params": {"days": 5}},
                {"enabled": False, "params": {"days": 5}},
            ),
            ("ops-bob", None, {"enabled": True, "params": {"days": 5}}),
        ]

    async def test_invalid_params_are_422_with_field_errors_and_not_written(
        self, client: httpx.AsyncClient, configurer: dict[str, str]
    ) -> None:
        url = "/v1/config/letters/PrepaidFirstTakeARideNotice"
        r = await client.patch(
            url, json={"params": {"days": 1000, "nonsense": 1}}, headers=configurer
        )
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert {e["loc"] for e in r.json()["errors"]} == {"params.days", "params.nonsense"}
        assert (await client.get(f"{url}/audit", headers=configurer)).json() == []
        assert (await client.get(url, headers=configurer)).json()["overrides"] == {}

    async def test_reset_params_drops_overrides(
        self, client: httpx.AsyncClient, configurer: dict[str, str]
    ) -> None:
        url = "/v1/config/letters/LowBalanceNotice"
        await client.patch(url, json={"params": {"min_interval": "PT12H"}}, headers=configurer)
        r = await client.patch(url, json={"reset_params": True}, headers=configurer)
        assert r.json()["overrides"] == {}
        assert r.json()["effective"]["min_interval"] == "P1D"

    async def test_reader_cannot_change_config(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        r = await client.patch(
            "/v1/config/letters/LowBalanceNotice", json={"enabled": False}, headers=reader
        )
        assert r.status_code == 403


PROVIDER = {
    "name": "smtp",
    "kind": "smtp",
    "enabled": False,
    "switch_source": "operator",
    "changed_by": "notifier",
    "changed_at": "2026-11-23T10:00:00Z",
    "breaker": {"state": "closed", "retry_after": 0},
    "replayable": 0,
}


class TestIntegrations:
    @respx.mock
    async def test_switch_goes_to_the_gateway_with_the_operator_name(
        self, client: httpx.AsyncClient, configurer: dict[str, str]
    ) -> None:
        route = respx.put(f"{GATEWAY}/v1/providers/smtp/switch").respond(200, json=PROVIDER)
        r = await client.put(
            "/v1/config/integrations/smtp/switch",
            json={"enabled": False, "reason": "ESP outage"},
            headers=configurer,
        )
        assert r.status_code == 200, r.text
        assert r.json()["enabled"] is False
        sent = route.calls.last.request
        assert sent.headers["Authorization"] == "Bearer test-gateway-token"
        assert sent.read() == b'{"enabled":false,"reason":"ops-bob: ESP outage"}'

    @respx.mock
    async def test_list_and_unknown_provider(
        self, client: httpx.AsyncClient, configurer: dict[str, str]
    ) -> None:
        respx.get(f"{GATEWAY}/v1/providers").respond(200, json=[PROVIDER])
        respx.get(f"{GATEWAY}/v1/providers/nope/switch/history").respond(
            404,
            json={
                "title": "Not Found",
                "status": 404,
                "detail": "provider 'nope' is not configured",
            },
        )
        r = await client.get("/v1/config/integrations", headers=configurer)
        assert [p["name"] for p in r.json()] == ["smtp"]
        r = await client.get("/v1/config/integrations/nope/history", headers=configurer)
        assert r.status_code == 404
        assert "nope" in r.json()["detail"]

    @respx.mock
    async def test_gateway_down_is_503(
        self, client: httpx.AsyncClient, configurer: dict[str, str]
    ) -> None:
        respx.get(f"{GATEWAY}/v1/providers").mock(side_effect=httpx.ConnectError("refused"))
        r = await client.get("/v1/config/integrations", headers=configurer)
        assert r.status_code == 503


class TestGatewayRefusesTheNotifiersToken:
    """Against the real gateway: a notifier token without ``admin`` there is a configuration to
    fix (502, saying how), not an outage (503)."""

    async def test_switch_without_admin_is_502_naming_the_fix(
        self, database_url: str, redis_url: str
    ) -> None:
        from gateway.tokens import create_token
        from notifier.config.integrations import GatewayRefused, Integrations
        from notifier.config.schemas import SwitchIn

        from tests.gateway.conftest import client_for, log_gateway_settings, running

        raw = await create_token(
            database_url, name="notifier", scopes=["messages:write", "messages:read"]
        )
        settings = log_gateway_settings(database_url, redis_url)
        async with running(settings) as app, client_for(app) as http:
            integrations = Integrations(http, base_url="http://gateway.test", token=raw)
            listed = await integrations.providers()  # messages:read is enough to list
            try:
                await integrations.switch("log", SwitchIn(enabled=False), by="ops")
            except GatewayRefused as exc:
                refused = exc
            else:  # pragma: no cover - the assertion below says what went wrong
                refused = None
        assert [p.name for p in listed] == ["log"]
        assert refused is not None
        assert refused.status_code == 502
        assert "admin" in str(refused.detail)
        assert "--scope admin" in str(refused.detail)
