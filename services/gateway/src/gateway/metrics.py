"""Prometheus metrics of the gateway."""

from prometheus_client import Counter, Histogram

SENDS = Counter(
    "gateway_sends_total", "Messages by provider and outcome", ["provider", "outcome", "code"]
)
PROVIDER_CALL_SECONDS = Histogram(
    "gateway_provider_call_seconds", "Latency of one provider call (send_many)", ["provider"]
)
IDEMPOTENT_REPLAYS = Counter(
    "gateway_idempotent_replays_total", "Requests answered from the idempotency store", ["kind"]
)
WEBHOOK_EVENTS = Counter(
    "gateway_webhook_events_total", "Provider webhook events received", ["provider", "type"]
)
