"""``notifier suppressions list | add | lift``: the same service functions as the operator API,
with a database session of their own; ``lift`` also calls the gateway (NOTIFIER_GATEWAY_URL,
NOTIFIER_GATEWAY_TOKEN) as the API does."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from notifier.models import SuppressionReason, SuppressionSource
from notifier.operator.cli import JsonOpt, _dump, _operator, _run, _with_engine, console

suppressions_app = typer.Typer(help="Suppressed addresses: list, add, lift.", no_args_is_help=True)


@suppressions_app.command("list")
def suppressions_list(
    address: Annotated[str | None, typer.Option(help="Compared lower-cased")] = None,
    scope: Annotated[str | None, typer.Option(help="*, a channel or a letter name")] = None,
    reason: Annotated[list[SuppressionReason] | None, typer.Option(help="Repeatable")] = None,
    source: Annotated[SuppressionSource | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Suppressions, newest first."""
    from notifier.suppressions import service
    from notifier.suppressions.repository import SuppressionQuery

    query = SuppressionQuery(
        address=address,
        scope=scope,
        reasons=tuple(reason or ()),
        source=source,
    )
    page = _run(lambda s: service.list_suppressions(s, query, cursor=cursor, limit=limit))
    if as_json:
        _dump(page)
        return
    table = Table("id", "address", "scope", "reason", "source", "created_at", "detail")
    for x in page.items:
        table.add_row(
            str(x.id),
            x.address,
            x.scope,
            x.reason.value,
            x.source.value,
            x.created_at.isoformat(timespec="seconds"),
            (x.detail or "")[:60],
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@suppressions_app.command("add")
def suppressions_add(
    address: Annotated[str, typer.Argument()],
    scope: Annotated[str, typer.Option(help="*, a channel or a letter name")] = "*",
    detail: Annotated[str | None, typer.Option(help="Why (stored after your name)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Suppress an address by hand (reason manual); an existing one is left as it is."""
    from pydantic import ValidationError

    from notifier.suppressions import service
    from notifier.suppressions.schemas import SuppressionIn

    try:
        body = SuppressionIn(address=address, scope=scope, detail=detail)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(errors) from exc
    row, added = _run(lambda s: service.add_manual(s, body, by=_operator()))
    if as_json:
        _dump(row)
    elif added:
        console.print(f"suppression {row.id} added: {row.address} in scope {row.scope}")
    else:
        console.print(
            f"already suppressed (suppression {row.id}, {row.reason.value} by {row.source.value})"
        )


@suppressions_app.command("lift")
def suppressions_lift(suppression_id: int, as_json: JsonOpt = False) -> None:
    """Lift a suppression, at the gateway first (same address and scope), then here."""
    from notifier.config.integrations import Integrations
    from notifier.suppressions import service

    out = _with_engine(
        lambda s, c, st: service.lift(
            s, suppression_id, gateway=Integrations.of(c, st), by=_operator()
        )
    )
    if as_json:
        _dump(out)
        return
    row = out.suppression
    console.print(
        f"lifted suppression {row.id} ({row.address}, scope {row.scope}, {row.reason.value}); "
        f"{out.gateway_lifted} row(s) lifted at the gateway"
    )
