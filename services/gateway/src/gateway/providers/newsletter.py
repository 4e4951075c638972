"""Newsletter provider: Basket-style lookup-then-act chains (seed 000).

API: ``GET /news/lookup-user/?email=`` (``X-API-Key``), ``POST /news/subscribe/`` (form:
``email``, ``newsletters``), ``POST /news/unsubscribe/{token}/`` (form: ``email``,
``newsletters``); answers ``{"status": "ok", ...}`` or ``{"status": "error", "desc", "code"}``.
A lookup of an unknown address answers 404 (or Basket code 3, "unknown email").

Every chain stops at its first failure and returns it; ``details["steps"]`` records each call.
``change_email`` subscribes the new address before unsubscribing the old one, so a retry after
a failure in between still knows which lists to move (docs/decisions: provider chains).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from notifier_common.http import create_http_client
from notifier_common.logging import get_logger, mask_email
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gateway.providers import _http
from gateway.providers.base import Message, Outcome, Provider, SendResult

log = get_logger("gateway.newsletter")

UNKNOWN_EMAIL_CODES = frozenset({3, "3", "unknown email", "unknown_email"})
INVALID_EMAIL_CODES = frozenset({2, "2", "invalid email", "invalid_email"})


class NewsletterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", description="e.g. https://basket.mozilla.org")
    api_key: SecretStr
    source_url: str | None = Field(None, description="Sent as source_url on subscribe.")
    timeout: float = Field(10.0, gt=0)
    max_connections: int = Field(20, ge=1)


@dataclass(slots=True)
class _User:
    token: str
    newsletters: list[str]


class _Chain:
    """The calls of one action: their trace and the result that ends it."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def record(self, step: str, result: SendResult | httpx.Response) -> None:
        if isinstance(result, SendResult):
            entry = {"step": step, "outcome": result.code, "status_code": result.status_code}
        else:
            entry = {"step": step, "outcome": "ok", "status_code": result.status_code}
        self.steps.append(entry)

    def finish(self, result: SendResult) -> SendResult:
        result.details = {**result.details, "steps": self.steps}
        return result


class NewsletterProvider(Provider):
    kind = "newsletter"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.settings = _http.load_config(
            NewsletterConfig, kind=self.kind, name=name, config=config
        )
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = create_http_client(
            base_url=self.settings.base_url.rstrip("/"),
            timeout=self.settings.timeout,
            max_connections=self.settings.max_connections,
            headers={"X-API-Key": self.settings.api_key.get_secret_value()},
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: Message) -> SendResult:
        email = message.to[0].address if len(message.to) == 1 else None
        if not email or "@" not in email:
            return SendResult.permanent("invalid_recipient", "exactly one email address needed")
        if not message.lists:
            return SendResult.permanent("invalid_message", "no newsletters in `lists`")
        chain = _Chain()
        if message.action == "subscribe":
            result = await self._subscribe_chain(chain, email, message.lists)
        elif message.action == "unsubscribe":
            result = await self._unsubscribe_chain(chain, email, message.lists)
        elif message.action == "change_email":
            result = await self._change_email_chain(chain, message, email)
        else:
            return SendResult.permanent(
                "unsupported_action", f"newsletter cannot {message.action!r}"
            )
        self._log(message, email, result)
        return chain.finish(result)

    async def _subscribe_chain(self, chain: _Chain, email: str, lists: list[str]) -> SendResult:
        user = await self._lookup(chain, email)
        if isinstance(user, SendResult) and user.code != "not_found":
            return user
        if isinstance(user, _User) and set(lists) <= set(user.newsletters):
            return SendResult.ok(None, details={"already_subscribed": sorted(lists)})
        return await self._subscribe(chain, email, lists)

    async def _unsubscribe_chain(self, chain: _Chain, email: str, lists: list[str]) -> SendResult:
        user = await self._lookup(chain, email)
        if isinstance(user, SendResult):
            return user  # not_found is permanent: there is nobody to unsubscribe
        current = [n for n in lists if n in user.newsletters]
        if not current:
            return SendResult.ok(None, details={"not_subscribed": sorted(lists)})
        return await self._unsubscribe(chain, user, email, current)

    async def _change_email_chain(
        self, chain: _Chain, message: Message, new_email: str
    ) -> SendResult:
        old_email = message.previous_address
        if not old_email or "@" not in old_email:
            return SendResult.permanent("invalid_message", "change_email needs previous_address")
        user = await self._lookup(chain, old_email)
        if isinstance(user, SendResult):
            if user.code == "not_found":  # nothing to move
                return SendResult.ok(None, details={"moved": []})
            return user
        moved = [n for n in message.lists if n in user.newsletters]
        if not moved:
            return SendResult.ok(None, details={"moved": []})
        subscribed = await self._subscribe(chain, new_email, moved)
        if subscribed.outcome is not Outcome.accepted:
            return subscribed
        unsubscribed = await self._unsubscribe(chain, user, old_email, moved)
        if unsubscribed.outcome is not Outcome.accepted:
            return unsubscribed
        return SendResult.ok(None, details={"moved": moved})

    async def _lookup(self, chain: _Chain, email: str) -> _User | SendResult:
        reply = await self._call("GET", "/news/lookup-user/", params={"email": email})
        chain.record("lookup", reply)
        if isinstance(reply, SendResult):
            return reply
        data = _http.json_object(reply)
        if data is None or data.get("status") != "ok":
            return _basket_error(reply, data)
        token, newsletters = data.get("token"), data.get("newsletters", [])
        if not isinstance(token, str) or not token or not isinstance(newsletters, list):
            return _http.unexpected(reply, "lookup answer without token or newsletters")
        return _User(token, [str(n) for n in newsletters])

    async def _subscribe(self, chain: _Chain, email: str, lists: list[str]) -> SendResult:
        form = {"email": email, "newsletters": ",".join(lists)}
        if self.settings.source_url:
            form["source_url"] = self.settings.source_url
        reply = await self._call("POST", "/news/subscribe/", data=form)
        chain.record("subscribe", reply)
        return _ok_or_error(reply)

    async def _unsubscribe(
        self, chain: _Chain, user: _User, email: str, lists: list[str]
    ) -> SendResult:
        form = {"email": email, "newsletters": ",".join(lists)}
        reply = await self._call("POST", f"/news/unsubscribe/{user.token}/", data=form)
        chain.record("unsubscribe", reply)
        return _ok_or_error(reply)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | SendResult:
        if self._client is None:
            raise RuntimeError(f"newsletter provider {self.name!r} used before start()")
        reply = await _http.request(self._client, method, path, **kwargs)
        return _refine(reply) if isinstance(reply, SendResult) else reply

    def _log(self, message: Message, email: str, result: SendResult) -> None:
        log.info(
            "gateway.newsletter_done",
            provider=self.name,
            action=message.action,
            email=mask_email(email),
            outcome=str(result.outcome),
            code=result.code,
        )


def _ok_or_error(reply: httpx.Response | SendResult) -> SendResult:
    if isinstance(reply, SendResult):
        return reply
    data = _http.json_object(reply)
    if data is None or data.get("status") != "ok":
        return _basket_error(reply, data)
    return SendResult.ok(None, status_code=reply.status_code)


def _basket_error(response: httpx.Response, data: dict[str, Any] | None) -> SendResult:
    """A 2xx whose body is not ``status: ok``."""
    if data is not None and data.get("code") in UNKNOWN_EMAIL_CODES:
        return SendResult.permanent(
            "not_found", f"unknown email: {data.get('desc')}", status_code=response.status_code
        )
    desc = data.get("desc") if data else None
    return _http.unexpected(response, f"status is not ok: {desc or 'no status'}")


def _refine(result: SendResult) -> SendResult:
    """Use Basket's error code in a 4xx body: unknown email -> not_found, invalid -> recipient."""
    if result.outcome is not Outcome.permanent_error or not result.response_excerpt:
        return result
    try:
        data = json.loads(result.response_excerpt)
    except ValueError:
        return result
    code = data.get("code") if isinstance(data, dict) else None
    if code in UNKNOWN_EMAIL_CODES:
        result.code = "not_found"
    elif code in INVALID_EMAIL_CODES:
        result.code = "invalid_recipient"
    if isinstance(data, dict) and data.get("desc"):
        result.reason = f"{result.reason}: {data['desc']}"
        result.details = {**result.details, "basket_code": code}
    return result
