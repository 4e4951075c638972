"""The operator CLI, in-process with CliRunner. Plain sync tests: the commands run their own
event loop (asyncio.run), so no loop may be running around them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from notifier.cli import app
from notifier.models import Letter, LetterStatus
from notifier.settings import NotifierSettings, get_settings
from notifier_common.db import create_engine, create_sessionmaker
from sqlalchemy import insert, select
from typer.testing import CliRunner

from tests.notifier.operator.conftest import T0, letter_row
from tests.notifier.operator.test_sending import snapshot

runner = CliRunner()


@pytest.fixture
def cli_env(
    settings: NotifierSettings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NotifierSettings]:
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NOTIFIER_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("NOTIFIER_QUEUE_NAME", settings.queue_name)
    monkeypatch.setenv("NOTIFIER_ENV", "test")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def run_db(database_url: str, work: Any) -> Any:
    async def main() -> Any:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as s, s.begin():
                return await work(s)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def seed(database_url: str, *rows: dict[str, Any]) -> list[int]:
    async def work(s: Any) -> list[int]:
        return list((await s.execute(insert(Letter).returning(Letter.id), list(rows))).scalars())

    return run_db(database_url, work)


def status_of(database_url: str, letter_id: int) -> LetterStatus:
    async def work(s: Any) -> LetterStatus:
        return (await s.execute(select(Letter.status).where(Letter.id == letter_id))).scalar_one()

    return run_db(database_url, work)


def count_letters(database_url: str) -> int:
    async def work(s: Any) -> int:
        return len((await s.execute(select(Letter.id))).all())

    return run_db(database_url, work)


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    return result


class TestLettersCommands:
    def test_list_as_json_filters_by_client(self, cli_env: NotifierSettings) -> None:
        ids = seed(cli_env.database_url, *(letter_row(i) for i in range(12)))
        r = invoke("letters", "list", "--client", "client-3", "--json")
        assert r.exit_code == 0, r.output
        assert [x["id"] for x in json.loads(r.stdout)["items"]] == [ids[3]]

    def test_show_prints_the_timeline(self, cli_env: NotifierSettings) -> None:
        [letter_id] = seed(
            cli_env.database_url, letter_row(0, status=LetterStatus.skipped, skip_reason="muted")
        )
        r = invoke("letters", "show", str(letter_id))
        assert r.exit_code == 0, r.output
        assert "skipped: muted" in r.stdout

    def test_cancel_scheduled_and_refuse_sent(self, cli_env: NotifierSettings) -> None:
        scheduled, sent = seed(
            cli_env.database_url,
            letter_row(0, status=LetterStatus.scheduled),
            letter_row(1, status=LetterStatus.sent),
        )
        assert invoke("letters", "cancel", str(scheduled)).exit_code == 0
        assert status_of(cli_env.database_url, scheduled) == LetterStatus.cancelled
        r = invoke("letters", "cancel", str(sent))
        assert r.exit_code == 1
        assert "Conflict" in r.stdout

    def test_retry_dry_run_then_in_batches(self, cli_env: NotifierSettings) -> None:
        ids = seed(
            cli_env.database_url,
            *(letter_row(i, status=LetterStatus.failed) for i in range(7)),
        )
        since = T0.isoformat()
        r = invoke("letters", "retry", "--status", "failed", "--since", since, "--dry-run")
        assert "7 letters match" in r.stdout
        r = invoke("letters", "retry", "--status", "failed", "--max", "3")
        assert r.exit_code == 1
        r = invoke(
            "letters", "retry", "--status", "failed", "--max", "10", "--batch", "3", "--json"
        )
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout.strip().splitlines()[-1]) == {"matched": 7, "rescheduled": 7}
        assert status_of(cli_env.database_url, ids[0]) == LetterStatus.scheduled

    def test_resend_of_a_switched_off_letter_is_refused(self, cli_env: NotifierSettings) -> None:
        [letter_id] = seed(
            cli_env.database_url,
            letter_row(0, letter="FinancialUnblockNotice", context=snapshot("client-0")),
        )
        assert invoke("config", "set", "FinancialUnblockNotice", "--disabled").exit_code == 0
        r = invoke("letters", "resend", str(letter_id))
        assert r.exit_code == 1, r.output
        assert "Conflict" in r.stdout
        assert "letter FinancialUnblockNotice is switched off; enable it first" in r.stdout
        assert count_letters(cli_env.database_url) == 1
        assert invoke("config", "set", "FinancialUnblockNotice", "--enabled").exit_code == 0
        r = invoke("letters", "resend", str(letter_id))
        assert r.exit_code == 0, r.output
        assert f"(resend of {letter_id})" in r.stdout
        assert count_letters(cli_env.database_url) == 2


class TestConfigCommands:
    @pytest.mark.parametrize(
        ("letter", "assignment", "loc"),
        [
            ("FirstRemindPrepaidNotice", "delay=-P1D", "params.delay"),
            ("ActivateClientNotice", "expires_after=-PT1H", "params.expires_after"),
            ("ActivateClientNotice", "expires_after=0", "params.expires_after"),
            ("LowBalanceNotice", "min_interval=-P1D", "params.min_interval"),
        ],
    )
    def test_set_refuses_a_negative_duration_or_zero_expiry(
        self, letter: str, assignment: str, loc: str, cli_env: NotifierSettings
    ) -> None:
        r = invoke("config", "set", letter, assignment)
        assert r.exit_code == 1, r.output
        assert loc in r.stdout
        body = json.loads(invoke("config", "get", letter, "--json").stdout)
        assert body["overrides"] == {}

    def test_set_validates_and_get_shows_the_override(self, cli_env: NotifierSettings) -> None:
        r = invoke("config", "set", "PrepaidFirstTakeARideNotice", "days=1000")
        assert r.exit_code == 1
        assert "params.days" in r.stdout
        r = invoke("config", "set", "PrepaidFirstTakeARideNotice", "days=5", "--disabled")
        assert r.exit_code == 0, r.output
        r = invoke("config", "get", "PrepaidFirstTakeARideNotice", "--json")
        body = json.loads(r.stdout)
        assert (body["enabled"], body["overrides"]) == (False, {"days": 5})
        assert body["updated_by"].startswith("cli")


class TestEventsReplay:
    def test_unknown_event_is_an_error(self, cli_env: NotifierSettings) -> None:
        r = invoke("events", "replay", "3f1c5a0e-8d4b-4c36-9a57-0e0d3a8c2b11")
        assert r.exit_code == 1
        assert "not stored" in r.stdout
