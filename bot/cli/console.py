"""`herald console-link EMAIL`: a single-use sign-in link to the console, for an operator with
shell access (the same link `/herald console` gives in chat)."""

from __future__ import annotations

import asyncio
import sys

import click

from bot.cli.base import CLOCK, database_errors, main, operator_name
from bot.cli.server import serving_settings
from bot.common.errors import UserError


@main.command("console-link", help="Print a sign-in link to the web console for a staff member "
                                   "(works once, for 10 minutes). Uses the database `herald serve` uses.")
@click.argument("email")
def console_link(email: str) -> None:
    from bot.core.directory.console_access import issue_link_for_email
    from bot.service import Herald
    from storage import db as storage_db

    settings = serving_settings()

    async def work() -> str:
        await storage_db.connect_current(settings.tortoise_db_url)
        try:
            link = await issue_link_for_email(email, via="cli", now=CLOCK.now(), actor=f"operator:{operator_name()}")
        finally:
            await storage_db.close()
        return Herald(settings, clock=CLOCK).sign_in_url(link.token)

    with database_errors():
        try:
            url = asyncio.run(work())
        except UserError as exc:
            click.echo(f"herald: {exc}", err=True)
            sys.exit(1)
    click.echo(url)
