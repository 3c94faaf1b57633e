"""`herald audit ...`: check the tamper-evident audit trail, and print its head to keep elsewhere."""

from __future__ import annotations

import json
import sys

import click

from bot.cli.base import main, run


@main.group(help="The audit trail.")
def audit() -> None:
    pass


@audit.command("verify", help="Recompute the audit trail's hash chain; exit 1 if it was altered.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--head", "anchor_text", metavar="SEQ:HASH", default=None,
              help="A chain head kept outside the database (a report's audit_chain_head, or `herald audit "
                   "head` saved earlier): fail unless event SEQ is still there with that hash. Only this "
                   "catches the newest events deleted, or the trail re-hashed, by someone with write access "
                   "to the database.")
def audit_verify(as_json: bool, anchor_text: str | None) -> None:
    from bot.cli.progress import Reporter
    from bot.common.errors import UserError
    from bot.core.compliance.verify import parse_anchor, verify_chain

    try:
        anchor = parse_anchor(anchor_text) if anchor_text is not None else None
    except UserError as exc:
        raise click.BadParameter(str(exc), param_hint="--head") from None
    # A check must not change what it checks: no migrations.
    with Reporter("audit trail", enabled=not as_json) as progress:
        result = run(lambda: verify_chain(progress=progress, anchor=anchor), current_schema=False)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    elif result.ok:
        against = f"; event {anchor[0]} matches the given head" if anchor is not None else ""
        click.echo(f"audit trail intact: {result.events} events, head {result.head_hash or '-'}{against}")
    else:
        click.echo(f"audit trail broken: {result.reason}")
    if not result.ok:
        sys.exit(1)


@audit.command("head", help="Print the audit chain head as SEQ:HASH, to keep outside the database (a ticket, "
                            "a log shipped elsewhere) and give to `herald audit verify --head` later.")
def audit_head() -> None:
    from bot.core.compliance.reports import chain_head

    head = run(chain_head, current_schema=False)
    click.echo(f"{head['seq']}:{head['hash'] or '-'}")
