"""Thin routes of the configuration API: letters (switch + parameters, audited) and
integration switches (the gateway's providers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from notifier_common.errors import problem_responses

from notifier.api.deps import ConfigWriter, GatewayIntegrations, LettersReader, Session
from notifier.config import service
from notifier.config.schemas import (
    AuditOut,
    IntegrationOut,
    LetterConfigOut,
    LetterConfigPatch,
    SwitchChangeOut,
    SwitchIn,
)

router = APIRouter(prefix="/v1/config", tags=["config"])

LetterName = Annotated[
    str,
    Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_]+$", examples=["LowBalanceNotice"]),
]
ProviderName = Annotated[
    str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$", examples=["smtp"])
]


@router.get(
    "/letters",
    response_model=list[LetterConfigOut],
    summary="The letter catalog with switches and parameters",
    description=(
        "Every letter declared in code: triggers, cancelling events, timing, `enabled`, and its "
        "parameters as code defaults, database overrides and the effective values, with the "
        "JSON Schema of the typed parameter model."
    ),
    responses=problem_responses(),
)
async def list_letter_configs(session: Session, _: LettersReader) -> list[LetterConfigOut]:
    return await service.list_letters(session)


@router.get(
    "/letters/{name}",
    response_model=LetterConfigOut,
    summary="One letter's configuration",
    responses=problem_responses(404),
)
async def get_letter_config(
    name: LetterName, session: Session, _: LettersReader
) -> LetterConfigOut:
    return await service.get_letter(session, name)


@router.patch(
    "/letters/{name}",
    response_model=LetterConfigOut,
    summary="Switch a letter or change its parameters",
    description=(
        "`params` is partial and merged over the stored overrides; the result is validated "
        "against the letter's typed parameter model (422 with field errors, nothing written). "
        "Each effective change writes an audit row: who (token name), when, old -> new."
    ),
    responses=problem_responses(404),
)
async def patch_letter_config(
    name: LetterName, body: LetterConfigPatch, session: Session, principal: ConfigWriter
) -> LetterConfigOut:
    return await service.update_letter(session, name, body, by=principal.name)


@router.get(
    "/letters/{name}/audit",
    response_model=list[AuditOut],
    summary="Audit trail of a letter's settings, newest first",
    responses=problem_responses(404),
)
async def letter_config_audit(
    name: LetterName,
    session: Session,
    _: LettersReader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    return await service.audit(session, name, limit=limit)


@router.get(
    "/integrations",
    response_model=list[IntegrationOut],
    summary="Integrations (gateway providers) with their switches",
    description="Read from the delivery gateway; 503 when it cannot be reached.",
    responses=problem_responses(503),
)
async def list_integrations(gateway: GatewayIntegrations, _: LettersReader) -> list[IntegrationOut]:
    return await gateway.providers()


@router.put(
    "/integrations/{name}/switch",
    response_model=IntegrationOut,
    summary="Turn an integration on or off",
    description=(
        "Flips the provider's global switch at the gateway (messages for a provider that is off "
        "end `skipped` and can be replayed at the gateway). Audited at the gateway with the "
        "operator's token name in the reason."
    ),
    responses=problem_responses(404, 503),
)
async def put_integration_switch(
    name: ProviderName, body: SwitchIn, gateway: GatewayIntegrations, principal: ConfigWriter
) -> IntegrationOut:
    return await gateway.switch(name, body, by=principal.name)


@router.get(
    "/integrations/{name}/history",
    response_model=list[SwitchChangeOut],
    summary="Audit trail of an integration switch, newest first",
    responses=problem_responses(404, 503),
)
async def integration_history(
    name: ProviderName, gateway: GatewayIntegrations, _: LettersReader
) -> list[SwitchChangeOut]:
    return await gateway.history(name)
