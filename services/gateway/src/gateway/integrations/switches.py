"""Effective switch state: the operator's override, else the provider's ``enabled`` setting."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.settings import GatewaySettings


def configured(settings: GatewaySettings, names: Iterable[str]) -> set[str]:
    """The names that are provider instances of these settings."""
    return {n for n in names if n in settings.providers}


def disabled_of(
    settings: GatewaySettings, names: Iterable[str], overrides: Mapping[str, bool]
) -> set[str]:
    """Which of these (configured) providers are off: the override, else the setting."""
    return {n for n in names if not overrides.get(n, settings.providers[n].enabled)}
