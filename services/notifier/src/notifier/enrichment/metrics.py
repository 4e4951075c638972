"""Prometheus metrics of upstream (enrichment) calls; registered once, on import."""

from prometheus_client import Counter, Histogram

UPSTREAM_REQUESTS = Counter(
    "notifier_upstream_requests_total",
    "Upstream HTTP attempts by upstream, resource and outcome",
    ["upstream", "resource", "outcome"],
)
UPSTREAM_DURATION = Histogram(
    "notifier_upstream_request_duration_seconds",
    "Duration of one upstream HTTP attempt",
    ["upstream", "resource"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ENRICHMENT_CACHE = Counter(
    "notifier_enrichment_cache_total",
    "Enrichment lookups by resource and result (hit, shared, miss)",
    ["resource", "result"],
)
