"""Operator API and CLI (issue 6): letter history and timeline, resend, cancel, bulk retry,
manual send, dry run, template preview. Configuration lives in :mod:`notifier.config`."""
