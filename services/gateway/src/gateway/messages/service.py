"""Idempotent sending: claim keys, dispatch what was claimed, store results, replay the rest.

Transactions (see docs/decisions/0010-gateway-idempotency.md): the claim commits *before* any
provider call, so a concurrent request with the same key sees ``in_progress``; results are
stored in a second transaction. This service owns both (``session_scope``); repositories only
execute statements.

Request hashes (decision 0050): ``v2`` + sha256 of the validated message with its defaults, as
compact UTF-8 JSON with sorted keys (:func:`request_json`), written once by orjson and stored as
the request. Rows stored before carry the legacy hash (:func:`legacy_request_hash`: the same
document, ASCII-escaped by ``json``), which is still honoured.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson
from notifier_common.db import autocommit_sessionmaker, retry_on_disconnect, session_scope
from notifier_common.ids import uuid7s
from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.integrations.switches import configured, disabled_of
from gateway.messages import repository
from gateway.messages.dispatch import Dispatcher, Pending, addresses_to_check, normalize_address
from gateway.messages.schemas import BatchItem, SendResultOut
from gateway.metrics import IDEMPOTENT_REPLAYS
from gateway.models import MessageRecord, MessageStatus
from gateway.providers.base import Message, Outcome, SendResult, excerpt
from gateway.settings import GatewaySettings

log = get_logger("gateway.messages")

_SENT_STATES = {
    MessageStatus.accepted,
    MessageStatus.delivered,
    MessageStatus.bounced,
    MessageStatus.complained,
}


class Resolution(enum.StrEnum):
    sent = "sent"  # this request called (or screened) the message now
    stored = "stored"  # the stored result of an earlier request with the same key and body
    in_progress = "in_progress"  # another request holds the key; still running after the wait
    conflict = "conflict"  # the key was used with a different body


@dataclass(slots=True)  # not frozen: one per message (decision 0061)
class ItemResult:
    resolution: Resolution
    result: SendResultOut


#: Claims per INSERT: asyncpg copies a statement's parameters twice while encoding it, so a
#: batch's 2.5 MB of request JSON is sent in two statements of one transaction (decision 0060).
CLAIM_CHUNK = 250

REQUEST_HASH_VERSION = "v2"  # not hex: tells these hashes from legacy ones (64 hex digits)


def request_json(message: Message) -> bytes:
    """The message with its defaults, compact UTF-8 JSON with keys sorted at every level: hashed
    for idempotency and stored as the request (the same body in another key order, or with
    defaults spelled out, is the same request)."""
    # orjson's result keeps its 64 KiB write buffer: a copy of the exact size frees it
    return bytes(memoryview(_request_json(message)))


def _request_json(message: Message) -> bytes:
    """:func:`request_json` as orjson returns it (with its write buffer: copy it, or drop it
    soon)."""
    data = message.model_dump(mode="json")
    for key, value in data.items():
        # orjson keeps the UTF-8 form of every non-ASCII str it writes inside that str; the dump
        # shares the message's strings, so its html and text would hold a second copy of
        # themselves while the batch is handled (2.5 MB per batch of 500): write copies instead
        if type(value) is str and len(value) > 64 and not value.isascii():
            data[key] = "".join((value, ""))
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode()


class RequestDocuments:
    """The :func:`request_json` of several messages in one buffer, newline-separated: each
    message's JSON is a view into it, and the claim of consecutive messages sends a slice of
    it as is (:func:`repository.join_json` of their documents). One copy of each document
    instead of three (its own bytes, the joined value, orjson's buffer), decision 0060."""

    __slots__ = ("_ends", "_view")

    def __init__(self, messages: Sequence[Message]) -> None:
        buf = bytearray()
        ends: list[int] = []
        for message in messages:
            if ends:
                buf += b"\n"
            buf += _request_json(message)
            ends.append(len(buf))
        self._view = memoryview(buf)
        self._ends = ends

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> memoryview:
        return self._view[self._start(i) : self._ends[i]]

    def joined(self, start: int, stop: int) -> memoryview:
        """Documents ``start`` to ``stop - 1`` as :func:`repository.join_json` writes them."""
        return self._view[self._start(start) : self._ends[stop - 1]]

    def _start(self, i: int) -> int:
        return self._ends[i - 1] + 1 if i else 0


def request_hash(body: bytes | memoryview) -> str:
    """``v2`` + 62 hex digits of the sha256 of :func:`request_json` (fits the 64-char column)."""
    return REQUEST_HASH_VERSION + hashlib.sha256(body).hexdigest()[:62]


def legacy_request_hash(message: Message) -> str:
    """The hash stored before decision 0050: sha256 of the validated message with its defaults,
    as ``json.dumps`` with sorted keys (ASCII-escaped). Compared only with legacy rows."""
    canonical = json.dumps(message.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _same_request(stored: str, digest: str, message: Message) -> bool:
    if stored == digest:
        return True
    return not stored.startswith(REQUEST_HASH_VERSION) and stored == legacy_request_hash(message)


def result_from_record(row: MessageRecord) -> SendResultOut:
    outcome = Outcome.accepted if row.status in _SENT_STATES else Outcome(row.status.value)
    return SendResultOut(
        idempotency_key=row.idempotency_key,
        message_id=row.id,
        outcome=outcome,
        provider=row.provider,
        provider_message_id=row.provider_message_id,
        code=row.code,
        reason=row.reason,
        retry_after=row.retry_after,
        status_code=row.status_code,
    )


def _in_progress(row: MessageRecord, retry_after: float) -> SendResultOut:
    return SendResultOut(
        idempotency_key=row.idempotency_key,
        message_id=row.id,
        outcome=Outcome.transient_error,
        provider=row.provider,
        code="in_progress",
        reason="a request with this idempotency key is still in flight",
        retry_after=retry_after,
    )


def _conflict(key: str) -> SendResultOut:
    return SendResultOut(
        idempotency_key=key,
        message_id=None,
        outcome=Outcome.permanent_error,
        code="idempotency_conflict",
        reason="this idempotency key was already used with a different message",
        status_code=422,
    )


class MessageService:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher,
        settings: GatewaySettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        # the results of a dispatch are one UPDATE: no transaction around it (decision 0088)
        self.single_statement = autocommit_sessionmaker(sessionmaker)
        self.dispatcher = dispatcher
        self.settings = settings

    async def send(self, items: Sequence[BatchItem]) -> list[ItemResult]:
        """One result per item, in order. Repeated keys inside one batch share one send."""
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            first.setdefault(item.idempotency_key, i)
        # in key (code point) order: the order the claim locks them in, also across its
        # statements, whose requests are then consecutive runs of the buffer
        primaries = sorted(first.values(), key=lambda i: items[i].idempotency_key)
        documents = RequestDocuments([items[i].message for i in primaries])
        hashes: dict[int, str] = {}
        for n, i in enumerate(primaries):
            document = documents[n]
            hashes[i] = request_hash(document)
            items[i].message.remember_json(document)
        by_key = await self._send_unique(
            [items[i] for i in primaries], [hashes[i] for i in primaries], documents
        )
        out: list[ItemResult] = []
        for i, item in enumerate(items):
            key = item.idempotency_key
            if first[key] == i:
                out.append(by_key[key])
            elif hashes[first[key]] == request_hash(_request_json(item.message)):
                out.append(ItemResult(Resolution.stored, by_key[key].result))
            else:
                out.append(ItemResult(Resolution.conflict, _conflict(key)))
        return out

    async def _send_unique(
        self, items: Sequence[BatchItem], hashes: Sequence[str], documents: RequestDocuments
    ) -> dict[str, ItemResult]:
        """``items``: unique keys in key order, ``documents`` their request JSON."""
        ids = uuid7s(len(items))
        claims = [
            self._new_claim(item, h, item.message.received_json or documents[n], ids[n])
            for n, (item, h) in enumerate(zip(items, hashes, strict=True))
        ]
        messages = {item.idempotency_key: item.message for item in items}
        claim_of = {c.idempotency_key: c for c in claims}
        async with session_scope(self.sessionmaker) as session:
            claimed: list[repository.Claimed] = []
            for start in range(0, len(claims), CLAIM_CHUNK):
                part = claims[start : start + CLAIM_CHUNK]
                claimed += await repository.claim(
                    session,
                    part,
                    lease=self.settings.claim_lease_seconds,
                    requests=documents.joined(start, start + len(part)),
                )
            # a claimed key's stored request has this hash: it is the message in hand
            pending = [self._pending(c, messages[c.idempotency_key]) for c in claimed]
            taken = {c.idempotency_key for c in claimed}
            others = await repository.by_keys(
                session, [c.idempotency_key for c in claims if c.idempotency_key not in taken]
            )
            same = {
                row.idempotency_key
                for row in others
                if _same_request(
                    row.request_hash,
                    claim_of[row.idempotency_key].request_hash,
                    messages[row.idempotency_key],
                )
            }
            # rows stored with the legacy hash: take over the retryable ones under that hash
            legacy = [
                replace(claim_of[row.idempotency_key], request_hash=row.request_hash)
                for row in others
                if row.idempotency_key in same
                and row.request_hash != claim_of[row.idempotency_key].request_hash
            ]
            if legacy:
                retaken = await repository.claim(
                    session, legacy, lease=self.settings.claim_lease_seconds
                )
                pending += [self._pending(c, messages[c.idempotency_key]) for c in retaken]
                again = {c.idempotency_key for c in retaken}
                others = [row for row in others if row.idempotency_key not in again]
            disabled, suppressed = await self._screening_state(session, pending)
        # committed: each claimed row's request is its message's JSON, a provider may copy it
        for p in pending:
            p.message.remember_json(p.message.received_json, stored_as=p.message_id)
        results: dict[str, ItemResult] = {}
        waiting: list[MessageRecord] = []
        for row in others:
            if row.idempotency_key not in same:
                results[row.idempotency_key] = ItemResult(
                    Resolution.conflict, _conflict(row.idempotency_key)
                )
            elif row.status is MessageStatus.in_progress:
                waiting.append(row)
            else:
                results[row.idempotency_key] = ItemResult(
                    Resolution.stored, result_from_record(row)
                )
        sent, waited = await asyncio.gather(
            self._dispatch_and_store(pending, disabled=disabled, suppressed=suppressed),
            self._wait_for(waiting),
        )
        results.update(sent)
        results.update(waited)
        for resolution, n in Counter(r.resolution for r in results.values()).items():
            if resolution is not Resolution.sent:
                IDEMPOTENT_REPLAYS.labels(resolution.value).inc(n)
        return results

    def _new_claim(
        self, item: BatchItem, digest: str, body: bytes | memoryview, message_id: uuid.UUID
    ) -> repository.NewClaim:
        message = item.message
        first = next((r.address for r in message.to if r.address), None)
        return repository.NewClaim(
            id=message_id,
            idempotency_key=item.idempotency_key,
            request_hash=digest,
            request=body,
            channel=message.channel,
            action=message.action,
            provider=message.provider or self.settings.provider_for(message.channel),
            recipient=normalize_address(first)[:320] if first else None,
        )

    @staticmethod
    def _pending(claimed: repository.Claimed, message: Message | None = None) -> Pending:
        return Pending(
            message_id=claimed.id,
            idempotency_key=claimed.idempotency_key,
            claim_token=claimed.claim_token,
            message=message or Message.model_validate(claimed.request),
            provider=claimed.provider,
        )

    async def _screening_state(
        self, session: AsyncSession, pending: Sequence[Pending]
    ) -> tuple[set[str], set[tuple[str, str]]]:
        names = configured(self.settings, (p.provider for p in pending if p.provider))
        addresses = [a for p in pending for a in addresses_to_check(p.message)]
        found = await repository.screening(session, names, addresses)  # one round trip
        return disabled_of(self.settings, names, found.switches), found.suppressed

    async def _dispatch_and_store(
        self,
        pending: Sequence[Pending],
        *,
        disabled: set[str],
        suppressed: set[tuple[str, str]],
    ) -> dict[str, ItemResult]:
        if not pending:
            return {}
        try:
            sent = await self.dispatcher.dispatch(pending, disabled=disabled, suppressed=suppressed)
        except Exception:  # a bug in our own pipeline: answer transient, free the keys
            log.exception("gateway.dispatch_failed", count=len(pending))
            sent = [SendResult.transient("internal", "gateway dispatch failed") for _ in pending]
        sent = [_storable(r) for r in sent]
        now = datetime.now(UTC)
        stored = [_stored(p, r, now) for p, r in zip(pending, sent, strict=True)]

        async def store() -> None:
            async with session_scope(self.single_statement) as session:
                await repository.store_results(session, stored)

        # after the provider call: a dropped connection must not leave sent messages
        # in_progress until their lease runs out; the write is keyed by claim token (idempotent)
        await retry_on_disconnect(store)
        debug = logging.getLogger("gateway").isEnabledFor(
            logging.DEBUG
        )  # structlog formats dropped lines
        for p, r in zip(pending, sent, strict=True):
            # one line per message; accepted ones at debug so a 500-letter batch stays cheap
            if r.outcome is Outcome.accepted and not debug:
                continue
            emit = log.debug if r.outcome is Outcome.accepted else log.info
            emit(
                f"gateway.message_{r.outcome.value}",
                message_id=str(p.message_id),
                idempotency_key=p.idempotency_key,
                provider=p.provider,
                code=r.code,
            )
        log.info(
            "gateway.messages_sent",
            count=len(pending),
            **Counter(r.outcome.value for r in sent),
        )
        return {
            p.idempotency_key: ItemResult(Resolution.sent, _out(p, r))
            for p, r in zip(pending, sent, strict=True)
        }

    async def _wait_for(self, rows: Sequence[MessageRecord]) -> dict[str, ItemResult]:
        """Poll in-flight keys until they finish or ``inflight_wait_seconds`` pass."""
        if not rows:
            return {}
        waiting = {r.idempotency_key: r for r in rows}
        done: dict[str, ItemResult] = {}
        deadline = time.monotonic() + self.settings.inflight_wait_seconds
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(self.settings.inflight_poll_seconds)
            async with self.sessionmaker() as session:
                fresh = await repository.by_keys(session, list(waiting))
            for row in fresh:
                if row.status is not MessageStatus.in_progress:
                    done[row.idempotency_key] = ItemResult(
                        Resolution.stored, result_from_record(row)
                    )
                    waiting.pop(row.idempotency_key, None)
                else:
                    waiting[row.idempotency_key] = row
        now = datetime.now(UTC)
        for key, row in waiting.items():
            left = (row.lease_until - now).total_seconds() if row.lease_until else 1.0
            retry = round(min(max(1.0, left), self.settings.claim_lease_seconds), 1)
            done[key] = ItemResult(Resolution.in_progress, _in_progress(row, retry))
        return done

    async def replay(self, provider: str, *, batch_size: int = 500) -> Counter[str]:
        """Send again every message ``provider`` answered ``skipped: disabled``."""
        outcomes: Counter[str] = Counter()
        while True:
            async with session_scope(self.sessionmaker) as session:
                claimed = await repository.claim_replayable(
                    session, provider, limit=batch_size, lease=self.settings.claim_lease_seconds
                )
                pending = [self._pending(c) for c in claimed]
                disabled, suppressed = await self._screening_state(session, pending)
            if not pending:
                return outcomes
            results = await self._dispatch_and_store(
                pending, disabled=disabled, suppressed=suppressed
            )
            outcomes.update(r.result.outcome.value for r in results.values())
            await self._record_replays([r.result for r in results.values()])
            if provider in disabled:  # switched off again meanwhile: stop, nothing is lost
                return outcomes

    async def _record_replays(self, results: Sequence[SendResultOut]) -> None:
        """A ``replayed`` provider event per replayed message that left ``skipped: disabled``,
        so the status-changes feed tells the sender (the notifier's letter was recorded
        ``skipped``, and is now sent, failed or due again)."""
        moved = [
            r
            for r in results
            if r.message_id is not None
            and not (r.outcome is Outcome.skipped and r.code == "disabled")
        ]
        if not moved:
            return
        now = datetime.now(UTC)
        async with session_scope(self.sessionmaker) as session:
            await repository.record_replays(session, moved, at=now)


def _stored(p: Pending, r: SendResult, now: datetime) -> repository.StoredResult:
    return repository.StoredResult(
        id=p.message_id,
        claim_token=p.claim_token,
        status=MessageStatus(r.outcome.value),
        provider_message_id=r.provider_message_id[:255] if r.provider_message_id else None,
        code=r.code[:50] if r.code else None,
        reason=r.reason,
        status_code=r.status_code,
        retry_after=r.retry_after,
        response_excerpt=excerpt(r.response_excerpt),
        sent_at=now if r.outcome is Outcome.accepted else None,
    )


def _storable(r: SendResult) -> SendResult:
    """A provider's answer with every U+0000 in its strings written as U+FFFD. They come from
    outside, and PostgreSQL cannot store U+0000: the batch's results (written after the sends)
    would fail, and so would the notifier's record of the answer."""
    texts = (r.provider_message_id, r.code, r.reason, r.response_excerpt)
    if not any(t and "\x00" in t for t in texts):
        return r
    return replace(
        r,
        provider_message_id=_no_nul(r.provider_message_id),
        code=_no_nul(r.code),
        reason=_no_nul(r.reason),
        response_excerpt=_no_nul(r.response_excerpt),
    )


def _no_nul(text: str | None) -> str | None:
    return text.replace("\x00", "\ufffd") if text else text


def _out(p: Pending, r: SendResult) -> SendResultOut:
    return SendResultOut(
        idempotency_key=p.idempotency_key,
        message_id=p.message_id,
        outcome=r.outcome,
        provider=p.provider,
        provider_message_id=r.provider_message_id,
        code=r.code,
        reason=r.reason,
        retry_after=r.retry_after,
        status_code=r.status_code,
    )
