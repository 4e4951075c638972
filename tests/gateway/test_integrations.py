import asyncio
import time
from typing import Any

import httpx
import pytest
from gateway.models import LoggedMessage
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway.conftest import (
    COUNTING,
    GatewayToken,
    SettingsFactory,
    client_for,
    email,
    running,
)
from tests.gateway.fakes import CountingProvider

BREAKER_KEY = "gateway:breaker:counting"


async def send(
    client: httpx.AsyncClient, headers: dict[str, str], key: str, body: dict[str, Any]
) -> dict[str, Any]:
    r = await client.post("/v1/messages", json=body, headers={**headers, "Idempotency-Key": key})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def switch(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, *, enabled: bool
) -> httpx.Response:
    return await client.put(
        f"/v1/providers/{name}/switch",
        json={"enabled": enabled, "reason": "maintenance"},
        headers=headers,
    )


class TestSwitches:
    async def test_switched_off_provider_answers_skipped_disabled(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        admin: dict[str, str],
        counting: CountingProvider,
    ) -> None:
        assert (await switch(client, admin, "counting", enabled=False)).status_code == 200
        result = await send(client, writer, "k1", email())
        assert (result["outcome"], result["code"]) == ("skipped", "disabled")
        assert counting.calls == 0

    async def test_replay_after_switching_on_sends_each_message_once(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        admin: dict[str, str],
        counting: CountingProvider,
    ) -> None:
        await switch(client, admin, "counting", enabled=False)
        keys = [f"k{i}" for i in range(5)]
        for key in keys:
            await send(client, writer, key, email(f"{key}@example.com"))
        listed = (await client.get("/v1/providers", headers=writer)).json()
        assert {p["name"]: p["replayable"] for p in listed}["counting"] == 5
        assert (
            await client.post("/v1/providers/counting:replay", headers=admin)
        ).status_code == 409
        await switch(client, admin, "counting", enabled=True)
        first, second = await asyncio.gather(
            client.post("/v1/providers/counting:replay", headers=admin),
            client.post("/v1/providers/counting:replay", headers=admin),
        )
        assert first.json()["total"] + second.json()["total"] == 5
        assert counting.calls == 5
        assert sorted(m.to[0].address or "" for m in counting.sent) == [
            f"{k}@example.com" for k in keys
        ]
        again = await send(client, writer, "k0", email("k0@example.com"))
        assert again["outcome"] == "accepted"
        assert (await client.post("/v1/providers/counting:replay", headers=admin)).json()[
            "total"
        ] == 0
        assert counting.calls == 5

    async def test_repeat_of_a_skipped_key_after_switching_on_sends_it(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        admin: dict[str, str],
        counting: CountingProvider,
    ) -> None:
        await switch(client, admin, "counting", enabled=False)
        await send(client, writer, "k1", email())
        await switch(client, admin, "counting", enabled=True)
        assert (await send(client, writer, "k1", email()))["outcome"] == "accepted"
        await client.post("/v1/providers/counting:replay", headers=admin)
        assert counting.calls == 1

    async def test_replayed_messages_are_in_the_status_feed_with_their_result(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        admin: dict[str, str],
        counting: CountingProvider,
    ) -> None:
        """The sender recorded them `skipped: disabled`; the feed tells it what the replay made
        of them (decision 0098). Messages never skipped are not in it."""
        await send(client, writer, "sent-before", email("early@example.com"))
        await switch(client, admin, "counting", enabled=False)
        for key in ("k1", "k2"):
            await send(client, writer, key, email(f"{key}@example.com"))
        await switch(client, admin, "counting", enabled=True)
        counting.outcome = "permanent"
        await client.post("/v1/providers/counting:replay", headers=admin)
        r = await client.get("/v1/status-changes", headers=admin)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert sorted(i["idempotency_key"] for i in items) == ["k1", "k2"]
        for item in items:
            assert (item["event"], item["status"]) == ("replayed", "permanent_error")
            assert item["provider"] == "counting"
            assert item["code"]

    async def test_switch_changes_are_audited_with_the_token_name(
        self, client: httpx.AsyncClient, admin: dict[str, str], writer: dict[str, str]
    ) -> None:
        await switch(client, admin, "counting", enabled=False)
        await switch(client, admin, "counting", enabled=True)
        history = (await client.get("/v1/providers/counting/switch/history", headers=admin)).json()
        assert [(h["enabled"], h["changed_by"]) for h in history] == [
            (True, "ops-alice"),
            (False, "ops-alice"),
        ]
        listed = {p["name"]: p for p in (await client.get("/v1/providers", headers=writer)).json()}
        assert listed["counting"]["switch_source"] == "operator"
        assert listed["log"] == listed["log"] | {"enabled": True, "switch_source": "settings"}

    async def test_unknown_provider_switch_is_404(
        self, client: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        assert (await switch(client, admin, "pigeon", enabled=False)).status_code == 404

    @pytest.mark.parametrize("gateway_settings", [{"counting": {"enabled": False}}], indirect=True)
    async def test_provider_can_start_switched_off_by_settings(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        result = await send(client, writer, "k1", email())
        assert result["code"] == "disabled"


#: a breaker that opens after 3 consecutive transient failures, for 2 s
OPENS_AFTER_THREE = pytest.mark.parametrize(
    "gateway_settings",
    [{"counting": {"breaker_threshold": 3, "breaker_cooldown_seconds": 2.0}}],
    indirect=True,
)


class TestCircuitBreaker:
    @OPENS_AFTER_THREE
    async def test_breaker_opens_after_consecutive_transient_failures_and_closes(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
    ) -> None:
        counting.outcome = "transient"
        for i in range(3):
            assert (await send(client, writer, f"k{i}", email()))["code"] == "http_503"
        opened = await send(client, writer, "k3", email())
        assert (opened["outcome"], opened["code"]) == ("transient_error", "circuit_open")
        assert 0 < opened["retry_after"] <= 2.0
        assert counting.calls == 3
        state = {p["name"]: p for p in (await client.get("/v1/providers", headers=writer)).json()}
        assert state["counting"]["breaker"]["state"] == "open"
        await asyncio.sleep(2.1)
        counting.outcome = "accepted"
        assert (await send(client, writer, "k3", email()))["outcome"] == "accepted"  # the probe
        assert (await send(client, writer, "k4", email()))["outcome"] == "accepted"
        assert counting.calls == 5
        state = {p["name"]: p for p in (await client.get("/v1/providers", headers=writer)).json()}
        assert state["counting"]["breaker"]["state"] == "closed"

    @pytest.mark.parametrize(
        "gateway_settings",
        [{"counting": {"breaker_threshold": 2, "breaker_cooldown_seconds": 1.5}}],
        indirect=True,
    )
    async def test_failed_probe_opens_the_circuit_again(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        counting.outcome = "transient"
        for i in range(2):
            await send(client, writer, f"k{i}", email())
        await asyncio.sleep(1.6)
        assert (await send(client, writer, "k2", email()))["code"] == "http_503"  # probe fails
        assert (await send(client, writer, "k3", email()))["code"] == "circuit_open"
        assert counting.calls == 3

    @pytest.mark.parametrize(
        "gateway_settings", [{"counting": {"breaker_threshold": 2}}], indirect=True
    )
    async def test_permanent_errors_do_not_open_the_circuit(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        counting.outcome = "permanent"
        for i in range(4):
            assert (await send(client, writer, f"k{i}", email()))["code"] == "invalid_recipient"
        assert counting.calls == 4

    @OPENS_AFTER_THREE
    async def test_a_success_resets_failures_another_process_counted(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
        redis_url: str,
    ) -> None:
        """Decision 0113: a success is not recorded after an ``allow`` that found no failure
        counted; one that found some (here counted by another gateway process) resets them."""
        redis = Redis.from_url(redis_url)
        try:
            await redis.hset(BREAKER_KEY, "failures", 2)
            assert (await send(client, writer, "ok", email()))["outcome"] == "accepted"
            assert not await redis.exists(BREAKER_KEY)
        finally:
            await redis.aclose()
        counting.outcome = "transient"
        for i in range(2):  # 2 of 3: the 2 counted before the success are gone
            assert (await send(client, writer, f"k{i}", email()))["code"] == "http_503"
        assert (await send(client, writer, "k2", email()))["code"] == "http_503"
        assert (await send(client, writer, "k3", email()))["code"] == "circuit_open"

    async def test_a_healthy_provider_costs_one_breaker_round_trip_per_call(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
        redis_url: str,
    ) -> None:
        """Decision 0113: the ``allow`` before the call, and no ``success`` after it while no
        failure is counted. Redis's MONITOR shows every command of this test's db."""
        db = int(redis_url.rsplit("/", 1)[1])
        redis = Redis.from_url(redis_url)
        seen: list[str] = []
        started = asyncio.Event()

        async def watch() -> None:
            async with redis.monitor() as monitor:
                started.set()
                async for command in monitor.listen():
                    if command.get("db") == db and command.get("client_type") != "lua":
                        seen.append(str(command["command"]))

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.wait_for(started.wait(), 5)
            for i in range(3):
                assert (await send(client, writer, f"k{i}", email()))["outcome"] == "accepted"
            await asyncio.sleep(0.2)  # MONITOR's stream catches up
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await redis.aclose()
        breaker = [c for c in seen if BREAKER_KEY in c]
        assert len(breaker) == 3, breaker
        assert all(" allow " in c for c in breaker), breaker
        assert counting.calls == 3


class TestRateLimit:
    async def test_rate_limit_holds_across_two_gateway_instances(
        self,
        make_settings: SettingsFactory,
        gateway_token: GatewayToken,
    ) -> None:
        providers = {
            "counting": {"kind": COUNTING, "rate_per_second": 2, "burst": 5},
        }
        settings = make_settings(providers=providers, rate_limit_max_wait_seconds=0)
        headers = await gateway_token("messages:write")
        async with running(settings) as one, running(settings) as two:
            async with client_for(one) as c1, client_for(two) as c2:
                started = time.monotonic()
                batches = await asyncio.gather(
                    *(
                        c.post(
                            "/v1/messages:batch",
                            json={
                                "items": [
                                    {"idempotency_key": f"{n}-{i}", "message": email()}
                                    for i in range(5)
                                ]
                            },
                            headers=headers,
                        )
                        for n, c in enumerate([c1, c2, c1, c2])
                    )
                )
                elapsed = time.monotonic() - started
            calls = sum(app.state.registry.get("counting").provider.calls for app in (one, two))
        results = [x for b in batches for x in b.json()["results"]]
        limited = [x for x in results if x["code"] == "rate_limited"]
        accepted = [x for x in results if x["outcome"] == "accepted"]
        assert len(accepted) == calls
        assert 5 <= calls <= 5 + int(elapsed * 2) + 1
        assert len(limited) == 20 - calls
        assert all(x["retry_after"] > 0 for x in limited)

    async def test_waits_briefly_for_tokens_before_answering_rate_limited(
        self, make_settings: SettingsFactory, gateway_token: GatewayToken
    ) -> None:
        providers = {"counting": {"kind": COUNTING, "rate_per_second": 20, "burst": 1}}
        settings = make_settings(providers=providers, rate_limit_max_wait_seconds=1.0)
        headers = await gateway_token("messages:write")
        async with running(settings) as application, client_for(application) as c:
            body = {"items": [{"idempotency_key": f"k{i}", "message": email()} for i in range(5)]}
            r = await c.post("/v1/messages:batch", json=body, headers=headers)
        assert {x["outcome"] for x in r.json()["results"]} == {"accepted"}


async def test_log_provider_is_the_default_of_every_channel(
    make_settings: SettingsFactory,
    gateway_token: GatewayToken,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    settings = make_settings(providers={"log": {"kind": "log"}}, default_provider="log")
    headers = await gateway_token("messages:write")
    async with running(settings) as application, client_for(application) as c:
        sms = await send(c, headers, "k1", {"channel": "sms", "to": [{"address": "+100"}]})
    assert sms["provider"] == "log"
    async with sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(LoggedMessage))).scalar() == 1
