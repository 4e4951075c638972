"""Provider list, integration switches (audited) and replay of messages skipped while off."""

from __future__ import annotations

from fastapi import APIRouter
from notifier_common.errors import Conflict, NotFound, problem_responses
from notifier_common.logging import get_logger
from redis.exceptions import RedisError

from gateway.deps import Admin, Breaker, Messages, MessagesReader, Registry, Session, Settings
from gateway.integrations import repository
from gateway.integrations.schemas import (
    BreakerOut,
    ProviderOut,
    ReplayOut,
    SwitchChangeOut,
    SwitchIn,
)
from gateway.messages import repository as messages_repository
from gateway.providers.registry import ProviderEntry

router = APIRouter(prefix="/v1", tags=["providers"])
log = get_logger("gateway.integrations")


async def _breaker(breaker: Breaker, entry: ProviderEntry, settings: Settings) -> BreakerOut:
    conf = entry.settings
    try:
        status = await breaker.peek(
            entry.name,
            threshold=conf.breaker_threshold or settings.breaker_threshold,
            cooldown=conf.breaker_cooldown_seconds or settings.breaker_cooldown_seconds,
        )
    except RedisError:
        return BreakerOut(state="unknown", retry_after=0)
    return BreakerOut(state=status.state, retry_after=status.retry_after)


def _entry(registry: Registry, name: str) -> ProviderEntry:
    entry = registry.get(name)
    if entry is None:
        raise NotFound(f"provider {name!r} is not configured")
    return entry


async def _describe(
    session: Session, registry: Registry, breaker: Breaker, settings: Settings, name: str
) -> ProviderOut:
    entry = _entry(registry, name)
    switch = await repository.get(session, name)
    return ProviderOut(
        name=name,
        kind=entry.kind,
        enabled=switch.enabled if switch else entry.settings.enabled,
        switch_source="operator" if switch else "settings",
        changed_by=switch.changed_by if switch else None,
        changed_at=switch.changed_at if switch else None,
        breaker=await _breaker(breaker, entry, settings),
        rate_per_second=entry.settings.rate_per_second,
        burst=entry.settings.burst,
        replayable=await messages_repository.count_replayable(session, name),
    )


@router.get(
    "/providers",
    response_model=list[ProviderOut],
    summary="Configured providers with switch and circuit state",
    responses=problem_responses(),
)
async def list_providers(
    session: Session, registry: Registry, breaker: Breaker, settings: Settings, _: MessagesReader
) -> list[ProviderOut]:
    return [await _describe(session, registry, breaker, settings, e.name) for e in registry]


@router.put(
    "/providers/{name}/switch",
    response_model=ProviderOut,
    summary="Turn a provider (integration) on or off",
    description=(
        "Off: messages for the provider are answered `skipped` with code `disabled` and kept, "
        "so `POST /v1/providers/{name}:replay` sends them once it is on again. Audited with the "
        "token's name."
    ),
    responses=problem_responses(404),
)
async def put_switch(
    name: str,
    body: SwitchIn,
    session: Session,
    registry: Registry,
    breaker: Breaker,
    settings: Settings,
    principal: Admin,
) -> ProviderOut:
    _entry(registry, name)
    await repository.set_switch(
        session, name, enabled=body.enabled, changed_by=principal.name, reason=body.reason
    )
    log.info("gateway.provider_switched", provider=name, enabled=body.enabled, by=principal.name)
    return await _describe(session, registry, breaker, settings, name)


@router.get(
    "/providers/{name}/switch/history",
    response_model=list[SwitchChangeOut],
    summary="Audit trail of a provider's switch, newest first",
    responses=problem_responses(404),
)
async def switch_history(
    name: str, session: Session, registry: Registry, _: Admin
) -> list[SwitchChangeOut]:
    _entry(registry, name)
    rows = await repository.history(session, name, limit=100)
    return [SwitchChangeOut.model_validate(r) for r in rows]


@router.post(
    "/providers/{name}:replay",
    response_model=ReplayOut,
    summary="Send the messages a provider skipped while it was off",
    description=(
        "Claims every `skipped: disabled` message of the provider and sends it (each once, even "
        "with concurrent replays or repeats of the same keys). 409 while the provider is off."
    ),
    responses=problem_responses(404, 409),
)
async def replay(
    name: str, session: Session, registry: Registry, service: Messages, settings: Settings, _: Admin
) -> ReplayOut:
    entry = _entry(registry, name)
    switch = await repository.get(session, name)
    if not (switch.enabled if switch else entry.settings.enabled):
        raise Conflict(f"provider {name!r} is switched off; turn it on first")
    outcomes = await service.replay(name)
    log.info("gateway.provider_replayed", provider=name, **outcomes)
    return ReplayOut(provider=name, total=sum(outcomes.values()), outcomes=dict(outcomes))
