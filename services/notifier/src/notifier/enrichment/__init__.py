"""Enrichment: fetch client profile, balance and contract from upstream services over HTTP.

Public names (the letter engine codes against these)::

    EnrichmentClient(http, *, clients_url, billing_url, retries=3, backoff=0.2, cache_ttl=30.0)
    await enrichment.client(client_id) -> ClientProfile
    await enrichment.balance(client_id) -> Balance
    await enrichment.contract(contract_id) -> Contract
    UpstreamNotFound / UpstreamInvalid (PermanentEventError), UpstreamUnavailable (Transient...)
"""

from notifier.enrichment.cache import SingleFlightCache
from notifier.enrichment.client import EnrichmentClient
from notifier.enrichment.errors import (
    UpstreamError,
    UpstreamInvalid,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from notifier.enrichment.schemas import Balance, ClientProfile, Contract

__all__ = [
    "Balance",
    "ClientProfile",
    "Contract",
    "EnrichmentClient",
    "SingleFlightCache",
    "UpstreamError",
    "UpstreamInvalid",
    "UpstreamNotFound",
    "UpstreamUnavailable",
]
