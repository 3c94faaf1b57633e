"""`herald audit ...`: check the tamper-evident audit trail."""

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
def audit_verify(as_json: bool) -> None:
    from bot.cli.progress import Reporter
    from bot.core.compliance.verify import verify_chain

    # A check must not change what it checks: no migrations.
    with Reporter("audit trail", enabled=not as_json) as progress:
        result = run(lambda: verify_chain(progress=progress), current_schema=False)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    elif result.ok:
        click.echo(f"audit trail intact: {result.events} events, head {result.head_hash or '-'}")
    else:
        click.echo(f"audit trail broken: {result.reason}")
    if not result.ok:
        sys.exit(1)
