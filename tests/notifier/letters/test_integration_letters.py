"""The integration letters of seeds 000-002 (newsletter, CRM, license usage) in the engine:
event in -> letter with its gateway message -> sent as that message (no templates)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from notifier.letters import repository
from notifier.letters.catalog import (
    Addressee,
    Catalog,
    LetterParams,
    LetterSpec,
    Outbound,
    Trigger,
)
from notifier.letters.definitions import LETTERS
from notifier.letters.timing import Immediately
from notifier.models import LetterStatus, SuppressionReason, SuppressionSource
from notifier.suppressions import repository as suppressions
from notifier.suppressions.repository import NewSuppression

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, RecordingGateway, Upstream

USER = "user-7"


def signed_up(**payload: Any) -> dict[str, Any]:
    body = {"email": "ann@example.com", "name": "Ann", "language": "ru"}
    return event_body(
        "user.signed_up", client_id=USER, payload={**body, **payload}, occurred_at=START
    )


def email_changed(old: str = "ann@example.com", new: str = "ann@new.example") -> dict[str, Any]:
    return event_body(
        "user.email_changed",
        client_id=USER,
        payload={"old_email": old, "new_email": new},
        occurred_at=START,
    )


def group(kind: str, name: str, email: str = "ann@example.com") -> dict[str, Any]:
    return event_body(
        f"user.group_{kind}",
        client_id=USER,
        payload={"email": email, "group": name},
        occurred_at=START,
    )


def license_changed(allocated: int, total: int = 10, plan: str = "plan-1") -> dict[str, Any]:
    return event_body(
        "license.allocation_changed",
        client_id="client-1",
        payload={"subscription_plan_id": plan, "allocated": allocated, "total": total},
        occurred_at=START,
    )


def message_of(item: dict[str, Any]) -> dict[str, Any]:
    return item["message"]  # type: ignore[no-any-return]


class TestNewsletter:
    async def test_joining_a_group_subscribes_to_its_newsletters_without_upstream(
        self, letter_engine: Engine, gateway: RecordingGateway, upstream: Upstream
    ) -> None:
        calls = upstream.calls
        assert await letter_engine.handle(group("joined", "nda")) == "processed"
        [letter] = await letter_engine.letters(letter="NewsletterGroupSubscribe")
        assert letter.status == LetterStatus.sent
        assert (letter.channel, letter.recipient) == ("newsletter", "ann@example.com")
        [item] = gateway.sent_for("NewsletterGroupSubscribe")
        message = message_of(item)
        assert message["channel"] == "newsletter"
        assert message["action"] == "subscribe"
        assert message["lists"] == ["mozillians-nda"]
        assert message["to"] == [{"address": "ann@example.com"}]
        assert "html" not in message
        assert "subject" not in message
        assert upstream.calls == calls  # the event carries all it needs

    async def test_leaving_unsubscribes_and_a_group_without_newsletters_sends_nothing(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        assert await letter_engine.handle(group("left", "vouched")) == "processed"
        assert await letter_engine.handle(group("joined", "chess-club")) == "processed"
        [item] = gateway.sent
        assert message_of(item)["action"] == "unsubscribe"
        assert message_of(item)["lists"] == ["mozilla-phone"]
        assert await letter_engine.letters(letter="NewsletterGroupSubscribe") == []

    async def test_an_email_change_moves_every_newsletter_of_ours(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        assert await letter_engine.handle(email_changed()) == "processed"
        [item] = gateway.sent_for("NewsletterEmailChange")
        message = message_of(item)
        assert message["action"] == "change_email"
        assert message["to"] == [{"address": "ann@new.example"}]
        assert message["previous_address"] == "ann@example.com"
        assert message["lists"] == ["mozilla-phone", "mozillians-nda"]

    async def test_an_unsubscribed_address_is_still_unsubscribed(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        """Suppressions stop content, not actions on the person's record (like the gateway)."""
        async with letter_engine.sessionmaker.begin() as session:
            await suppressions.add_many(
                session,
                [
                    NewSuppression(
                        address="ann@example.com",
                        scope="*",
                        reason=SuppressionReason.unsubscribed,
                        source=SuppressionSource.operator,
                        detail="test",
                    )
                ],
            )
        assert await letter_engine.handle(group("left", "nda")) == "processed"
        [letter] = await letter_engine.letters(letter="NewsletterGroupUnsubscribe")
        assert letter.status == LetterStatus.sent
        assert len(gateway.sent) == 1


class TestCrm:
    async def test_sign_up_upserts_the_contact_with_the_app_user_id_and_lists(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        assert await letter_engine.handle(signed_up(mailing_lists=["weekly"])) == "processed"
        [letter] = await letter_engine.letters(letter="CrmContactSync")
        assert letter.status == LetterStatus.sent
        assert letter.locale == "ru"  # the event's language
        [item] = gateway.sent_for("CrmContactSync")
        message = message_of(item)
        assert message["action"] == "upsert_contact"
        assert message["to"] == [
            {
                "address": "ann@example.com",
                "name": "Ann",
                "external_id": USER,
                "properties": {"language": "ru"},
            }
        ]
        assert message["lists"] == ["weekly"]

    async def test_email_change_and_spam_address_the_contact_by_the_id_the_upsert_answered(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        assert await letter_engine.handle(signed_up()) == "processed"
        [sync] = await letter_engine.letters(letter="CrmContactSync")
        crm_id = sync.provider_message_id
        assert crm_id  # the recording gateway answers pm-<key>
        assert await letter_engine.handle(email_changed()) == "processed"
        spam = event_body("user.marked_spam", client_id=USER, payload={"email": "ann@new.example"})
        assert await letter_engine.handle(spam) == "processed"
        [change] = gateway.sent_for("CrmEmailChange")
        assert message_of(change)["to"] == [{"address": "ann@new.example", "external_id": crm_id}]
        assert message_of(change)["previous_address"] == "ann@example.com"
        [marked] = gateway.sent_for("CrmSpamReport")
        assert message_of(marked)["action"] == "mark_spam"
        assert message_of(marked)["to"][0]["external_id"] == crm_id
        [stored] = await letter_engine.letters(letter="CrmEmailChange")
        assert stored.context["message"]["to"] == [{"address": "ann@new.example"}]

    async def test_email_change_waits_while_the_upsert_is_pending(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        gateway.outcome_for["CrmContactSync"] = "transient_error"
        assert await letter_engine.handle(signed_up()) == "processed"
        assert await letter_engine.handle(email_changed()) == "processed"
        [change] = await letter_engine.letters(letter="CrmEmailChange")
        assert change.status == LetterStatus.scheduled
        assert change.last_error == "waiting for CrmContactSync of this client to be sent"
        [attempt] = await letter_engine.attempts(change.id)
        assert attempt.code == "not_synced"
        assert gateway.sent_for("CrmEmailChange") == []

        # the upsert goes through on its retry; the change follows with its id
        del gateway.outcome_for["CrmContactSync"]
        gateway.results.clear()
        letter_engine.clock.advance(timedelta(hours=2))
        await letter_engine.sender.drain(now=letter_engine.clock())
        [sync] = await letter_engine.letters(letter="CrmContactSync")
        assert sync.status == LetterStatus.sent
        if gateway.sent_for("CrmEmailChange") == []:  # claimed before the upsert was recorded
            letter_engine.clock.advance(timedelta(hours=2))
            await letter_engine.sender.drain(now=letter_engine.clock())
        [change_item] = gateway.sent_for("CrmEmailChange")
        assert message_of(change_item)["to"][0]["external_id"] == sync.provider_message_id

    async def test_email_change_of_a_user_never_synced_fails_not_synced(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        assert await letter_engine.handle(email_changed()) == "processed"
        [change] = await letter_engine.letters(letter="CrmEmailChange")
        assert change.status == LetterStatus.failed
        assert "no CrmContactSync was sent for client user-7" in (change.last_error or "")
        assert gateway.sent_for("CrmEmailChange") == []


class TestLicenseUsage:
    async def test_75_percent_triggers_the_campaign_once_per_plan_for_each_admin(
        self, letter_engine: Engine, gateway: RecordingGateway, upstream: Upstream
    ) -> None:
        upstream.add_client("client-1", emails=["a@acme.example", "b@acme.example"])
        assert await letter_engine.handle(license_changed(7)) == "processed"
        assert gateway.sent == []  # 70 %: nothing
        assert await letter_engine.handle(license_changed(8)) == "processed"
        assert await letter_engine.handle(license_changed(9)) == "processed"  # once per plan
        items = gateway.sent_for("LicenseUsageNotice")
        assert len(items) == 2
        message = message_of(items[0])
        assert message["channel"] == "esp"
        assert message["action"] == "send"
        assert message["template_ref"] == "license-usage-75"
        assert message["properties"] == {
            "enterprise_customer_id": "client-1",
            "enterprise_name": "ACME client-1",
            "subscription_plan_uuid": "plan-1",
            "allocated_license_count": 8,
            "total_license_count": 10,
            "threshold_percent": 75,
        }
        assert {m["message"]["to"][0]["external_id"] for m in items} == {
            "a@acme.example",
            "b@acme.example",
        }
        assert gateway.sent_for("LicenseFullNotice") == []

    async def test_100_percent_sends_both_and_another_plan_starts_again(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        assert await letter_engine.handle(license_changed(10)) == "processed"
        assert len(gateway.sent_for("LicenseUsageNotice")) == 1
        [full] = gateway.sent_for("LicenseFullNotice")
        assert message_of(full)["template_ref"] == "license-usage-100"
        assert await letter_engine.handle(license_changed(8, plan="plan-2")) == "processed"
        assert len(gateway.sent_for("LicenseUsageNotice")) == 2


class TestCatalogChecks:
    def test_every_integration_letter_is_in_the_catalog(self) -> None:
        names = {s.name for s in LETTERS if not s.rendered}
        assert names == {
            "NewsletterGroupSubscribe",
            "NewsletterGroupUnsubscribe",
            "NewsletterEmailChange",
            "CrmContactSync",
            "CrmEmailChange",
            "CrmSpamReport",
            "LicenseUsageNotice",
            "LicenseFullNotice",
            "LicenseWeeklyDigest",
        }

    @pytest.mark.parametrize(
        ("spec", "error"),
        [
            (dict(channel="crm"), "channel 'crm' needs an outbound"),
            (dict(enrichments=frozenset()), "needs the client enrichment"),
            (
                dict(channel="crm", enrichments=frozenset(), outbound=Outbound(action="mark_spam")),
                "no recipients without the client enrichment",
            ),
            (
                dict(
                    channel="crm",
                    outbound=Outbound(action="mark_spam", external_id_from="Nope"),
                ),
                "external_id_from names unknown letter 'Nope'",
            ),
        ],
    )
    def test_declarations_that_could_not_be_sent_are_refused(
        self, spec: dict[str, Any], error: str
    ) -> None:
        with pytest.raises(ValueError, match=error):
            Catalog(
                [
                    LetterSpec(
                        name="X",
                        params=LetterParams,
                        triggers=(Trigger("user.signed_up"),),
                        timing=lambda _p: Immediately(),
                        **spec,
                    )
                ]
            )

    def test_an_addressee_listed_twice_gets_one_letter(self) -> None:
        from notifier.letters.service import addressees

        spec = LetterSpec(
            name="X",
            params=LetterParams,
            triggers=(Trigger("user.signed_up"),),
            timing=lambda _p: Immediately(),
            channel="crm",
            enrichments=frozenset(),
            outbound=Outbound(
                action="upsert_contact",
                recipients=lambda _f, _p: [
                    Addressee("a@x.example", name="first"),
                    Addressee("a@x.example", name="second"),
                ],
            ),
        )
        found = addressees(spec, None, LetterParams())  # type: ignore[arg-type]
        assert [a.name for a in found] == ["first"]


ADMIN = "ecu-5"


def admin_event(kind: str, *, at: datetime = START) -> dict[str, Any]:
    return event_body(
        f"license.admin_{kind}",
        client_id=ADMIN,
        payload={"email": "admin@acme.example", "enterprise_customer_id": "client-1"},
        occurred_at=at,
    )


class TestWeeklyDigest:
    """Seed 002: weekly after the 7th day of the admin's activation, until deactivated."""

    async def _drain_at(self, engine: Engine, at: datetime) -> None:
        engine.clock.set(at)
        await engine.sender.drain(now=at)

    async def test_first_after_7_days_then_weekly_on_the_same_time(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        assert await letter_engine.handle(admin_event("activated")) == "processed"
        [first] = await letter_engine.letters(letter="LicenseWeeklyDigest")
        assert first.status == LetterStatus.scheduled
        assert first.send_at == START + timedelta(days=7)
        await self._drain_at(letter_engine, START + timedelta(days=7))
        [item] = gateway.sent_for("LicenseWeeklyDigest")
        assert message_of(item)["template_ref"] == "license-weekly-digest"
        assert message_of(item)["to"][0]["external_id"] == "admin@acme.example"
        first_done, second = await letter_engine.letters(letter="LicenseWeeklyDigest")
        assert first_done.status == LetterStatus.sent
        assert (second.status, second.origin.value) == (LetterStatus.scheduled, "repeat")
        assert second.send_at == START + timedelta(days=14)
        assert second.expires_at == START + timedelta(days=15)
        assert second.context["repeat"] == {"of": first.id, "occurrence": 2}
        assert second.context["message"] == first.context["message"]
        await self._drain_at(letter_engine, START + timedelta(days=14))
        letters = await letter_engine.letters(letter="LicenseWeeklyDigest")
        assert [x.status for x in letters] == [
            LetterStatus.sent,
            LetterStatus.sent,
            LetterStatus.scheduled,
        ]
        assert letters[2].send_at == START + timedelta(days=21)
        assert letters[2].context["repeat"]["occurrence"] == 3
        assert len(gateway.sent_for("LicenseWeeklyDigest")) == 2

    async def test_deactivation_cancels_the_pending_one_and_ends_the_series(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        assert await letter_engine.handle(admin_event("activated")) == "processed"
        await self._drain_at(letter_engine, START + timedelta(days=7))
        later = START + timedelta(days=9)
        assert await letter_engine.handle(admin_event("deactivated", at=later)) == "processed"
        letters = await letter_engine.letters(letter="LicenseWeeklyDigest")
        assert [x.status for x in letters] == [LetterStatus.sent, LetterStatus.cancelled]
        await self._drain_at(letter_engine, START + timedelta(days=30))
        assert len(await letter_engine.letters(letter="LicenseWeeklyDigest")) == 2
        assert len(gateway.sent_for("LicenseWeeklyDigest")) == 1

    async def test_an_occurrence_written_after_a_cancel_committed_is_cancelled_when_due(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        """The race: the next occurrence is written by the drain without the client's lock,
        so a deactivation committing meanwhile does not see it; its remembered cancellation
        stops it when it is due."""
        assert await letter_engine.handle(admin_event("activated")) == "processed"
        await self._drain_at(letter_engine, START + timedelta(days=7))
        deactivated = admin_event("deactivated", at=START + timedelta(days=8))
        async with letter_engine.sessionmaker.begin() as session:  # only the remembered row
            await repository.record_cancellations(
                session,
                [
                    {
                        "letter": "LicenseWeeklyDigest",
                        "subject": f"client:{ADMIN}",
                        "occurred_at": START + timedelta(days=8),
                        "event_id": uuid.UUID(deactivated["id"]),
                        "event_type": "license.admin_deactivated",
                    }
                ],
            )
        await self._drain_at(letter_engine, START + timedelta(days=14))
        letters = await letter_engine.letters(letter="LicenseWeeklyDigest")
        assert [x.status for x in letters] == [LetterStatus.sent, LetterStatus.cancelled]
        assert "license.admin_deactivated" in (letters[1].cancel_reason or "")
        assert len(gateway.sent_for("LicenseWeeklyDigest")) == 1

    async def test_a_failed_occurrence_keeps_the_series_and_a_long_outage_skips_weeks(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        gateway.outcome_for["LicenseWeeklyDigest"] = "permanent_error"
        assert await letter_engine.handle(admin_event("activated")) == "processed"
        # the drain was down: the first digest is claimed 23 days late (its expiry is 1 day)
        await self._drain_at(letter_engine, START + timedelta(days=30))
        first, second = await letter_engine.letters(letter="LicenseWeeklyDigest")
        assert first.status == LetterStatus.expired
        assert second.send_at == START + timedelta(days=35)  # on the weekly grid, not past
        await self._drain_at(letter_engine, START + timedelta(days=35))
        letters = await letter_engine.letters(letter="LicenseWeeklyDigest")
        assert [x.status for x in letters] == [
            LetterStatus.expired,
            LetterStatus.failed,
            LetterStatus.scheduled,
        ]

    async def test_a_re_activation_starts_a_new_series(self, letter_engine: Engine) -> None:
        assert await letter_engine.handle(admin_event("activated")) == "processed"
        day = START + timedelta(days=1)
        assert await letter_engine.handle(admin_event("deactivated", at=day)) == "processed"
        again = START + timedelta(days=2)
        assert await letter_engine.handle(admin_event("activated", at=again)) == "processed"
        letters = await letter_engine.letters(letter="LicenseWeeklyDigest")
        assert [(x.status, x.send_at) for x in letters] == [
            (LetterStatus.cancelled, START + timedelta(days=7)),
            (LetterStatus.scheduled, again + timedelta(days=7)),
        ]

    def test_a_repeating_letter_without_cancelling_events_is_refused(self) -> None:
        with pytest.raises(ValueError, match="a repeating letter needs cancelled_by"):
            Catalog(
                [
                    LetterSpec(
                        name="X",
                        params=LetterParams,
                        triggers=(Trigger("client.activated"),),
                        timing=lambda _p: Immediately(),
                        repeat=lambda _p: timedelta(days=7),
                    )
                ]
            )


class TestOutcomeMetrics:
    async def test_recorded_outcomes_are_counted_per_letter(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        from prometheus_client import REGISTRY

        def value(letter: str, outcome: str) -> float:
            labels = {"letter": letter, "outcome": outcome}
            return REGISTRY.get_sample_value("notifier_letter_outcomes_total", labels) or 0.0

        before = {
            ("CrmContactSync", "sent"): value("CrmContactSync", "sent"),
            ("CrmEmailChange", "failed"): value("CrmEmailChange", "failed"),
        }
        assert await letter_engine.handle(email_changed()) == "processed"  # never synced
        assert await letter_engine.handle(signed_up()) == "processed"
        assert value("CrmContactSync", "sent") == before[("CrmContactSync", "sent")] + 1
        assert value("CrmEmailChange", "failed") == before[("CrmEmailChange", "failed")] + 1
