import json
from typing import Any

import pytest
from gateway.providers.log import LogProvider
from gateway.providers.registry import (
    KINDS,
    ProviderConfigurationError,
    ProviderRegistry,
    load_class,
)
from gateway.settings import GatewaySettings, ProviderSettings
from notifier_common.settings import DEFAULT_SECRET
from pydantic import ValidationError
from typer.testing import CliRunner

from tests.gateway.fakes import CountingProvider


def settings(**values: Any) -> GatewaySettings:
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


class TestSettings:
    def test_defaults_send_every_channel_to_the_log_provider(self) -> None:
        s = settings()
        assert (s.api_host, s.api_port) == ("127.0.0.1", 8001)
        assert list(s.providers) == ["log"]
        assert s.provider_for("email") == s.provider_for("sms") == "log"

    def test_providers_and_channel_defaults_come_from_json_env(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(
            "GATEWAY_PROVIDERS",
            json.dumps(
                {
                    "log": {"kind": "log"},
                    "smtp-main": {"kind": "smtp", "host": "mail", "rate_per_second": 5},
                }
            ),
        )
        monkeypatch.setenv("GATEWAY_CHANNEL_DEFAULTS", json.dumps({"email": "smtp-main"}))
        s = settings()
        assert s.provider_for("email") == "smtp-main"
        assert s.provider_for("sms") == "log"
        smtp = s.providers["smtp-main"]
        assert smtp.rate_per_second == 5
        assert smtp.adapter_config() == {"host": "mail"}

    def test_channel_default_must_name_a_configured_provider(self) -> None:
        with pytest.raises(ValidationError, match="unknown provider"):
            settings(channel_defaults={"email": "nope"})

    def test_production_refuses_default_secrets(self) -> None:
        with pytest.raises(ValidationError, match="secret_key"):
            settings(env="production")
        webhook = {"kind": "log", "webhook": {"secret": DEFAULT_SECRET}}
        with pytest.raises(ValidationError, match=r"providers\.log\.webhook\.secret"):
            settings(env="production", secret_key="real", providers={"log": webhook})
        adapter = {"kind": "log", "api_key": DEFAULT_SECRET}
        with pytest.raises(ValidationError, match=r"providers\.log\.api_key"):
            settings(env="production", secret_key="real", providers={"log": adapter})
        assert settings(env="production", secret_key="real").env == "production"


class TestRegistry:
    def test_kinds_and_import_paths_load_provider_classes(self) -> None:
        assert load_class("log") is LogProvider
        assert load_class("tests.gateway.fakes:CountingProvider") is CountingProvider

    @pytest.mark.parametrize("kind", sorted(KINDS))
    def test_every_registered_kind_loads_its_adapter(self, kind: str) -> None:
        assert load_class(kind).kind == kind

    @pytest.mark.parametrize("kind", ["pigeon", "tests.gateway.fakes:Nope", "json:dumps"])
    def test_unloadable_kind_is_a_configuration_error(self, kind: str) -> None:
        with pytest.raises(ProviderConfigurationError):
            load_class(kind)

    async def test_registry_builds_starts_and_closes_instances(self) -> None:
        conf = {"c": ProviderSettings(kind="tests.gateway.fakes:CountingProvider", delay=0.5)}
        registry = ProviderRegistry.from_settings(settings(providers=conf, default_provider="c"))
        entry = registry.get("c")
        assert entry is not None
        provider = entry.provider
        assert isinstance(provider, CountingProvider)
        assert provider.config == {"delay": 0.5}
        await registry.start()
        assert provider.started
        await registry.aclose()
        assert not provider.started


class TestCli:
    def test_openapi_documents_every_route(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from gateway.cli import app
        from gateway.settings import get_settings

        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["openapi"])
        assert result.exit_code == 0, result.output
        spec = json.loads(result.stdout)
        paths = spec["paths"]
        for path in (
            "/v1/messages",
            "/v1/messages:batch",
            "/v1/messages/{message_id}",
            "/v1/providers",
            "/v1/providers/{name}/switch",
            "/v1/providers/{name}:replay",
            "/v1/providers/{name}/webhooks",
            "/v1/suppressions",
            "/v1/suppressions/{suppression_id}",
        ):
            assert path in paths
            for operation in paths[path].values():
                assert operation["summary"]
        assert "409" in paths["/v1/messages"]["post"]["responses"]
        assert "413" in paths["/v1/messages:batch"]["post"]["responses"]

    def test_token_create_list_revoke(
        self, monkeypatch: pytest.MonkeyPatch, database_url: str
    ) -> None:
        from gateway.cli import app
        from gateway.settings import get_settings

        monkeypatch.setenv("GATEWAY_DATABASE_URL", database_url)
        get_settings.cache_clear()
        runner = CliRunner()
        try:
            created = runner.invoke(
                app,
                [
                    "token",
                    "create",
                    "--name",
                    "notifier",
                    "--scope",
                    "messages:write",
                    "--scope",
                    "messages:read",
                ],
            )
            assert created.exit_code == 0, created.output
            assert created.stdout.strip().startswith("gwt_")  # a gateway token, by its prefix
            listed = runner.invoke(app, ["token", "list"])
            assert "notifier\tmessages:read,messages:write\tactive" in listed.stdout
            token_id = listed.stdout.split("\t")[0]
            assert runner.invoke(app, ["token", "revoke", token_id]).exit_code == 0
            assert "revoked" in runner.invoke(app, ["token", "list"]).stdout
            assert runner.invoke(app, ["token", "revoke", token_id]).exit_code == 1
            bad = runner.invoke(app, ["token", "create", "--name", "x", "--scope", "root"])
            assert bad.exit_code != 0
            assert runner.invoke(app, ["suppressions", "list"]).exit_code == 0
        finally:
            get_settings.cache_clear()
