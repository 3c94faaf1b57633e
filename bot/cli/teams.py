"""`herald teams package`: the Teams app package."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli.base import get_settings, main
from bot.common.errors import UserError


@main.group(help="Microsoft Teams.")
def teams() -> None:
    pass


@teams.command("package", help="Write the Teams app package (manifest + icons) to upload in Teams.")
@click.option("--url", "public_url", required=True, help="Herald's public https URL.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("herald-teams.zip"),
              show_default=True)
@click.option("--app-id", default="", help="The bot's Microsoft app id (default HERALD_TEAMS_APP_ID).")
@click.option("--version", "app_version", default="1.0.0", show_default=True)
def teams_package(public_url: str, out: Path, app_id: str, app_version: str) -> None:
    from bot.teams_package import write_package

    app_id = app_id or get_settings().teams_app_id or ""
    if not app_id:
        click.echo("herald: give --app-id or set HERALD_TEAMS_APP_ID (the bot's Microsoft app id)", err=True)
        sys.exit(2)
    try:
        write_package(out, app_id=app_id, public_url=public_url, version=app_version)
    except UserError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out} (manifest {app_version}, validated against the Teams 1.17 schema)")
