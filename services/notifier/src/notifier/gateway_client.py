"""Client of the delivery gateway's batch API (``POST /v1/messages:batch``).

The request models copy the gateway's ``Message`` shape (services are deployed separately; the
notifier never imports gateway code). Failures of the call itself are classified here, so callers
always get one result per item: transport errors, timeouts, 5xx, 429 and auth errors are
transient for every item (a misconfigured token must not fail letters for good); other 4xx are
permanent. An item the gateway did not answer is transient.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
import orjson
from notifier_common.http import (
    CORE_TIMEOUTS,
    CORE_TRANSPORT_ERRORS,
    Answer,
    direct_pool,
    is_transient_status,
    json_request_headers,
    parse_retry_after,
)
from notifier_common.logging import get_logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

log = get_logger("notifier.gateway_client")

MAX_BATCH = 500
GatewayOutcome = Literal["accepted", "transient_error", "permanent_error", "skipped"]
#: (idempotency key, the item's request JSON from :func:`encode_item`)
EncodedItem = tuple[str, bytes]


class GatewayRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    name: str | None = None


class GatewayMessage(BaseModel):
    """The subset of the gateway's ``Message`` the letter engine sends."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    to: list[GatewayRecipient] = Field(min_length=1)
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    unsubscribe_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class GatewayItem(BaseModel):
    idempotency_key: str
    message: GatewayMessage


class GatewayResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    idempotency_key: str
    outcome: GatewayOutcome
    message_id: str | int | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    code: str | None = None
    reason: str | None = None
    retry_after: float | None = None
    status_code: int | None = None
    duration_ms: int | None = None


class _BatchResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    results: list[GatewayResult]


class GatewayClient:
    """One per process; wraps the shared ``httpx.AsyncClient`` created at worker startup.

    With a client made by ``create_http_client`` (the worker's), each call is made straight on
    its pool (``notifier_common.http.DirectPool``, decisions 0102 and 0106): through httpx each
    call cost ~160 µs more CPU and left ~40 objects in reference cycles for the collector."""

    def __init__(
        self, http: httpx.AsyncClient, *, base_url: str, token: str, batch_size: int = MAX_BATCH
    ) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/v1/messages:batch"
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._core = direct_pool(http)
        self._core_headers = json_request_headers(self._url, self._headers)
        self.batch_size = max(1, min(batch_size, MAX_BATCH))

    async def send_batch(self, items: Sequence[GatewayItem]) -> dict[str, GatewayResult]:
        """Send ``items`` (chunked to the batch size); one result per idempotency key."""
        return await self.send_encoded(
            [(item.idempotency_key, encode_item(item)) for item in items]
        )

    async def send_encoded(self, items: list[EncodedItem]) -> dict[str, GatewayResult]:
        """``send_batch`` of items already encoded by :func:`encode_item` (decision 0059: the
        drain keeps a letter's request JSON, not its rendered strings and models).

        Takes the list over: it is emptied as the request bodies are built, so the items'
        bytes are freed before each call instead of being held beside the body until the
        end (decision 0082: 2.5-3 MB per 500-letter call)."""
        results: dict[str, GatewayResult] = {}
        while items:
            chunk = items[: self.batch_size]
            del items[: self.batch_size]
            results.update(await self._send_chunk(chunk))
        return results

    async def _send_chunk(self, items: list[EncodedItem]) -> dict[str, GatewayResult]:
        body = join_items([encoded for _, encoded in items])
        keys = [key for key, _ in items]
        items.clear()  # the body holds the bytes now
        started = time.perf_counter()
        try:
            response = await self._post(body)
        except (httpx.HTTPError, *CORE_TIMEOUTS, *CORE_TRANSPORT_ERRORS) as exc:
            log.warning("gateway.transport_error", error=repr(exc)[:300], items=len(keys))
            return _all(keys, "transient_error", code="gateway_unreachable", reason=repr(exc))
        finally:
            del body
        elapsed = int((time.perf_counter() - started) * 1000)
        if response.status != 200:
            return _failed_call(keys, response, elapsed)
        try:
            parsed = _BatchResponse.model_validate_json(response.content)
        except ValidationError as exc:
            log.error("gateway.unexpected_response", error=str(exc)[:300])
            return _all(keys, "transient_error", code="unexpected_response", reason=str(exc))
        del response
        answered = {r.idempotency_key: r for r in parsed.results}
        for result in answered.values():
            if result.duration_ms is None:
                result.duration_ms = elapsed
        missing = [k for k in keys if k not in answered]
        answered.update(_all(missing, "transient_error", code="no_result", reason="not answered"))
        return answered

    async def _post(self, body: bytes) -> Answer:
        if self._core is None:  # a client of tests (ASGI, plain httpx): through httpx
            return Answer.of(await self._http.post(self._url, content=body, headers=self._headers))
        headers = [*self._core_headers, (b"Content-Length", str(len(body)).encode())]
        return await self._core.request("POST", self._url, headers, body)


#: left to pydantic's rendering (``...Z`` datetimes, dataclasses as pydantic dumps them)
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def encode_batch(items: Sequence[GatewayItem]) -> bytes:
    """The request body: the same JSON as pydantic's ``model_dump_json(exclude_none=True)`` of
    ``{"items": items}`` (``None`` fields left out; values inside ``headers``/``metadata`` as
    given, odd values the way pydantic renders them), built from the models' attributes and
    encoded by orjson (decision 0047): 500 letters took ~12 ms through pydantic's serializer of
    a ``Sequence`` field, ~2 ms this way."""
    return join_items([encode_item(item) for item in items])


def encode_item(item: GatewayItem) -> bytes:
    """One element of the body's ``items`` array (see :func:`encode_batch`), as compact bytes:
    orjson's own result keeps its growth buffer (a 5.5 KB letter held ~9 KB of RSS), so an
    item kept until the send is copied once (~0.3 us) to its exact size (decision 0059)."""
    encoded = orjson.dumps(_item_json(item), default=to_jsonable_python, option=_PASSTHROUGH)
    return bytes(memoryview(encoded))


def encode_message(
    idempotency_key: str,
    *,
    channel: str,
    address: str,
    name: str | None,
    subject: str,
    html: str,
    text: str,
    unsubscribe_url: str,
    metadata: dict[str, str | int],
) -> bytes:
    """``encode_item`` of the item these fields make, without building the pydantic models
    (decision 0065: the drain encodes every letter this way; the models took ~20 us a letter).
    Every field is a plain ``str`` (or ``None`` for ``name``) checked by mypy and, for the one
    value that comes from stored JSON, here: a ``name`` of any other type goes through the
    models, which validate it exactly as before."""
    if name is not None and type(name) is not str:
        return encode_item(
            GatewayItem(
                idempotency_key=idempotency_key,
                message=GatewayMessage(
                    channel=channel,
                    to=[GatewayRecipient(address=address, name=name)],
                    subject=subject,
                    html=html,
                    text=text,
                    unsubscribe_url=unsubscribe_url,
                    metadata=metadata,
                ),
            )
        )
    recipient = {"address": address} if name is None else {"address": address, "name": name}
    message = {
        "channel": channel,
        "to": [recipient],
        "subject": subject,
        "html": html,
        "text": text,
        "unsubscribe_url": unsubscribe_url,
        "headers": {},
        "metadata": metadata,
    }
    encoded = orjson.dumps(
        {"idempotency_key": idempotency_key, "message": message},
        default=to_jsonable_python,
        option=_PASSTHROUGH,
    )
    return bytes(memoryview(encoded))


def encode_outbound(
    idempotency_key: str, *, channel: str, message: Mapping[str, Any], metadata: dict[str, Any]
) -> bytes:
    """The item of an outbound letter (decided fields stored in its context as ``message``:
    action, recipients, template_ref, properties, lists, previous_address), with its channel
    and metadata. The gateway validates the fields (an unknown one is that item's 422)."""
    body = {**message, "channel": channel, "metadata": metadata}
    encoded = orjson.dumps(
        {"idempotency_key": idempotency_key, "message": body},
        default=to_jsonable_python,
        option=_PASSTHROUGH,
    )
    return bytes(memoryview(encoded))


def join_items(encoded: Sequence[bytes]) -> bytes:
    """The request body from items encoded by :func:`encode_item` (one copy of the bytes)."""
    parts = [b'{"items":[']
    for item in encoded:
        parts += (item, b",")
    if encoded:
        parts.pop()
    parts.append(b"]}")
    return b"".join(parts)


def _item_json(item: GatewayItem) -> dict[str, Any]:
    m = item.message
    message: dict[str, Any] = {"channel": m.channel, "to": [_recipient_json(r) for r in m.to]}
    for name, value in (
        ("subject", m.subject),
        ("html", m.html),
        ("text", m.text),
        ("unsubscribe_url", m.unsubscribe_url),
    ):
        if value is not None:
            message[name] = value
    message["headers"] = m.headers
    message["metadata"] = m.metadata
    return {"idempotency_key": item.idempotency_key, "message": message}


def _recipient_json(r: GatewayRecipient) -> dict[str, Any]:
    if r.name is None:
        return {} if r.address is None else {"address": r.address}
    return {"name": r.name} if r.address is None else {"address": r.address, "name": r.name}


def _failed_call(keys: list[str], response: Answer, elapsed: int) -> dict[str, GatewayResult]:
    status = response.status
    transient = is_transient_status(status) or status in (401, 403)
    reason = response.text[:500]
    log.warning("gateway.call_failed", status=status, reason=reason[:200], items=len(keys))
    return _all(
        keys,
        "transient_error" if transient else "permanent_error",
        code=f"gateway_http_{status}",
        reason=reason,
        status_code=status,
        retry_after=parse_retry_after(response.retry_after),
        duration_ms=elapsed,
    )


def _all(keys: Sequence[str], outcome: GatewayOutcome, **fields: Any) -> dict[str, GatewayResult]:
    return {k: GatewayResult(idempotency_key=k, outcome=outcome, **fields) for k in keys}
