"""Operator commands of the ``notifier`` CLI. They call the same service functions as the REST
API, with a database session of their own (no HTTP): they work on any box with DB access."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from notifier_common.db import create_engine, create_sessionmaker, session_scope
from notifier_common.errors import AppError
from pydantic import BaseModel
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.models import LetterStatus
from notifier.settings import NotifierSettings, get_settings

T = TypeVar("T")
console = Console()
letters_app = typer.Typer(help="Letter history and actions.", no_args_is_help=True)
config_app = typer.Typer(help="Letter configuration (audited).", no_args_is_help=True)
events_app = typer.Typer(help="Stored events.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
OPERATOR = "cli"


def _operator() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return OPERATOR


@asynccontextmanager
async def _database(
    settings: NotifierSettings,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url, pool_size=2, app_name="notifier-cli")
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def _clients(settings: NotifierSettings) -> AsyncIterator[dict[str, Any]]:
    from notifier.worker import start_clients

    clients: dict[str, Any] = {}
    start_clients(clients, settings)
    try:
        yield clients
    finally:
        for name in ("gateway_http", "upstream_http"):
            await clients[name].aclose()


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """One transaction around ``work``; AppErrors become a message and exit code 1."""

    async def main() -> T:
        async with _database(get_settings()) as sm, session_scope(sm) as session:
            return await work(session)

    try:
        return asyncio.run(main())
    except AppError as exc:
        console.print(f"[red]{exc.title}[/red]: {exc.detail}")
        for err in exc.errors or []:
            console.print(f"  {err.get('loc')}: {err.get('msg')}")
        raise typer.Exit(1) from exc


def _dump(model: BaseModel | list[Any]) -> None:
    data = (
        [m.model_dump(mode="json") for m in model]
        if isinstance(model, list)
        else model.model_dump(mode="json")
    )
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _letters_table(items: list[Any]) -> Table:
    table = Table("id", "letter", "client", "recipient", "status", "send_at", "sent_at", "why")
    for x in items:
        why = x.cancel_reason or x.skip_reason or x.last_error or ""
        table.add_row(
            str(x.id),
            x.letter,
            x.client_id,
            x.recipient,
            x.status.value,
            x.send_at.isoformat(timespec="minutes"),
            x.sent_at.isoformat(timespec="minutes") if x.sent_at else "",
            why[:60],
        )
    return table


@letters_app.command("list")
def letters_list(
    client: Annotated[str | None, typer.Option(help="client_id")] = None,
    letter: Annotated[str | None, typer.Option(help="Letter name")] = None,
    status: Annotated[list[LetterStatus] | None, typer.Option(help="Repeatable")] = None,
    since: Annotated[datetime | None, typer.Option(help="created_at >= (ISO, with tz)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Letters, newest first."""
    from notifier.operator import service
    from notifier.operator.repository import LetterQuery

    query = LetterQuery(
        client_id=client, letter=letter, status=tuple(status or ()), created_from=since
    )
    page = _run(lambda s: service.list_letters(s, query, cursor=cursor, limit=limit))
    if as_json:
        _dump(page)
        return
    console.print(_letters_table(page.items))
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@letters_app.command("show")
def letters_show(letter_id: int, as_json: JsonOpt = False) -> None:
    """One letter with its timeline."""
    from notifier.operator import service

    detail = _run(lambda s: service.letter_detail(s, letter_id))
    if as_json:
        _dump(detail)
        return
    console.print(_letters_table([detail]))
    table = Table("at", "step", "what")
    for entry in detail.timeline:
        at = entry.at.isoformat(timespec="seconds") if entry.at else ""
        table.add_row(at, entry.kind, entry.summary)
    console.print(table)


@letters_app.command("cancel")
def letters_cancel(
    letter_id: int,
    reason: Annotated[str, typer.Option()] = "cancelled by operator",
    as_json: JsonOpt = False,
) -> None:
    """Cancel a scheduled letter (anything else is refused)."""
    from notifier.operator import service

    out = _run(lambda s: service.cancel(s, letter_id, reason=reason, by=_operator()))
    _dump(out) if as_json else console.print(f"cancelled letter {out.id}")


def _with_engine(
    work: Callable[[AsyncSession, dict[str, Any], NotifierSettings], Awaitable[T]],
    *,
    send: Callable[[T], Sequence[int]] | None = None,
) -> T:
    """``work`` with the engine's clients in one transaction; ``send``: the ids of the letters
    it created, sent right away after the commit as the API does (else the drain sends them)."""
    settings = get_settings()

    async def with_clients(session: AsyncSession) -> T:
        async with _clients(settings) as clients:
            out = await work(session, clients, settings)
        if send is not None:
            await _send_after_commit(session, settings, send(out))
        return out

    return _run(with_clients)


async def _send_after_commit(
    session: AsyncSession, settings: NotifierSettings, letter_ids: Sequence[int]
) -> None:
    """Commit, then ask a worker to send these letters now, exactly as the API does
    (``dispatch.send_after_commit``). Redis out of reach fails nothing: the letters are
    committed ``scheduled`` and due, and the per-minute drain sends them."""
    from notifier_common.publisher import connect
    from redis.exceptions import RedisError

    from notifier.operator.dispatch import send_after_commit

    await session.commit()
    try:
        redis = await connect(settings.redis_url)
    except (RedisError, OSError) as exc:
        console.print(f"Redis unreachable ({exc}): the per-minute drain will send it")
        return
    try:
        await send_after_commit(session, redis, letter_ids, queue_name=settings.queue_name)
    finally:
        await redis.aclose()


@letters_app.command("resend")
def letters_resend(
    letter_id: int,
    fresh: Annotated[bool, typer.Option(help="Re-fetch the data upstream")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Resend a finished letter as a new letter (resend_of = ID)."""
    from notifier.operator import sending
    from notifier.worker import plan_config

    out = _with_engine(
        lambda s, c, st: sending.resend(
            s,
            letter_id,
            fresh=fresh,
            enricher=c["enrichment"],
            config=plan_config(st),
            by=_operator(),
            now=c["clock"](),
        ),
        send=lambda letter: [letter.id],
    )
    _dump(out) if as_json else console.print(f"letter {out.id} scheduled (resend of {letter_id})")


@letters_app.command("retry")
def letters_retry(
    status: Annotated[list[LetterStatus], typer.Option(help="failed / expired")],
    since: Annotated[datetime | None, typer.Option(help="created_at >= (ISO, with tz)")] = None,
    letter: Annotated[str | None, typer.Option()] = None,
    client: Annotated[str | None, typer.Option()] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count")] = False,
    max_: Annotated[int | None, typer.Option("--max", help="Refuse if more match")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Letters per transaction")] = 500,
    as_json: JsonOpt = False,
) -> None:
    """Re-schedule failed letters in batches, with a progress bar and a summary."""
    from notifier.operator import service
    from notifier.operator.schemas import LetterFilter

    flt = LetterFilter(status=status, created_from=since, letter=letter, client_id=client)
    counted = _run(lambda s: service.retry(s, flt, dry_run=True, cap=None, by=_operator()))
    if dry_run:
        _dump(counted) if as_json else console.print(f"{counted.matched} letters match")
        return
    if max_ is None:
        console.print("[red]--max is required unless --dry-run[/red]")
        raise typer.Exit(2)
    if counted.matched > max_:
        console.print(f"[red]{counted.matched} letters match, more than --max {max_}[/red]")
        raise typer.Exit(1)
    done: list[int] = []
    with Progress(console=console, disable=as_json) as progress:
        task = progress.add_task("retrying", total=counted.matched)
        while len(done) < counted.matched:
            step = min(batch, counted.matched - len(done))
            ids = _run(
                lambda s, n=step: service.reschedule_batch(s, flt, limit=n, by=_operator())  # type: ignore[misc]
            )
            if not ids:
                break
            done += ids
            progress.advance(task, len(ids))
    summary = {"matched": counted.matched, "rescheduled": len(done)}
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        console.print(f"rescheduled {len(done)} of {counted.matched} letters")


def send(
    letter: Annotated[str, typer.Argument(help="Catalog letter name")],
    client: Annotated[str, typer.Option(help="client_id")],
    contract: Annotated[str | None, typer.Option(help="contract_id, for contract letters")] = None,
    bypass_conditions: Annotated[bool, typer.Option(help="Admin bypass of the condition")] = False,
    payload: Annotated[
        str | None,
        typer.Option(
            help="The triggering event's payload as JSON, for integration letters "
            """(e.g. '{"email": "a@example.com", "group": "nda"}')"""
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a catalog letter to a client by hand (recorded as manual)."""
    from notifier.operator import sending
    from notifier.operator.schemas import SendRequest
    from notifier.worker import plan_config

    event_payload = None
    if payload is not None:
        try:
            event_payload = json.loads(payload)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--payload") from exc
        if not isinstance(event_payload, dict):
            raise typer.BadParameter("a JSON object is expected", param_hint="--payload")
    req = SendRequest(
        letter=letter,
        client_id=client,
        contract_id=contract,
        bypass_conditions=bypass_conditions,
        event_payload=event_payload,
    )
    out = _with_engine(
        lambda s, c, st: sending.manual_send(
            s,
            req,
            enricher=c["enrichment"],
            config=plan_config(st),
            by=_operator(),
            now=c["clock"](),
        ),
        send=lambda result: [letter.id for letter in result.letters],
    )
    if as_json:
        _dump(out)
        return
    console.print(_letters_table(out.letters))
    if out.condition and out.condition.bypassed:
        console.print(f"condition bypassed: {out.condition.reason}")


@config_app.command("get")
def config_get(
    letter: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False
) -> None:
    """The catalog (or one letter) with switch, defaults, overrides and effective values."""
    from notifier.config import service

    if letter:
        one = _run(lambda s: service.get_letter(s, letter))
        items = [one]
    else:
        items = _run(service.list_letters)
    if as_json:
        _dump(items if letter is None else items[0])
        return
    table = Table("letter", "enabled", "timing", "overrides", "effective")
    for c in items:
        table.add_row(
            c.name,
            "yes" if c.enabled else "[red]no[/red]",
            c.timing,
            json.dumps(c.overrides),
            json.dumps(c.effective),
        )
    console.print(table)


@config_app.command("set")
def config_set(
    letter: Annotated[str, typer.Argument()],
    assignments: Annotated[list[str] | None, typer.Argument(help="key=value (JSON values)")] = None,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    reset: Annotated[bool, typer.Option(help="Drop stored overrides first")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a letter's switch and/or parameters (validated, audited)."""
    from notifier.config import service
    from notifier.config.schemas import LetterConfigPatch

    try:
        params = service.parse_assignments(assignments or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    patch = LetterConfigPatch(enabled=enabled, params=params or None, reset_params=reset)
    out = _run(lambda s: service.update_letter(s, letter, patch, by=_operator()))
    if as_json:
        _dump(out)
    else:
        console.print(f"{out.name}: enabled={out.enabled} overrides={json.dumps(out.overrides)}")


@events_app.command("replay")
def events_replay(
    event_id: uuid.UUID,
    force: Annotated[bool, typer.Option(help="Re-run planning of a failed event")] = False,
) -> None:
    """Re-enqueue a stored event's body.

    Processing is idempotent: a processed (or rejected) event replays as a no-op. ``--force``
    re-runs the letter planning of a ``failed`` event (its status goes back to ``processing``);
    letters it already created are not created twice (unique event/letter/recipient).
    """
    from notifier.operator import replay

    settings = get_settings()
    try:
        outcome = asyncio.run(replay.replay(settings, event_id, force=force))
    except AppError as exc:
        console.print(f"[red]{exc.title}[/red]: {exc.detail}")
        raise typer.Exit(1) from exc
    console.print(outcome)


def drain(
    now: Annotated[bool, typer.Option("--now", help="Run one drain pass immediately")] = False,
) -> None:
    """Deliver every letter due now (what the per-minute cron does), once."""
    if not now:
        console.print("the worker drains every minute; use --now to run a pass here")
        raise typer.Exit(2)
    from notifier.operator import replay

    report = asyncio.run(replay.drain_once(get_settings()))
    console.print(report)


def register(app: typer.Typer) -> None:
    app.add_typer(letters_app, name="letters")
    app.add_typer(config_app, name="config")
    app.add_typer(events_app, name="events")
    app.command("send")(send)
    app.command("drain")(drain)
