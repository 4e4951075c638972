"""CRM provider (seed 001): upsert a contact on sign-up, change its email, mark it as spam.

Generic REST with a bearer token: ``PUT {base}/contacts`` (upsert: email, name, mailing lists;
answers the CRM id), ``PUT {base}/contacts/{id}`` (new email), ``POST {base}/contacts/{id}/spam``.
``{id}`` is the recipient's ``external_id``: the CRM id the upsert returned.

Besides the usual transient/permanent classification, every call records the seed's outcome in
``details["crm_outcome"]``: ``ok``, ``not_found``, ``unexpected_response`` (any other answer,
kept verbatim and truncated in ``response_excerpt``) or ``transport_failure`` (no answer).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

import httpx
from notifier_common.http import create_http_client
from notifier_common.logging import get_logger
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gateway.providers import _http
from gateway.providers.base import Message, Provider, Recipient, SendResult

log = get_logger("gateway.crm")

NO_ANSWER_CODES = frozenset({"timeout", "transport"})


class CrmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", description="e.g. https://crm.example.com/api")
    token: SecretStr = Field(description="Bearer token.")
    upsert_method: Literal["PUT", "POST"] = "PUT"
    timeout: float = Field(10.0, gt=0)
    max_connections: int = Field(20, ge=1)


class CrmProvider(Provider):
    kind = "crm"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.settings = _http.load_config(CrmConfig, kind=self.kind, name=name, config=config)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = create_http_client(
            base_url=self.settings.base_url.rstrip("/"),
            timeout=self.settings.timeout,
            max_connections=self.settings.max_connections,
            headers={"Authorization": f"Bearer {self.settings.token.get_secret_value()}"},
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: Message) -> SendResult:
        if len(message.to) != 1:
            return SendResult.permanent("invalid_recipient", "a CRM call is about one contact")
        recipient = message.to[0]
        if message.action == "upsert_contact":
            result = await self._upsert(message, recipient)
        elif message.action in ("change_email", "mark_spam"):
            result = await self._update(message, recipient)
        else:
            return SendResult.permanent("unsupported_action", f"crm cannot {message.action!r}")
        result.details = {**result.details, "action": message.action}
        log.info(
            "gateway.crm_called",
            provider=self.name,
            action=message.action,
            crm_outcome=result.details.get("crm_outcome"),
            code=result.code,
            crm_id=result.provider_message_id,
        )
        return result

    async def _upsert(self, message: Message, recipient: Recipient) -> SendResult:
        if not recipient.address or "@" not in recipient.address:
            return SendResult.permanent("invalid_recipient", "upsert_contact needs an email")
        body = {
            "email": recipient.address,
            "name": recipient.name,
            "external_id": recipient.external_id,
            "mailing_lists": message.lists,
            "properties": {**message.properties, **recipient.properties},
        }
        reply = await self._call(self.settings.upsert_method, "/contacts", json=body)
        if isinstance(reply, SendResult):
            return reply
        data = _http.json_object(reply)
        crm_id = data.get("id") if data else None
        if not isinstance(crm_id, str | int) or isinstance(crm_id, bool) or crm_id == "":
            return _unexpected(reply, "upsert answer without a contact id")
        return _ok(reply, str(crm_id))

    async def _update(self, message: Message, recipient: Recipient) -> SendResult:
        if not recipient.external_id:
            return SendResult.permanent("invalid_recipient", f"{message.action} needs external_id")
        path = f"/contacts/{quote(recipient.external_id, safe='')}"
        if message.action == "change_email":
            if not recipient.address or "@" not in recipient.address:
                return SendResult.permanent("invalid_recipient", "change_email needs the new email")
            reply = await self._call("PUT", path, json={"email": recipient.address})
        else:
            reply = await self._call("POST", f"{path}/spam", json=message.properties)
        if isinstance(reply, SendResult):
            return reply
        if reply.content.strip() and _http.json_object(reply) is None:
            return _unexpected(reply, "answer is not a JSON object")
        return _ok(reply, recipient.external_id)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | SendResult:
        if self._client is None:
            raise RuntimeError(f"crm provider {self.name!r} used before start()")
        reply = await _http.request(self._client, method, path, **kwargs)
        if isinstance(reply, SendResult):
            reply.details = {**reply.details, "crm_outcome": _crm_outcome(reply)}
        return reply


def _crm_outcome(result: SendResult) -> str:
    if result.code in NO_ANSWER_CODES:
        return "transport_failure"
    if result.code == "not_found":
        return "not_found"
    return "unexpected_response"


def _ok(response: httpx.Response, crm_id: str) -> SendResult:
    return SendResult.ok(crm_id, status_code=response.status_code, details={"crm_outcome": "ok"})


def _unexpected(response: httpx.Response, reason: str) -> SendResult:
    result = _http.unexpected(response, reason)
    result.details = {"crm_outcome": "unexpected_response"}
    return result
