"""ESP provider: Braze-style API-triggered campaigns (seed 002).

``POST {base_url}/campaigns/trigger/send`` with ``campaign_id``, message-wide
``trigger_properties`` and ``recipients[{external_user_id, trigger_properties}]``. Messages that
share campaign and trigger properties are packed into calls of at most ``batch_size``
recipients; every message gets the result of the call that carried it. A message is only split
across calls when it alone has more recipients than one call takes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from notifier_common.http import create_http_client
from notifier_common.logging import get_logger
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gateway.providers import _http
from gateway.providers.base import Message, Outcome, Provider, SendResult

log = get_logger("gateway.esp")

TRIGGER_PATH = "/campaigns/trigger/send"


class EspConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", description="e.g. https://rest.iad-01.braze.com")
    api_key: SecretStr
    campaign_id: str | None = Field(None, description="Used when a message has no template_ref.")
    batch_size: int = Field(50, ge=1, le=50, description="Recipients per call (Braze: 50).")
    parallel_calls: int = Field(4, ge=1, le=64, description="Calls in flight at once.")
    timeout: float = Field(10.0, gt=0)


@dataclass(slots=True)
class _Call:
    campaign_id: str
    trigger_properties: dict[str, Any]
    recipients: list[dict[str, Any]] = field(default_factory=list)
    owners: set[int] = field(default_factory=set)  # indexes of the messages it carries


class EspProvider(Provider):
    kind = "esp"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.settings = _http.load_config(EspConfig, kind=self.kind, name=name, config=config)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = create_http_client(
            base_url=self.settings.base_url.rstrip("/"),
            timeout=self.settings.timeout,
            max_connections=self.settings.parallel_calls,
            headers={"Authorization": f"Bearer {self.settings.api_key.get_secret_value()}"},
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: Message) -> SendResult:
        return (await self.send_many([message]))[0]

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        results: list[SendResult | None] = [self._precheck(m) for m in messages]
        calls = self._plan([(i, m) for i, m in enumerate(messages) if results[i] is None])
        limit = asyncio.Semaphore(self.settings.parallel_calls)

        async def run(call: _Call) -> SendResult:
            async with limit:
                return await self._trigger(call)

        outcomes = await asyncio.gather(*(run(c) for c in calls))
        for index in range(len(messages)):
            if results[index] is None:
                mine = [r for c, r in zip(calls, outcomes, strict=True) if index in c.owners]
                results[index] = _merge(mine)
        return [r for r in results if r is not None]

    def _precheck(self, message: Message) -> SendResult | None:
        if not (message.template_ref or self.settings.campaign_id):
            return SendResult.permanent("invalid_message", "no campaign: set template_ref")
        missing = [i for i, r in enumerate(message.to) if not r.external_id]
        if missing:
            return SendResult.permanent(
                "invalid_recipient", f"recipients without external_id at positions {missing}"
            )
        return None

    def _plan(self, messages: list[tuple[int, Message]]) -> list[_Call]:
        """Pack recipients of messages with the same campaign + properties into calls."""
        size = self.settings.batch_size
        open_calls: dict[tuple[str, str], _Call] = {}
        calls: list[_Call] = []
        for index, message in messages:
            campaign = message.template_ref or self.settings.campaign_id or ""
            key = (campaign, json.dumps(message.properties, sort_keys=True, default=str))
            recipients = [
                {"external_user_id": r.external_id, "trigger_properties": r.properties}
                for r in message.to
            ]
            call = open_calls.get(key)
            if call is None or len(call.recipients) + len(recipients) > size:
                call = open_calls[key] = _Call(campaign, message.properties)
                calls.append(call)
            while len(call.recipients) + len(recipients) > size:  # only when one message > size
                call.recipients, recipients = recipients[:size], recipients[size:]
                call.owners.add(index)
                call = open_calls[key] = _Call(campaign, message.properties)
                calls.append(call)
            call.recipients.extend(recipients)
            call.owners.add(index)
        return calls

    async def _trigger(self, call: _Call) -> SendResult:
        if self._client is None:
            raise RuntimeError(f"esp provider {self.name!r} used before start()")
        body = {
            "campaign_id": call.campaign_id,
            "trigger_properties": call.trigger_properties,
            "recipients": call.recipients,
        }
        reply = await _http.request(self._client, "POST", TRIGGER_PATH, json=body)
        result = reply if isinstance(reply, SendResult) else _parse(reply)
        self._log(call, result)
        return result

    def _log(self, call: _Call, result: SendResult) -> None:
        fields = {"provider": self.name, "campaign_id": call.campaign_id}
        if result.outcome is Outcome.accepted:
            log.info(
                "gateway.esp_triggered",
                **fields,
                recipients=len(call.recipients),
                dispatch_id=result.provider_message_id,
            )
        else:
            log.warning(
                "gateway.esp_failed",
                **fields,
                code=result.code,
                status_code=result.status_code,
                outcome=str(result.outcome),
            )


def _parse(response: httpx.Response) -> SendResult:
    data = _http.json_object(response)
    if data is None:
        return _http.unexpected(response, "body is not a JSON object")
    if data.get("message") != "success":
        return _http.unexpected(response, f"message is {data.get('message')!r}, not 'success'")
    dispatch_id = data.get("dispatch_id")
    details: dict[str, Any] = {}
    if data.get("errors"):
        details["errors"] = data["errors"]
    return SendResult.ok(
        str(dispatch_id) if dispatch_id else None, status_code=response.status_code, details=details
    )


def _merge(results: list[SendResult]) -> SendResult:
    """One message's result from the call(s) that carried it."""
    if len(results) == 1:
        return dataclasses.replace(results[0], details=dict(results[0].details))
    dispatch_ids = [r.provider_message_id for r in results if r.outcome is Outcome.accepted]
    failed = [r for r in results if r.outcome is not Outcome.accepted]
    if not failed:
        return SendResult.ok(dispatch_ids[0], details={"dispatch_ids": dispatch_ids})
    if not dispatch_ids:
        return dataclasses.replace(failed[0], details={"calls": len(results)})
    # Part of the recipients got it: retrying would send twice to them; a human decides.
    return SendResult.permanent(
        "partial_failure",
        f"{len(failed)} of {len(results)} calls failed: {failed[0].code}: {failed[0].reason}",
        status_code=failed[0].status_code,
        response_excerpt=failed[0].response_excerpt,
        details={"dispatch_ids": dispatch_ids, "failed_codes": [r.code for r in failed]},
    )
