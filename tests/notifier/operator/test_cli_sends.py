"""The CLI's resend and manual send are sent right away after their commit, as the API's are
(they waited for the per-minute drain: a user saw them leave up to a minute later)."""

from __future__ import annotations

import asyncio
import json

from arq.connections import RedisSettings, create_pool
from notifier.settings import NotifierSettings

from tests.notifier.operator.conftest import letter_row
from tests.notifier.operator.test_cli import cli_env, invoke, seed
from tests.notifier.operator.test_sending import snapshot

__all__ = ["cli_env"]  # the fixture, imported for these tests


def queued_send_jobs(settings: NotifierSettings) -> list[list[int]]:
    """The letter ids of every ``send_letters`` job in the queue."""

    async def main() -> list[list[int]]:
        redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
        try:
            out = []
            for job in await redis.queued_jobs(queue_name=settings.queue_name):
                assert job.function == "send_letters"
                out.append(list(job.args[0]))
            return out
        finally:
            await redis.aclose()

    return asyncio.run(main())


def test_a_resend_from_the_cli_is_handed_to_a_worker_at_once(cli_env: NotifierSettings) -> None:
    [letter_id] = seed(
        cli_env.database_url,
        letter_row(0, letter="FinancialUnblockNotice", context=snapshot("client-0")),
    )
    r = invoke("letters", "resend", str(letter_id), "--json")
    assert r.exit_code == 0, r.output
    new_id = json.loads(r.stdout)["id"]  # stdout is the JSON alone: the log line is on stderr
    assert "operator.resend" in r.stderr
    assert queued_send_jobs(cli_env) == [[new_id]]


def test_an_integration_letter_is_sent_by_hand_with_its_event_payload(
    cli_env: NotifierSettings,
) -> None:
    """Seed 000's admin action from the CLI: the letter is built from the payload given."""
    payload = json.dumps({"email": "ann@example.com", "group": "nda"})
    args = ("send", "NewsletterGroupSubscribe", "--client", "user-7")
    r = invoke(*args, "--json")
    assert r.exit_code == 1, r.output
    assert "event_payload" in r.stdout
    assert invoke(*args, "--payload", "{not json").exit_code == 2
    r = invoke(*args, "--payload", payload, "--json")
    assert r.exit_code == 0, r.output
    [letter] = json.loads(r.stdout)["letters"]
    assert (letter["channel"], letter["recipient"]) == ("newsletter", "ann@example.com")
    assert queued_send_jobs(cli_env) == [[letter["id"]]]
