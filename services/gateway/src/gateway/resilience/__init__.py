"""Per-provider rate limits and circuit breakers, shared by every gateway process via Redis."""
