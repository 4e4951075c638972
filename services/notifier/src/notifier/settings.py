from __future__ import annotations

from datetime import time
from functools import lru_cache

from notifier_common.publisher import DEFAULT_QUEUE
from notifier_common.settings import DEFAULT_SECRET, ServiceSettings
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", env_file=".env", extra="ignore")

    api_host: str = Field("127.0.0.1", description="notifier-api bind host.")
    api_port: int = Field(8000, description="notifier-api port.")
    queue_name: str = Field(DEFAULT_QUEUE, description="arq queue the events are enqueued on.")
    max_batch_events: int = Field(1000, ge=1, description="Most events in one POST /v1/events.")
    max_body_bytes: int = Field(
        5_000_000, ge=1024, description="Largest request body accepted by POST /v1/events (413)."
    )
    worker_max_jobs: int = Field(200, ge=1, description="arq max_jobs per worker process.")
    worker_poll_delay: float = Field(
        0.05,
        gt=0,
        description="Longest wait between queue polls, in seconds. Events enqueued by the "
        "notifier's publisher or POST /v1/events wake the worker at once; jobs enqueued with "
        "arq's own enqueue_job (and deferred retries) wait up to this long to start.",
    )
    worker_job_timeout: int = Field(120, ge=1, description="Seconds before arq cancels a job.")
    worker_max_tries: int = Field(8, ge=1, description="arq max tries for handle_event.")
    worker_group_commit: bool = Field(
        True, description="Handle concurrent events' database work in shared transactions."
    )
    worker_batch_max_events: int = Field(
        200, ge=1, description="Most events in one group-commit transaction."
    )
    worker_batch_window: float = Field(
        0.005, ge=0, description="Seconds the group commit waits to collect events."
    )
    letter_settings_cache_seconds: float = Field(
        5.0, ge=0, description="Event processing sees a letter settings change within this (s)."
    )
    immediate_send_window: float = Field(
        0.0,
        ge=0,
        description="Seconds immediate sends of concurrent events are coalesced (0: each "
        "group commit's letters leave at once; they still gather while all sends are busy).",
    )
    immediate_send_max_in_flight: int = Field(
        4, ge=1, description="Most coalesced immediate sends (gateway calls) running at once."
    )
    worker_metrics_port: int = Field(
        9101, description="Port of the worker's /metrics, /healthz and /readyz (0 disables)."
    )
    gateway_url: str = Field("http://127.0.0.1:8001", description="Delivery gateway base URL.")
    gateway_token: str = Field(
        DEFAULT_SECRET, description="Bearer token the notifier uses at the gateway."
    )
    clients_service_url: str = Field(
        "http://127.0.0.1:8002", description="Upstream 'clients' service base URL."
    )
    billing_service_url: str = Field(
        "http://127.0.0.1:8002", description="Upstream 'billing' service base URL."
    )
    upstream_timeout: float = Field(5.0, gt=0, description="Timeout of upstream HTTP calls (s).")
    upstream_max_concurrency: int = Field(
        8, ge=0, description="Most upstream requests in flight per worker process (0: no cap)."
    )
    # ---- letter engine (issue 4) ----
    gateway_timeout: float = Field(30.0, gt=0, description="Timeout of one gateway batch call (s).")
    gateway_batch_size: int = Field(
        500, ge=1, le=500, description="Letters per claimed batch = per gateway batch call."
    )
    letters_drain_concurrency: int = Field(
        2,
        ge=1,
        le=16,
        description="Batches one worker's drain has in flight at once (lanes, decision 0045).",
    )
    letters_lease_seconds: int = Field(
        120,
        ge=5,
        description=(
            "A worker transaction idle this long (a hung process holding a batch of letters"
            " locked) is ended by PostgreSQL and its letters are due again."
        ),
    )
    letters_max_attempts: int = Field(
        8, ge=1, description="Delivery tries before a letter with transient errors is failed."
    )
    letters_backoff_base: float = Field(
        60.0, gt=0, description="First retry delay (s); doubles per try, with jitter."
    )
    letters_backoff_cap: float = Field(3600.0, gt=0, description="Longest retry delay (s).")
    quiet_hours_start: time = Field(
        time(21, 0), description="Default start of quiet hours, recipient's local time."
    )
    quiet_hours_end: time = Field(
        time(9, 0), description="Default end of quiet hours (first allowed minute)."
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Public base URL of notifier-api (letter links)."
    )
    payment_url_template: str = Field(
        "{cabinet_url}/payment", description="Payment link in letters; {cabinet_url} is filled."
    )
    # ---- suppressions (issue 5) ----
    unsubscribe_per_minute: int = Field(
        20, ge=1, description="Unsubscribe link requests per client IP per minute (then 429)."
    )
    gateway_sync_page_size: int = Field(
        1000, ge=1, le=1000, description="Rows per page when pulling the gateway's feeds."
    )
    gateway_sync_max_pages: int = Field(
        50, ge=1, description="Pages per feed per run of the sync crons; the rest waits a minute."
    )
    gateway_sync_overlap_seconds: int = Field(
        60, ge=0, description="Each pull re-reads this much before the watermark (late commits)."
    )

    def _secrets(self) -> dict[str, str]:
        return {"secret_key": self.secret_key, "gateway_token": self.gateway_token}

    @model_validator(mode="after")
    def _lease_outlasts_a_gateway_call(self) -> NotifierSettings:
        """A drain batch's transaction sits idle through its gateway call: a bound no longer
        than the call's timeout would end healthy batches (decision 0103)."""
        if self.letters_lease_seconds <= self.gateway_timeout:
            raise ValueError(
                f"NOTIFIER_LETTERS_LEASE_SECONDS ({self.letters_lease_seconds}) must exceed"
                f" NOTIFIER_GATEWAY_TIMEOUT ({self.gateway_timeout}): a batch's transaction"
                " waits for its gateway call"
            )
        return self


@lru_cache
def get_settings() -> NotifierSettings:
    return NotifierSettings()
