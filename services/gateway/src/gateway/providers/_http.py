"""Helpers shared by the provider adapters: config validation and HTTP failure classification.

Rules (every HTTP provider): timeouts, transport errors, 5xx and 429 are transient; 404 is a
permanent ``not_found``; other 4xx are permanent ``http_4xx``; a reply that is not a 2xx success
we can read (3xx, unparsable body, body that does not say ok) is a permanent
``unexpected_response`` kept verbatim (truncated) for a human to look at.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx
from notifier_common.http import retry_after_seconds
from pydantic import BaseModel, ValidationError

from gateway.providers.base import SendResult, excerpt

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class ProviderConfigError(ValueError):
    """A provider instance was configured with invalid settings."""


def load_config(model: type[ConfigT], *, kind: str, name: str, config: dict[str, Any]) -> ConfigT:
    """Validate a provider's settings dict, naming the instance in the error."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ProviderConfigError(
            f"provider {name!r} ({kind}): invalid config: {problems}"
        ) from exc


async def request(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> httpx.Response | SendResult:
    """Send one request; a 2xx response comes back as is, any failure as a SendResult."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        return SendResult.transient("timeout", f"{method} {url}: timed out ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        return SendResult.transient("transport", f"{method} {url}: {type(exc).__name__}: {exc}")
    failure = classify_status(response)
    return failure if failure is not None else response


def classify_status(response: httpx.Response) -> SendResult | None:
    """None for a 2xx; otherwise the classified failure."""
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    body = excerpt(response.text)
    if 200 <= status < 300:
        return None
    if status == 429:
        return SendResult.transient(
            "http_429",
            f"{where}: rate limited",
            status_code=status,
            retry_after=retry_after_seconds(response),
            response_excerpt=body,
        )
    if status >= 500:
        return SendResult.transient(
            "http_5xx",
            f"{where}: server error {status}",
            status_code=status,
            retry_after=retry_after_seconds(response),
            response_excerpt=body,
        )
    if status == 404:
        return SendResult.permanent(
            "not_found", f"{where}: not found", status_code=status, response_excerpt=body
        )
    if 400 <= status < 500:
        return SendResult.permanent(
            "http_4xx",
            f"{where}: rejected with {status}",
            status_code=status,
            response_excerpt=body,
        )
    return unexpected(response, f"unexpected status {status}")


def unexpected(response: httpx.Response, reason: str) -> SendResult:
    """A reply we cannot interpret: permanent (the peer may have acted; never resend blindly)."""
    where = f"{response.request.method} {response.request.url.path}"
    return SendResult.permanent(
        "unexpected_response",
        f"{where}: {reason}",
        status_code=response.status_code,
        response_excerpt=excerpt(response.text),
    )


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
