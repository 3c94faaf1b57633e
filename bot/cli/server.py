"""`herald serve` and `herald db upgrade`."""

from __future__ import annotations

import asyncio
import sys

import click

from bot.cli.base import get_settings, main, setup_logging


@main.command(help="Run the HTTP server (Slack, Teams, health, API). Migrates the database first.")
@click.option("--host", default=None, help="Interface to listen on (default HERALD_HOST or 0.0.0.0).")
@click.option("--port", default=None, type=int, help="Port (default HERALD_PORT or 3978).")
def serve(host: str | None, port: int | None) -> None:
    from aiohttp import web

    from bot.app import build_app

    from storage.db import SchemaNotCurrent

    settings = get_settings()
    setup_logging(settings.log_level, settings)
    try:
        web.run_app(build_app(settings), host=host or settings.host, port=port or settings.port,
                    print=lambda msg: click.echo(f"herald: {msg}"))
    except (OSError, ConnectionError) as exc:
        click.echo(f"herald: cannot start: {exc}", err=True)
        sys.exit(2)
    except SchemaNotCurrent as exc:
        click.echo(f"herald: cannot start: {exc}", err=True)
        sys.exit(2)


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply pending schema migrations.")
def db_upgrade() -> None:
    from storage import db as storage_db

    settings = get_settings()
    try:
        asyncio.run(storage_db.upgrade(settings.tortoise_db_url))
    except (OSError, ConnectionError) as exc:
        click.echo(f"herald: cannot reach the database ({exc})", err=True)
        sys.exit(2)
    click.echo("database is up to date")
