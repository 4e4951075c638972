"""Suppressions: the signed unsubscribe link, the send-time skip, the pull sync from the gateway."""
