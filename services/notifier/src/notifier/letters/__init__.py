"""The letter engine: catalog, scheduling, cancellation, per-minute drain (issue 4)."""
