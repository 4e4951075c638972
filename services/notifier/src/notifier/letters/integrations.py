"""The letters of seeds 000, 001 and 002: newsletter (un)subscriptions, CRM contact sync,
license-usage campaigns and the admins' weekly digest. Each is an ``Outbound`` letter: the
provider composes it (a Basket chain, a CRM call, a Braze campaign), so there are no templates;
the gateway message's fields are decided with the letter and kept in its context (``message``).
Every value is a parameter (``PATCH /v1/config/letters/{name}``) and every letter has its
switch, like the corp letters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from notifier_common.events import (
    AnyEvent,
    LicenseAdminActivated,
    LicenseAllocationChanged,
    UserEmailChanged,
    UserJoinedGroup,
    UserLeftGroup,
    UserMarkedSpam,
    UserSignedUp,
)
from pydantic import Field

from notifier.letters.catalog import (
    Addressee,
    AnySpec,
    Duration,
    Enrichment,
    Expiry,
    Facts,
    LetterParams,
    LetterSpec,
    Outbound,
    Trigger,
)
from notifier.letters.timing import After, Immediately, Timing

NONE: frozenset[Enrichment] = frozenset()


class ActionParams(LetterParams):
    """An action on a person's record goes at once, night or day, and is never dropped for
    being late (a subscription, an e-mail change or a spam mark still matters a day later)."""

    respect_quiet_hours: bool = False


class GroupNewsletterParams(ActionParams):
    lists_by_group: dict[str, list[str]] = Field(
        default_factory=lambda: {"nda": ["mozillians-nda"], "vouched": ["mozilla-phone"]},
        description=(
            "Newsletters a member of each group is subscribed to (and unsubscribed from when "
            "leaving it); groups missing here change nothing."
        ),
    )


class LicenseUsageParams(LetterParams):
    threshold_percent: int = Field(
        75, ge=1, le=100, description="Sent once per plan when allocated / total reaches it."
    )
    campaign_id: str = Field(
        "license-usage-75", min_length=1, description="The ESP campaign (its template)."
    )


class LicenseFullParams(LicenseUsageParams):
    threshold_percent: int = Field(100, ge=1, le=100)
    campaign_id: str = Field("license-usage-100", min_length=1)


def _now(_params: LetterParams) -> Timing:
    return Immediately()


# ---- seed 000: newsletters -------------------------------------------------------------------


def _group_lists(facts: Facts, params: GroupNewsletterParams) -> list[str]:
    event = facts.event
    assert isinstance(event, UserJoinedGroup | UserLeftGroup)
    return params.lists_by_group.get(event.payload.group, [])


def _group_condition(facts: Facts, params: GroupNewsletterParams) -> str | None:
    if _group_lists(facts, params):
        return None
    group = facts.event.payload.group  # type: ignore[union-attr]
    return f"group {group!r} has no newsletters (lists_by_group)"


def _member(facts: Facts, _params: LetterParams) -> Sequence[Addressee]:
    event = facts.event
    assert isinstance(event, UserJoinedGroup | UserLeftGroup | UserMarkedSpam)
    return [Addressee(event.payload.email)]


def _group_fields(facts: Facts, params: GroupNewsletterParams) -> Mapping[str, Any]:
    return {"lists": _group_lists(facts, params)}


def _all_lists(params: GroupNewsletterParams) -> list[str]:
    return sorted({n for lists in params.lists_by_group.values() for n in lists})


def _new_address(facts: Facts, _params: LetterParams) -> Sequence[Addressee]:
    event = facts.event
    assert isinstance(event, UserEmailChanged)
    return [Addressee(event.payload.new_email)]


def _moved_lists(facts: Facts, params: GroupNewsletterParams) -> Mapping[str, Any]:
    event = facts.event
    assert isinstance(event, UserEmailChanged)
    return {"previous_address": event.payload.old_email, "lists": _all_lists(params)}


def _any_lists(_facts: Facts, params: GroupNewsletterParams) -> str | None:
    return None if _all_lists(params) else "no newsletters configured (lists_by_group)"


NEWSLETTER_LETTERS: list[AnySpec] = [
    LetterSpec(
        name="NewsletterGroupSubscribe",
        params=GroupNewsletterParams,
        triggers=(Trigger("user.group_joined", label="a group with newsletters"),),
        timing=_now,
        channel="newsletter",
        enrichments=NONE,
        condition=_group_condition,
        outbound=Outbound(action="subscribe", fields=_group_fields, recipients=_member),
        description="Subscribes a new group member to the group's newsletters (seed 000).",
    ),
    LetterSpec(
        name="NewsletterGroupUnsubscribe",
        params=GroupNewsletterParams,
        triggers=(Trigger("user.group_left", label="a group with newsletters"),),
        timing=_now,
        channel="newsletter",
        enrichments=NONE,
        condition=_group_condition,
        outbound=Outbound(action="unsubscribe", fields=_group_fields, recipients=_member),
        description="Unsubscribes a member who left a group from its newsletters (seed 000).",
    ),
    LetterSpec(
        name="NewsletterEmailChange",
        params=GroupNewsletterParams,
        triggers=(Trigger("user.email_changed"),),
        timing=_now,
        channel="newsletter",
        enrichments=NONE,
        condition=_any_lists,
        outbound=Outbound(action="change_email", fields=_moved_lists, recipients=_new_address),
        description="Moves the user's newsletter subscriptions to the new address (seed 000).",
    ),
]


# ---- seed 001: CRM ---------------------------------------------------------------------------

CRM_CONTACT = "CrmContactSync"


def _signed_up(facts: Facts, _params: LetterParams) -> Sequence[Addressee]:
    event = facts.event
    assert isinstance(event, UserSignedUp)
    return [
        Addressee(
            event.payload.email,
            name=event.payload.name,
            external_id=event.client_id,  # the app's user id, kept on the CRM contact
            properties={"language": event.payload.language},
        )
    ]


def _sign_up_fields(facts: Facts, _params: LetterParams) -> Mapping[str, Any]:
    event = facts.event
    assert isinstance(event, UserSignedUp)
    return {"lists": list(event.payload.mailing_lists)}


def _old_address(facts: Facts, _params: LetterParams) -> Mapping[str, Any]:
    event = facts.event
    assert isinstance(event, UserEmailChanged)
    return {"previous_address": event.payload.old_email}


def _spam_fields(facts: Facts, _params: LetterParams) -> Mapping[str, Any]:
    return {"properties": {"marked_at": facts.event.occurred_at.isoformat()}}


CRM_LETTERS: list[AnySpec] = [
    LetterSpec(
        name=CRM_CONTACT,
        params=ActionParams,
        triggers=(Trigger("user.signed_up"),),
        timing=_now,
        channel="crm",
        enrichments=NONE,
        outbound=Outbound(action="upsert_contact", fields=_sign_up_fields, recipients=_signed_up),
        description=(
            "Creates (or updates) the CRM contact of a user who signed up; the CRM id it answers "
            "is the letter's provider_message_id (seed 001)."
        ),
    ),
    LetterSpec(
        name="CrmEmailChange",
        params=ActionParams,
        triggers=(Trigger("user.email_changed"),),
        timing=_now,
        channel="crm",
        enrichments=NONE,
        outbound=Outbound(
            action="change_email",
            fields=_old_address,
            recipients=_new_address,
            external_id_from=CRM_CONTACT,
        ),
        description=(
            "Changes the e-mail of the user's CRM contact (the id its CrmContactSync answered; "
            "waits while that one is pending, fails `not_synced` without one) (seed 001)."
        ),
    ),
    LetterSpec(
        name="CrmSpamReport",
        params=ActionParams,
        triggers=(Trigger("user.marked_spam"),),
        timing=_now,
        channel="crm",
        enrichments=NONE,
        outbound=Outbound(
            action="mark_spam",
            fields=_spam_fields,
            recipients=_member,
            external_id_from=CRM_CONTACT,
        ),
        description="Marks the user's CRM contact as spam (seed 001).",
    ),
]


# ---- seed 002: license usage (ESP campaign) --------------------------------------------------


def _license(event: AnyEvent) -> LicenseAllocationChanged:
    assert isinstance(event, LicenseAllocationChanged)
    return event


def _reached(facts: Facts, params: LicenseUsageParams) -> str | None:
    payload = _license(facts.event).payload
    if payload.allocated * 100 >= params.threshold_percent * payload.total:
        return None
    return (
        f"{payload.allocated} of {payload.total} licenses allocated: "
        f"below {params.threshold_percent} %"
    )


def _admins(facts: Facts, _params: LetterParams) -> Sequence[Addressee]:
    """The enterprise's admins (the client's addresses); the address is the ESP user id."""
    client = facts.client
    assert client is not None
    return [
        Addressee(address, external_id=address, properties={"user_email": address})
        for address in client.emails
    ]


def _usage_fields(facts: Facts, params: LicenseUsageParams) -> Mapping[str, Any]:
    event = _license(facts.event)
    client = facts.client
    return {
        "template_ref": params.campaign_id,
        "properties": {
            "enterprise_customer_id": event.client_id,
            "enterprise_name": client.name if client is not None else None,
            "subscription_plan_uuid": event.payload.subscription_plan_id,
            "allocated_license_count": event.payload.allocated,
            "total_license_count": event.payload.total,
            "threshold_percent": params.threshold_percent,
        },
    }


def _plan_key(facts: Facts) -> str:
    return f"plan:{_license(facts.event).payload.subscription_plan_id}"


def _license_usage(name: str, params: type[LicenseUsageParams], what: str) -> AnySpec:
    return LetterSpec(
        name=name,
        params=params,
        triggers=(Trigger("license.allocation_changed"),),
        timing=_now,
        channel="esp",
        enrichments=frozenset({"client"}),
        condition=_reached,
        dedup=_plan_key,
        outbound=Outbound(action="send", fields=_usage_fields, recipients=_admins),
        description=(
            f"Tells each admin once per subscription plan that {what} of its licenses are "
            "allocated, through the ESP campaign `campaign_id` (seed 002)."
        ),
    )


class WeeklyDigestParams(LetterParams):
    first_after: Duration = Field(
        timedelta(days=7), description="The first digest, after the admin's activation."
    )
    every: Duration = Field(
        timedelta(days=7),
        description="Then one per interval, on the same weekday and time (0 = only the first).",
    )
    campaign_id: str = Field(
        "license-weekly-digest", min_length=1, description="The ESP campaign (its template)."
    )
    expires_after: Expiry | None = Field(
        timedelta(days=1), description="A digest not sent within a day is skipped (expired)."
    )


def _activation_key(facts: Facts) -> str:
    """One series per activation (a re-activation after a deactivation starts a new one)."""
    return f"admin:{facts.event.client_id}:{facts.event.occurred_at.isoformat()}"


def _first_digest(params: WeeklyDigestParams) -> Timing:
    return After(params.first_after)


def _every(params: WeeklyDigestParams) -> timedelta | None:
    return params.every or None


def _admin(facts: Facts, _params: LetterParams) -> Sequence[Addressee]:
    event = facts.event
    assert isinstance(event, LicenseAdminActivated)
    return [
        Addressee(
            event.payload.email,
            name=event.payload.name,
            external_id=event.payload.email,
            properties={"user_email": event.payload.email},
        )
    ]


def _digest_fields(facts: Facts, params: WeeklyDigestParams) -> Mapping[str, Any]:
    event = facts.event
    assert isinstance(event, LicenseAdminActivated)
    return {
        "template_ref": params.campaign_id,
        "properties": {"enterprise_customer_id": event.payload.enterprise_customer_id},
    }


LICENSE_LETTERS: list[AnySpec] = [
    _license_usage("LicenseUsageNotice", LicenseUsageParams, "75 %"),
    _license_usage("LicenseFullNotice", LicenseFullParams, "100 %"),
    LetterSpec(
        name="LicenseWeeklyDigest",
        params=WeeklyDigestParams,
        triggers=(Trigger("license.admin_activated"),),
        timing=_first_digest,
        channel="esp",
        enrichments=NONE,
        cancelled_by={"license.admin_deactivated": "client"},
        dedup=_activation_key,
        repeat=_every,
        outbound=Outbound(action="send", fields=_digest_fields, recipients=_admin),
        description=(
            "The license digest to an enterprise admin: 7 days after the activation, then "
            "weekly until `license.admin_deactivated` (the ESP campaign composes it from the "
            "attributes it holds) (seed 002)."
        ),
    ),
]

INTEGRATION_LETTERS: list[AnySpec] = NEWSLETTER_LETTERS + CRM_LETTERS + LICENSE_LETTERS
