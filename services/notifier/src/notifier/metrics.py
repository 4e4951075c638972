"""Prometheus metrics of the notifier (API and worker)."""

from prometheus_client import Counter, Histogram

EVENTS_HANDLED = Counter(
    "notifier_events_total", "Events handled by outcome", ["source", "outcome"]
)
EVENTS_ENQUEUED = Counter("notifier_events_enqueued_total", "Events accepted by the API")
JOB_DURATION = Histogram("notifier_job_duration_seconds", "arq job duration", ["job"])
LETTER_OUTCOMES = Counter(
    "notifier_letter_outcomes_total",
    "Letters whose send was recorded (drain or immediate send), by letter and outcome: sent, "
    "retried (transient, due again), failed, skipped, expired, cancelled",
    ["letter", "outcome"],
)
