"""PATCH /v1/config/letters/{name}: negative durations (and a zero expiry) are 422 naming the
parameter, nothing written; an override stored before that rule does not break the reads."""

from __future__ import annotations

import httpx
import pytest
from notifier.letters import repository
from notifier_common.db import session_scope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

URL = "/v1/config/letters/{}"


@pytest.mark.parametrize(
    ("letter", "params", "loc"),
    [
        ("ActivateClientNotice", {"expires_after": "-PT1H"}, "params.expires_after"),
        ("FirstRemindPrepaidNotice", {"delay": "-P1D"}, "params.delay"),
        ("FirstRemindPrepaidNotice", {"expires_after": "-P1D"}, "params.expires_after"),
        ("ThirdRemindOfferNotice", {"delay": "-PT1S"}, "params.delay"),
        ("PrepaidFirstTakeARideNotice", {"expires_after": -3600}, "params.expires_after"),
        ("LowBalanceNotice", {"min_interval": "-P1D"}, "params.min_interval"),
    ],
)
async def test_a_negative_duration_is_422_naming_the_param_and_not_written(
    letter: str,
    params: dict[str, object],
    loc: str,
    client: httpx.AsyncClient,
    configurer: dict[str, str],
) -> None:
    url = URL.format(letter)
    before = (await client.get(url, headers=configurer)).json()
    r = await client.patch(url, json={"params": params}, headers=configurer)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    [error] = r.json()["errors"]
    assert error["loc"] == loc
    assert "greater than" in error["msg"]
    after = (await client.get(url, headers=configurer)).json()
    assert (after["overrides"], after["effective"], after["timing"]) == (
        {},
        before["effective"],
        before["timing"],
    )
    assert (await client.get(f"{url}/audit", headers=configurer)).json() == []


async def test_a_zero_expiry_is_422_saying_why(
    client: httpx.AsyncClient, configurer: dict[str, str]
) -> None:
    r = await client.patch(
        URL.format("ActivateClientNotice"),
        json={"params": {"expires_after": "PT0S"}},
        headers=configurer,
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["loc"] == "params.expires_after"
    assert "greater than 0 seconds" in error["msg"]
    assert "expire every letter at once" in error["msg"]


async def test_zero_delay_and_zero_min_interval_and_no_expiry_are_accepted(
    client: httpx.AsyncClient, configurer: dict[str, str]
) -> None:
    r = await client.patch(
        URL.format("FirstRemindPrepaidNotice"),
        json={"params": {"delay": "PT0S", "expires_after": None}},
        headers=configurer,
    )
    assert r.status_code == 200, r.text
    assert r.json()["effective"]["delay"] == "PT0S"
    assert r.json()["effective"]["expires_after"] is None
    assert r.json()["timing"] == "0:00:00 after the event"
    r = await client.patch(
        URL.format("LowBalanceNotice"),
        json={"params": {"min_interval": "PT0S"}},
        headers=configurer,
    )
    assert r.status_code == 200, r.text
    assert r.json()["effective"]["min_interval"] == "PT0S"


async def test_an_override_stored_before_the_rule_reads_as_the_default(
    client: httpx.AsyncClient,
    configurer: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with session_scope(sessionmaker) as s:  # what the API accepted before the fix
        await repository.upsert_setting(
            s,
            letter="FirstRemindPrepaidNotice",
            enabled=True,
            params={"delay": "-P1D"},
            updated_by="ops-old",
        )
    url = URL.format("FirstRemindPrepaidNotice")
    r = await client.get(url, headers=configurer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["overrides"] == {"delay": "-P1D"}  # shown as stored, so it can be fixed
    assert body["effective"]["delay"] == "P1D"  # the engine uses the default
    assert body["timing"] == "1 day, 0:00:00 after the event"
    assert (await client.get("/v1/config/letters", headers=configurer)).status_code == 200

    r = await client.patch(url, json={"enabled": False}, headers=configurer)
    assert r.status_code == 200, r.text  # switching it off is never blocked by it
    r = await client.patch(url, json={"params": {"expires_after": "P3D"}}, headers=configurer)
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["errors"]] == ["params.delay"]
    r = await client.patch(url, json={"params": {"delay": "P2D"}}, headers=configurer)
    assert r.status_code == 200, r.text
    assert r.json()["overrides"] == {"delay": "P2D"}
