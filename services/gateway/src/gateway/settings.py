"""Gateway settings (env prefix ``GATEWAY_``).

Provider instances come from ``GATEWAY_PROVIDERS`` (JSON), one entry per instance name::

    {"log": {"kind": "log"},
     "smtp-main": {"kind": "smtp", "host": "mail", "from_address": "no-reply@example.com",
                   "rate_per_second": 20, "burst": 40,
                   "webhook": {"scheme": "hmac_sha256", "secret": "...", "format": "postmark"}}}

The keys of :class:`ProviderSettings` (``kind``, ``enabled``, ``rate_per_second``, ``burst``,
``breaker_threshold``, ``breaker_cooldown_seconds``, ``concurrency``, ``chunk_size``,
``webhook``) belong to the gateway; every other key is the adapter's own config and is handed
to the provider class untouched. ``kind`` is a registered kind (``log``, ``smtp``, ``esp``,
``newsletter``, ``crm``, ``webhook``) or an import path ``package.module:Class``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from notifier_common.settings import DEFAULT_SECRET, ServiceSettings
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict


class WebhookAuth(BaseModel):
    """How a provider's webhooks authenticate and which body shape they use."""

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["shared_secret", "hmac_sha256"] = Field(
        "hmac_sha256",
        description="shared_secret: header equals the secret; hmac_sha256: signed timestamp+body.",
    )
    secret: str = Field(min_length=1)
    header: str | None = Field(
        None,
        description="Header name; default X-Webhook-Secret (shared_secret) or "
        "X-Webhook-Signature (hmac_sha256, value `t=<unix>,v1=<hex>`).",
    )
    tolerance_seconds: int = Field(300, ge=1, description="Max age of a signed timestamp.")
    format: str = Field("neutral", description="Body parser: neutral | esp | smtp.")


class ProviderSettings(BaseModel):
    """Gateway-side settings of one provider instance; extra keys are the adapter's config."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(min_length=1, description="Registered kind or `module:Class`.")
    enabled: bool = Field(True, description="Switch state until an operator changes it.")
    rate_per_second: float | None = Field(None, gt=0, description="Token bucket rate; None: off.")
    burst: int | None = Field(None, ge=1, description="Bucket size; default: max(1, rate).")
    breaker_threshold: int | None = Field(None, ge=1)
    breaker_cooldown_seconds: float | None = Field(None, gt=0)
    concurrency: int | None = Field(None, ge=1, description="Parallel provider calls.")
    chunk_size: int | None = Field(None, ge=1, description="Messages per send_many call.")
    webhook: WebhookAuth | None = None

    def adapter_config(self) -> dict[str, Any]:
        """The keys meant for the provider class (everything not declared above)."""
        return dict(self.model_extra or {})


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    api_host: str = Field("127.0.0.1", description="gateway bind host.")
    api_port: int = Field(8001, description="gateway port.")
    providers: dict[str, ProviderSettings] = Field(
        default_factory=lambda: {"log": ProviderSettings(kind="log")},
        description="Provider instances by name (JSON).",
    )
    channel_defaults: dict[str, str] = Field(
        default_factory=dict, description='Provider per channel, e.g. {"email": "smtp-main"}.'
    )
    default_provider: str | None = Field(
        "log", description="Provider of channels missing from channel_defaults (None: refuse)."
    )
    max_batch_items: int = Field(500, ge=1, description="Most items in POST /v1/messages:batch.")
    max_concurrent_batches: int = Field(
        2,
        ge=1,
        description="Batch requests one process reads and handles at once; the others wait "
        "unread (bounds memory: a 500-message batch costs ~5x its JSON size while handled).",
    )
    malloc_mmap_threshold: int = Field(
        131072,
        ge=0,
        description="glibc: buffers of at least this many bytes are mmapped and handed back to "
        "the OS when freed (request bodies, JSON); 0 keeps glibc's growing threshold.",
    )
    claim_lease_seconds: float = Field(
        120.0, gt=0, description="An in-flight key is retried by others after this (crash)."
    )
    inflight_wait_seconds: float = Field(
        2.0, ge=0, description="How long a repeat waits for the first request before 409."
    )
    inflight_poll_seconds: float = Field(
        0.1, gt=0, description="How often such a waiting repeat looks at the first request again."
    )
    provider_timeout_seconds: float = Field(
        60.0, gt=0, description="Upper bound of one provider call (transient `timeout` after)."
    )
    default_concurrency: int = Field(8, ge=1, description="Parallel provider calls per batch.")
    default_chunk_size: int = Field(50, ge=1, description="Messages per send_many call.")
    rate_limit_max_wait_seconds: float = Field(
        1.0, ge=0, description="Wait this long for tokens before answering `rate_limited`."
    )
    breaker_threshold: int = Field(5, ge=1, description="Consecutive transient failures to open.")
    breaker_cooldown_seconds: float = Field(30.0, gt=0, description="Open -> half-open after.")
    redis_prefix: str = Field("gateway", description="Prefix of the gateway's Redis keys.")

    @model_validator(mode="after")
    def _channels_name_known_providers(self) -> GatewaySettings:
        names = set(self.providers)
        wanted = set(self.channel_defaults.values())
        if self.default_provider:
            wanted.add(self.default_provider)
        missing = sorted(wanted - names)
        if missing:
            raise ValueError(f"channel defaults name unknown provider(s): {missing}")
        return self

    def _secrets(self) -> dict[str, str]:
        found = {"secret_key": self.secret_key}
        for name, provider in self.providers.items():
            if provider.webhook:
                found[f"providers.{name}.webhook.secret"] = provider.webhook.secret
            for key, value in provider.adapter_config().items():
                if value == DEFAULT_SECRET:
                    found[f"providers.{name}.{key}"] = value
        return found

    def provider_for(self, channel: str) -> str | None:
        return self.channel_defaults.get(channel, self.default_provider)


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
