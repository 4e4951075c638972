"""``POST /v1/providers/{name}/webhooks``: provider callbacks, authenticated per provider."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from notifier_common.errors import (
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    problem_responses,
)
from notifier_common.logging import get_logger

from gateway.deps import Session, Settings
from gateway.webhooks import service
from gateway.webhooks.auth import WebhookAuthError, header_name, verify
from gateway.webhooks.parsers import UnreadableBody, parse
from gateway.webhooks.schemas import NeutralBody, WebhookResultOut

router = APIRouter(prefix="/v1", tags=["webhooks"])
log = get_logger("gateway.webhooks")

MAX_WEBHOOK_BYTES = 5_000_000


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge(f"body exceeds {MAX_WEBHOOK_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > MAX_WEBHOOK_BYTES:
            raise PayloadTooLarge(f"body exceeds {MAX_WEBHOOK_BYTES} bytes")
    return bytes(raw)


@router.post(
    "/providers/{name}/webhooks",
    response_model=WebhookResultOut,
    summary="Receive delivery, bounce, complaint and unsubscribe events from a provider",
    description=(
        "No bearer token: the provider authenticates with its configured `webhook` settings, "
        "either a shared secret header (`X-Webhook-Secret`) or an HMAC-SHA256 signature "
        "(`X-Webhook-Signature: t=<unix>,v1=<hex of HMAC(secret, '<t>.' + body)>`, 5 min "
        "tolerance); 401 otherwise. The body is the neutral shape below, or the provider's own "
        "shape when its `webhook.format` is `esp` or `smtp` (see docs/gateway-api.md). Events "
        "are stored once per provider event id; hard bounces, complaints and unsubscribes "
        "become suppressions; known messages move to delivered / bounced / complained."
    ),
    responses=problem_responses(404, 413),
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": NeutralBody.model_json_schema()}}
        }
    },
)
async def receive_webhook(name: str, request: Request, session: Session, settings: Settings) -> Any:
    conf = settings.providers.get(name)
    if conf is None or conf.webhook is None:
        raise NotFound(f"provider {name!r} has no webhook configured")
    body = await _read_body(request)
    try:
        verify(conf.webhook, request.headers.get(header_name(conf.webhook)), body)
    except WebhookAuthError as exc:
        log.warning("gateway.webhook_refused", provider=name, reason=str(exc))
        raise Unauthorized(str(exc)) from exc
    try:
        events, ignored = parse(conf.webhook.format, body)
    except UnreadableBody as exc:
        raise Unprocessable(f"unreadable webhook body: {exc}"[:2000]) from exc
    return await service.apply(session, name, events, ignored=ignored)
