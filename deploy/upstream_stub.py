# ruff: noqa: RUF001, RUF002  (Russian demo names: Cyrillic letters are intended)
"""Local stub of the upstream "clients" and "billing" services (development, demos, benchmarks).

Run: ``uv run uvicorn deploy.upstream_stub:app --port 8002`` (``make run`` starts it).

Endpoints (the ones ``notifier.enrichment.EnrichmentClient`` calls)::

    GET /v1/clients/{client_id}           -> profile
    GET /v1/clients/{client_id}/balance   -> balance (contract id: "contract-{client_id}")
    GET /v1/contracts/{contract_id}       -> contract
    GET /healthz

Every id works: name, locale, time zone, payment type, service and amounts are derived from a
stable hash of the id (same id -> same data, in every process, forever). No I/O, no state.

Named demo clients:

- ``demo-prepaid-ru``   ООО «Ромашка», ru, Europe/Moscow, prepaid taxi, balance well above
  threshold; its contract ``contract-demo-prepaid-ru`` is unpaid (reminders fire).
- ``demo-postpaid-en``  Northwind Travel Ltd, en, Europe/London, postpaid taxi.
- ``demo-cargo``        ООО «ГрузЭкспресс», ru, Asia/Yekaterinburg, prepaid cargo.
- ``demo-low-balance``  АО «Северный ветер», ru, prepaid taxi: 1 500 RUB, below its 5 000 threshold
  and above its 0 limit (LowBalanceNotice).
- ``demo-limit-over``   Globex Logistics LLC, en, Asia/Dubai, prepaid taxi: -120 RUB, at or below
  its 0 limit (LimitIsOverNotice).

Special ids:

- ids starting with ``missing-`` (also ``contract-missing-...``) -> 404 on every endpoint.
- ids starting with ``unavailable-`` -> 503 with ``Retry-After: 1`` (upstream outage drills).
- contract ids ending with ``-paid`` are paid, ending with ``-closed`` are closed; otherwise a
  prepaid client's contract is unpaid and a postpaid client's contract is paid. The suffix is
  stripped before the client id is derived (``contract-demo-prepaid-ru-paid`` belongs to
  ``demo-prepaid-ru``).
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.responses import JSONResponse

api = FastAPI(title="upstream stub (clients + billing)", version="1", docs_url="/docs")

CONTRACT_PREFIX = "contract-"

_NAMED: dict[str, dict[str, Any]] = {
    "demo-prepaid-ru": {
        "name": "ООО «Ромашка»",
        "locale": "ru",
        "timezone": "Europe/Moscow",
        "payment_type": "prepaid",
        "service": "taxi",
        "balance": ("84250.00", "5000", "0"),
    },
    "demo-postpaid-en": {
        "name": "Northwind Travel Ltd",
        "locale": "en",
        "timezone": "Europe/London",
        "payment_type": "postpaid",
        "service": "taxi",
        "balance": ("-42000.00", "-250000", "-300000"),
    },
    "demo-cargo": {
        "name": "ООО «ГрузЭкспресс»",
        "locale": "ru",
        "timezone": "Asia/Yekaterinburg",
        "payment_type": "prepaid",
        "service": "cargo",
        "balance": ("152300.50", "10000", "0"),
    },
    "demo-low-balance": {
        "name": "АО «Северный ветер»",
        "locale": "ru",
        "timezone": "Europe/Moscow",
        "payment_type": "prepaid",
        "service": "taxi",
        "balance": ("1500.00", "5000", "0"),
    },
    "demo-limit-over": {
        "name": "Globex Logistics LLC",
        "locale": "en",
        "timezone": "Asia/Dubai",
        "payment_type": "prepaid",
        "service": "taxi",
        "balance": ("-120.00", "5000", "0"),
    },
}

_RU_FORMS = ("ООО", "АО", "ООО", "ИП")
_RU_WORDS = (
    "Ромашка",
    "Вектор",
    "Гранит",
    "Меридиан",
    "Логистик Плюс",
    "Светлый путь",
    "Альфа-Трэвел",
    "Северная звезда",
)
_EN_WORDS = ("Acme", "Initech", "Hooli", "Umbrella", "Stark", "Wayne", "Vandelay", "Soylent")
_EN_FORMS = ("Ltd", "LLC", "Group", "Logistics")
_RU_ZONES = (
    "Europe/Moscow",
    "Europe/Moscow",
    "Europe/Moscow",
    "Europe/Samara",
    "Asia/Yekaterinburg",
    "Asia/Novosibirsk",
    "Asia/Vladivostok",
    "Europe/Kaliningrad",
)
_EN_ZONES = ("Europe/London", "Europe/Berlin", "Asia/Dubai", "Asia/Almaty")


def _digest(value: str) -> int:
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big")


def _pick(options: tuple[str, ...], h: int, shift: int) -> str:
    return options[(h >> shift) % len(options)]


@lru_cache(maxsize=65536)
def _traits(client_id: str) -> dict[str, Any]:
    """Stable demo data of a client id: named demo clients first, else derived from its hash."""
    if client_id in _NAMED:
        return _NAMED[client_id]
    h = _digest(client_id)
    locale = "ru" if h % 4 else "en"  # 3 of 4 clients are Russian-speaking
    payment_type = "prepaid" if (h >> 4) % 2 else "postpaid"
    if locale == "ru":
        name = f"{_pick(_RU_FORMS, h, 8)} «{_pick(_RU_WORDS, h, 12)}»"
        timezone = _pick(_RU_ZONES, h, 16)
    else:
        name = f"{_pick(_EN_WORDS, h, 12)} {_pick(_EN_FORMS, h, 8)}"
        timezone = _pick(_EN_ZONES, h, 16)
    kopecks = (h >> 24) % 10_000_000  # up to 100 000.00
    if payment_type == "prepaid":
        balance = (_amount(kopecks + 1_000_000), "5000", "0")
    else:
        balance = (_amount(kopecks - 8_000_000), "-250000", "-300000")
    return {
        "name": name,
        "locale": locale,
        "timezone": timezone,
        "payment_type": payment_type,
        "service": "cargo" if (h >> 20) % 5 == 0 else "taxi",
        "balance": balance,
    }


def _amount(kopecks: int) -> str:
    sign = "-" if kopecks < 0 else ""
    return f"{sign}{abs(kopecks) // 100}.{abs(kopecks) % 100:02d}"


def _unavailable_or_missing(identifier: str) -> JSONResponse | None:
    bare = identifier.removeprefix(CONTRACT_PREFIX)
    if bare.startswith("missing-"):
        return JSONResponse({"detail": f"{identifier} not found"}, status_code=404)
    if bare.startswith("unavailable-"):
        return JSONResponse(
            {"detail": "upstream unavailable (stub drill)"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return None


def _slug(client_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", client_id.lower()).strip("-")[:48] or "client"


def client_profile(client_id: str) -> dict[str, Any]:
    traits = _traits(client_id)
    slug = _slug(client_id)
    emails = [f"{slug}@example.com"]
    if _digest(client_id) % 3 == 0:
        emails.append(f"accounting+{slug}@example.com")
    return {
        "id": client_id,
        "name": traits["name"],
        "locale": traits["locale"],
        "timezone": traits["timezone"],
        "emails": emails,
        "payment_type": traits["payment_type"],
        "service": traits["service"],
        "cabinet_url": f"https://corp.example.com/clients/{quote(client_id, safe='')}",
    }


def client_balance(client_id: str) -> dict[str, Any]:
    amount, threshold, limit = _traits(client_id)["balance"]
    return {
        "client_id": client_id,
        "contract_id": f"{CONTRACT_PREFIX}{client_id}",
        "amount": amount,
        "currency": "RUB",
        "threshold": threshold,
        "limit": limit,
    }


def contract(contract_id: str) -> dict[str, Any]:
    bare = contract_id.removeprefix(CONTRACT_PREFIX)
    paid = closed = False
    if bare.endswith("-paid"):
        bare, paid = bare.removesuffix("-paid"), True
    elif bare.endswith("-closed"):
        bare, closed = bare.removesuffix("-closed"), True
    payment_type = _traits(bare)["payment_type"]
    return {
        "id": contract_id,
        "client_id": bare,
        "payment_type": payment_type,
        "is_paid": paid or payment_type == "postpaid",
        "status": "closed" if closed else "active",
    }


@api.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@api.get("/v1/clients/{client_id}")
async def get_client(client_id: str) -> JSONResponse:
    return _unavailable_or_missing(client_id) or JSONResponse(client_profile(client_id))


@api.get("/v1/clients/{client_id}/balance")
async def get_balance(client_id: str) -> JSONResponse:
    return _unavailable_or_missing(client_id) or JSONResponse(client_balance(client_id))


@api.get("/v1/contracts/{contract_id}")
async def get_contract(contract_id: str) -> JSONResponse:
    return _unavailable_or_missing(contract_id) or JSONResponse(contract(contract_id))


# ---- fast path ----------------------------------------------------------------------------
# The stub stands in for services that run elsewhere in production, but in `make run` and the
# benchmark it shares the notifier's CPU. The endpoints above are answered straight from ASGI
# with the same bodies, memoised per path (~10x less CPU per request than FastAPI's routing,
# validation and response classes); everything else (/docs, /openapi.json, 404s) is FastAPI's.

Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


def _render(status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> Answer:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    return status, body, headers + (extra or [])


def _from(problem: JSONResponse | None, content: Any) -> Answer:
    """The answer FastAPI would give: the problem response, else ``content`` as JSON."""
    if problem is None:
        return _render(200, json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode())
    retry_after = problem.headers.get("retry-after")
    extra = [(b"retry-after", retry_after.encode())] if retry_after else None
    return _render(problem.status_code, bytes(problem.body), extra)


@lru_cache(maxsize=65536)
def answer(path: str) -> Answer | None:
    """The answer to ``GET path`` for the stub's own endpoints, else None (FastAPI's)."""
    if path == "/healthz":
        return _from(None, {"status": "ok"})
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "v1" or not parts[3]:
        return None
    ident = parts[3]
    if parts[2] == "clients" and len(parts) == 4:
        problem = _unavailable_or_missing(ident)
        return _from(problem, None if problem else client_profile(ident))
    if parts[2] == "clients" and len(parts) == 5 and parts[4] == "balance":
        problem = _unavailable_or_missing(ident)
        return _from(problem, None if problem else client_balance(ident))
    if parts[2] == "contracts" and len(parts) == 4:
        problem = _unavailable_or_missing(ident)
        return _from(problem, None if problem else contract(ident))
    return None


class _FastPaths:
    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = answer(scope["path"])
            if found is not None:
                status, body, headers = found
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.fallback(scope, receive, send)


app = _FastPaths(api)
