"""Every real provider loads by the import path the registry uses, from a plain settings dict."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from gateway.providers._http import ProviderConfigError
from gateway.providers.base import Provider

PROVIDERS: list[tuple[str, str, dict[str, Any]]] = [
    ("gateway.providers.smtp:SmtpProvider", "smtp", {"from_address": "noreply@n.test"}),
    ("gateway.providers.esp:EspProvider", "esp", {"base_url": "https://e.test", "api_key": "k"}),
    (
        "gateway.providers.newsletter:NewsletterProvider",
        "newsletter",
        {"base_url": "https://b.test", "api_key": "k"},
    ),
    ("gateway.providers.crm:CrmProvider", "crm", {"base_url": "https://c.test", "token": "t"}),
    ("gateway.providers.webhook:WebhookProvider", "webhook", {"secret": "s" * 32}),
]


def _load(path: str) -> type[Provider]:
    module, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert isinstance(cls, type)
    assert issubclass(cls, Provider)
    return cls


class TestProviderContract:
    @pytest.mark.parametrize(("path", "kind", "config"), PROVIDERS)
    async def test_loads_constructs_starts_and_closes_without_network(
        self, path: str, kind: str, config: dict[str, Any]
    ) -> None:
        provider = _load(path)("main", dict(config))

        await provider.start()
        await provider.aclose()

        assert (provider.kind, provider.name, provider.config) == (kind, "main", config)

    @pytest.mark.parametrize(("path", "kind", "config"), PROVIDERS)
    def test_bad_config_is_a_value_error_naming_instance_and_key(
        self, path: str, kind: str, config: dict[str, Any]
    ) -> None:
        with pytest.raises(ProviderConfigError, match=rf"'main' \({kind}\).*no_such_key") as info:
            _load(path)("main", {**config, "no_such_key": 1})

        assert isinstance(info.value, ValueError)
