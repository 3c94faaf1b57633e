"""`herald teams package`: the Teams app package."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli.base import get_settings, main
from bot.common.errors import UserError

FIRST_APP_VERSION = "1.0.0"


@main.group(help="Microsoft Teams.")
def teams() -> None:
    pass


@teams.command("package", help="Write the Teams app package (manifest + icons) to upload in Teams.")
@click.option("--url", "public_url", required=True, help="Herald's public https URL.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("herald-teams.zip"),
              show_default=True)
@click.option("--app-id", default="", help="The bot's Microsoft app id (default HERALD_TEAMS_APP_ID).")
@click.option("--app-version", "--version", "app_version", default=FIRST_APP_VERSION, show_default=True,
              help="The app's version (MAJOR.MINOR.PATCH). Teams updates an uploaded app only from a package "
                   "with a higher version: give one above the last uploaded when re-packaging.")
@click.option("--privacy-url", default="", help="The privacy statement Teams shows for the app (default "
              "HERALD_PRIVACY_URL, else Herald's own page, URL/privacy).")
@click.option("--terms-url", default="", help="The terms of use Teams shows for the app (default HERALD_TERMS_URL, "
              "else Herald's own page, URL/terms).")
def teams_package(public_url: str, out: Path, app_id: str, app_version: str, privacy_url: str,
                  terms_url: str) -> None:
    """`app_version` defaults to a fixed first version, not Herald's own (0.x, lower than
    packages already uploaded as 1.0.0), so that a default never goes backwards."""
    from bot.teams_package import write_package

    settings = get_settings()
    app_id = app_id or settings.teams_app_id or ""
    if not app_id:
        click.echo("herald: give --app-id or set HERALD_TEAMS_APP_ID (the bot's Microsoft app id)", err=True)
        sys.exit(2)
    try:
        write_package(out, app_id=app_id, public_url=public_url, version=app_version,
                      privacy_url=privacy_url or settings.privacy_url, terms_url=terms_url or settings.terms_url)
    except UserError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out} (app version {app_version}, validated against the Teams 1.17 schema); "
               f"to update an app already uploaded, its --app-version must be higher than the uploaded one's")
