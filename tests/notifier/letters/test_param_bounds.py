"""Duration parameters of letters: never negative, an expiry never zero, whoever writes them
(the operator API and the CLI both go through ``settings_service.update``); an override stored
before these rules existed does not break the reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from notifier.letters import repository, settings_service
from notifier.letters.definitions import LETTERS
from notifier.letters.settings_service import SettingsCache
from notifier_common.db import session_scope
from notifier_common.errors import Unprocessable
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

SM = async_sessionmaker[AsyncSession]

# Where a duration of 0 makes no sense (an expiry of 0 expires every letter at once). A new
# duration parameter fails test_every_duration_param_is_known until it is listed here or below.
ZERO_REFUSED = {"expires_after"}
# delay / first_after 0 = at once; min_interval 0 = no cap; every 0 = no repeat
ZERO_ALLOWED = {"delay", "min_interval", "first_after", "every"}


def _is_duration(prop: dict[str, Any]) -> bool:
    return prop.get("format") == "duration" or any(
        alt.get("format") == "duration" for alt in prop.get("anyOf", ())
    )


def duration_params() -> list[tuple[str, str]]:
    """Every (letter, parameter) of the catalog whose value is a duration."""
    return [
        (spec.name, name)
        for spec in LETTERS
        for name, prop in spec.params.model_json_schema()["properties"].items()
        if _is_duration(prop)
    ]


DURATIONS = duration_params()
ZERO_REFUSING = [(letter, name) for letter, name in DURATIONS if name in ZERO_REFUSED]


async def update(sm: SM, letter: str, **kwargs: Any) -> settings_service.EffectiveSettings:
    async with session_scope(sm) as s:
        return await settings_service.update(s, letter, changed_by="ops", **kwargs)


async def effective(sm: SM, letter: str) -> settings_service.EffectiveSettings:
    async with sm() as s:
        return (await settings_service.effective(s, [letter]))[letter]


async def refused(sm: SM, letter: str, params: dict[str, Any]) -> Unprocessable:
    with pytest.raises(Unprocessable) as caught:
        await update(sm, letter, params=params)
    return caught.value


def test_every_duration_param_is_known() -> None:
    assert {name for _, name in DURATIONS} == ZERO_REFUSED | ZERO_ALLOWED
    assert ("ActivateClientNotice", "expires_after") in DURATIONS
    assert ("FirstRemindPrepaidNotice", "delay") in DURATIONS
    assert ("LowBalanceNotice", "min_interval") in DURATIONS


@pytest.mark.parametrize(("letter", "name"), DURATIONS)
@pytest.mark.parametrize("value", ["-PT1S", -60])
async def test_a_negative_duration_is_refused_and_nothing_is_written(
    letter: str, name: str, value: object, sessionmaker: SM
) -> None:
    exc = await refused(sessionmaker, letter, {name: value})
    assert [e["loc"] for e in exc.errors or []] == [f"params.{name}"]
    [error] = exc.errors or []
    assert error["type"] in {"greater_than_equal", "greater_than"}
    assert "greater than" in error["msg"]
    eff = await effective(sessionmaker, letter)
    assert eff.overrides == {}
    assert getattr(eff.params, name) == getattr(LETTERS.get(letter).default_params(), name)
    async with sessionmaker() as s:
        assert await settings_service.audit_trail(s, letter) == []


@pytest.mark.parametrize(("letter", "name"), ZERO_REFUSING)
@pytest.mark.parametrize("value", ["PT0S", 0])
async def test_a_zero_expiry_is_refused_saying_why(
    letter: str, name: str, value: object, sessionmaker: SM
) -> None:
    exc = await refused(sessionmaker, letter, {name: value})
    [error] = exc.errors or []
    assert error["loc"] == f"params.{name}"
    assert error["type"] == "greater_than"
    assert "greater than 0 seconds" in error["msg"]
    assert "expire every letter at once" in error["msg"]


@pytest.mark.parametrize(
    ("letter", "name"), [(letter, name) for letter, name in DURATIONS if name in ZERO_ALLOWED]
)
async def test_zero_is_kept_where_it_means_something(
    letter: str, name: str, sessionmaker: SM
) -> None:
    eff = await update(sessionmaker, letter, params={name: "PT0S"})
    assert getattr(eff.params, name) == timedelta(0)
    assert eff.overrides == {name: "PT0S"}


async def test_no_expiry_and_positive_durations_are_accepted(sessionmaker: SM) -> None:
    eff = await update(sessionmaker, "ActivateClientNotice", params={"expires_after": None})
    assert eff.params.expires_after is None
    eff = await update(
        sessionmaker, "FirstRemindPrepaidNotice", params={"delay": "PT1S", "expires_after": "PT1S"}
    )
    assert (eff.params.delay, eff.params.expires_after) == (timedelta(seconds=1),) * 2


class TestStoredBeforeTheRule:
    """A row written before this validation existed (``upsert_setting`` does not validate)."""

    async def store(self, sm: SM, letter: str, params: dict[str, Any]) -> None:
        async with session_scope(sm) as s:
            await repository.upsert_setting(
                s, letter=letter, enabled=True, params=params, updated_by="old"
            )

    async def test_reads_use_the_defaults_and_show_the_stored_override(
        self, sessionmaker: SM
    ) -> None:
        await self.store(sessionmaker, "ActivateClientNotice", {"expires_after": "-PT1H"})
        eff = await effective(sessionmaker, "ActivateClientNotice")
        assert eff.params.expires_after == timedelta(days=1)  # the code default, not -1 h
        assert eff.overrides == {"expires_after": "-PT1H"}
        cached = await SettingsCache(sessionmaker, ttl=0).get()  # what the worker reads
        assert cached["ActivateClientNotice"].params.expires_after == timedelta(days=1)

    async def test_a_switch_alone_still_works_and_a_params_change_must_fix_it(
        self, sessionmaker: SM
    ) -> None:
        await self.store(sessionmaker, "FirstRemindPrepaidNotice", {"delay": "-P1D"})
        eff = await update(sessionmaker, "FirstRemindPrepaidNotice", enabled=False)
        assert (eff.enabled, eff.overrides) == (False, {"delay": "-P1D"})
        exc = await refused(sessionmaker, "FirstRemindPrepaidNotice", {"expires_after": "P3D"})
        assert [e["loc"] for e in exc.errors or []] == ["params.delay"]
        eff = await update(sessionmaker, "FirstRemindPrepaidNotice", params={"delay": "P2D"})
        assert eff.overrides == {"delay": "P2D"}
        assert eff.params.delay == timedelta(days=2)
        await self.store(sessionmaker, "FirstRemindPrepaidNotice", {"delay": "-P1D"})
        eff = await update(sessionmaker, "FirstRemindPrepaidNotice", reset_params=True)
        assert eff.overrides == {}


@pytest.mark.parametrize(("letter", "name"), DURATIONS)
async def test_a_duration_longer_than_a_year_is_refused(
    sessionmaker: SM, letter: str, name: str
) -> None:
    """``P999999999D`` was accepted, and computing a send time from it overflowed on every
    event; a year is the bound, as for ``days``."""
    error = await refused(sessionmaker, letter, {name: "P366D"})
    assert [e["loc"] for e in error.errors or []] == [f"params.{name}"]
    assert (await update(sessionmaker, letter, params={name: "P365D"})).params.model_dump()[
        name
    ] == timedelta(days=365)
