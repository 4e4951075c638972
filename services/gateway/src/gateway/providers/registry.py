"""Provider kinds -> classes (by import path), and the configured instances of one process."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass

from notifier_common.logging import get_logger

from gateway.providers.base import Provider
from gateway.settings import GatewaySettings, ProviderSettings

log = get_logger("gateway.providers.registry")

KINDS: dict[str, str] = {
    "log": "gateway.providers.log:LogProvider",
    "smtp": "gateway.providers.smtp:SmtpProvider",
    "esp": "gateway.providers.esp:EspProvider",
    "newsletter": "gateway.providers.newsletter:NewsletterProvider",
    "crm": "gateway.providers.crm:CrmProvider",
    "webhook": "gateway.providers.webhook:WebhookProvider",
}


class ProviderConfigurationError(ValueError):
    """A configured provider kind cannot be loaded."""


def load_class(kind: str) -> type[Provider]:
    """A registered kind, or an import path ``package.module:Class``."""
    path = KINDS.get(kind, kind)
    module_name, sep, attr = path.partition(":")
    if not sep:
        raise ProviderConfigurationError(f"unknown provider kind {kind!r}; one of {sorted(KINDS)}")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ProviderConfigurationError(f"cannot load provider kind {kind!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ProviderConfigurationError(f"{path} is not a Provider subclass")
    return cls


@dataclass(slots=True)
class ProviderEntry:
    name: str
    settings: ProviderSettings
    provider: Provider

    @property
    def kind(self) -> str:
        return self.settings.kind


class ProviderRegistry:
    """The provider instances of this process, built from settings; started in the lifespan."""

    def __init__(self, entries: dict[str, ProviderEntry]) -> None:
        self._entries = entries

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> ProviderRegistry:
        entries: dict[str, ProviderEntry] = {}
        for name, conf in settings.providers.items():
            provider_cls = load_class(conf.kind)
            config = conf.adapter_config()
            if getattr(provider_cls, "uses_gateway_database", False):
                config.setdefault("database_url", settings.database_url)
                config["gateway_database_url"] = settings.database_url
            entries[name] = ProviderEntry(name, conf, provider_cls(name, config))
        return cls(entries)

    def get(self, name: str) -> ProviderEntry | None:
        return self._entries.get(name)

    def __iter__(self) -> Iterator[ProviderEntry]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    async def start(self) -> None:
        started: list[ProviderEntry] = []
        try:
            for entry in self:
                await entry.provider.start()
                started.append(entry)
                log.info("gateway.provider_started", provider=entry.name, kind=entry.kind)
        except BaseException:
            for entry in reversed(started):
                await entry.provider.aclose()
            raise

    async def aclose(self) -> None:
        for entry in self:
            try:
                await entry.provider.aclose()
            except Exception:
                log.exception("gateway.provider_close_failed", provider=entry.name)
