"""`herald serve` and `herald db upgrade`."""

from __future__ import annotations

import asyncio
import socket
import sys

import click

from bot.cli.base import database_errors, database_settings, get_settings, main, setup_logging
from config.settings import Settings


def serving_settings(*, host: str | None = None, port: int | None = None) -> Settings:
    """The settings `serve` runs with: in sandbox mode, the sandbox's own database. `console-link`
    uses them too, so its link opens the console of the server `serve` starts. `port` 0 (a free
    port the system chooses) is a port given, not "none"."""
    settings = get_settings()
    given = {**({"host": host} if host else {}), **({"port": port} if port is not None else {})}
    if given:
        settings = settings.model_copy(update=given)
    return settings.for_sandbox() if settings.sandbox_active else settings


@main.command(help="Run the HTTP server (Slack, Teams, console, health, API). Migrates the database first. "
                   "With neither Slack nor Teams configured it runs the sandbox (HERALD_SANDBOX).")
@click.option("--host", default=None, help="Interface to listen on (default HERALD_HOST or 0.0.0.0).")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help="Port (default HERALD_PORT or 3978; 0: a free one, named when it listens).")
def serve(host: str | None, port: int | None) -> None:
    from aiohttp import web

    from bot.app import HTTP_DRAIN_SECONDS, RedactingAccessLogger, build_app, drain_on_sigterm

    settings = serving_settings(host=host, port=port)
    setup_logging(settings.log_level, settings)
    settings, sock = _free_port_taken(settings)
    refuse_unusable_content_files(settings)
    if settings.sandbox_active:
        click.echo(f"herald: SANDBOX MODE (no Slack or Teams configured; HERALD_SANDBOX={settings.sandbox}): "
                   f"database {settings.database_url}", err=True)
    pending: list[str] = []  # start-up messages (the sandbox's sign-in link), shown once we listen

    def listening(msg: str) -> None:  # aiohttp prints "Running on ..." after the socket is bound
        for line in [msg, *pending]:
            click.echo(f"herald: {line}")
        pending.clear()

    with database_errors(prefix="cannot start: "):  # a database that refuses the login, an old schema, ...
        app = build_app(settings, sandbox=settings.sandbox_active, announce=pending.append, freeze_heap=True)
        app.on_startup.append(drain_on_sigterm(settings.drain_seconds))  # /healthz says draining first
        try:
            where = {"sock": sock} if sock is not None else {"host": settings.host, "port": settings.port}
            web.run_app(app, **where, access_log_class=RedactingAccessLogger, print=listening, shutdown_timeout=HTTP_DRAIN_SECONDS)
        except BrokenPipeError:
            raise  # its output's reader went away: see HeraldGroup
        except (OSError, ConnectionError) as exc:  # the port is taken, ...
            click.echo(f"herald: cannot start: {exc}", err=True)
            sys.exit(2)


def _free_port_taken(settings: Settings) -> tuple[Settings, socket.socket | None]:
    """For `--port 0`: a socket bound to a free port the system chooses, on the host's first
    address, and the settings with that port. It is bound before the app is built, so that the
    links the app makes (the console's sign-in link) name it; aiohttp's "Running on" line too.
    Other ports: the settings as they are, and no socket (aiohttp binds it)."""
    if settings.port != 0:
        return settings, None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(settings.host or None, 0, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
    except OSError as exc:  # a host that does not resolve, an address this machine does not have, ...
        click.echo(f"herald: cannot start: {exc}", err=True)
        sys.exit(2)
    return settings.model_copy(update={"port": sock.getsockname()[1]}), sock


def refuse_unusable_content_files(settings: Settings) -> None:
    """Exit 2 with one line when the topics file, the journeys or the knowledge base cannot be
    used (the doctor's checks): a broken topics file used to be a traceback, a missing knowledge
    base a server whose every partner question failed."""
    from bot.ops.content_files import check_content_files

    for unusable in (f for f in check_content_files(settings) if not f.usable):
        click.echo(f"herald: cannot start: {unusable.source}: {unusable.detail}", err=True)
        sys.exit(2)


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply pending schema migrations.")
def db_upgrade() -> None:
    from storage import db as storage_db

    settings = database_settings()
    with database_errors():
        asyncio.run(storage_db.upgrade(settings.tortoise_db_url))
    click.echo("database is up to date")
