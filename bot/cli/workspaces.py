"""`herald workspaces list` and `herald slack add-workspace | manifest`: connected workspaces."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

import click

from bot.cli.base import CLOCK, get_settings, main, operator_name, run

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@main.group(help="Connected Slack workspaces and Teams tenants.")
def workspaces() -> None:
    pass


@workspaces.command("list", help="List connected workspaces (tokens are never shown).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspaces_list(as_json: bool) -> None:
    from bot.common.secrets import is_sealed
    from bot.core.directory.workspaces import list_workspaces

    async def work() -> list[dict[str, Any]]:
        return [{"platform": w.platform, "id": w.external_id, "name": w.name, "active": w.active,
                 "bot_user_id": w.bot_user_id,
                 "token": "encrypted" if is_sealed(w.bot_token) else "plaintext" if w.bot_token else "none",
                 "installed_at": w.created_at.isoformat(), "updated_at": w.updated_at.isoformat()}
                for w in await list_workspaces()]

    rows = run(work)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no workspaces connected")
        return
    for r in rows:
        click.echo(f"{r['platform']:6} {r['id']:14} {r['name'] or '-':28} {'active' if r['active'] else 'inactive':8} "
                   f"token:{r['token']:9} installed {r['installed_at']}  updated {r['updated_at']}")


@main.group(help="Slack workspaces.")
def slack() -> None:
    pass


@slack.command("add-workspace", help="Store the bot token of another Slack workspace.")
@click.argument("team_id")
@click.option("--token", required=True, help="The workspace's bot token (xoxb-...).")
@click.option("--name", default="")
def slack_add_workspace(team_id: str, token: str, name: str) -> None:
    from bot.core.directory.workspaces import add_slack_workspace

    if not token.startswith("xoxb-"):
        click.echo("herald: a Slack bot token starts with xoxb-", err=True)
        sys.exit(1)
    if not get_settings().secret_key:
        click.echo("herald: HERALD_SECRET_KEY is not set: the token is stored in the database in plaintext", err=True)
    created = run(lambda: add_slack_workspace(team_id, token, name=name, now=CLOCK.now(),
                                               actor=f"operator:{operator_name()}"))
    click.echo(f"{'added' if created else 'updated'} Slack workspace {team_id}")


def _public_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value.strip())
    host = parts.hostname or ""
    if not host or parts.query or parts.fragment or parts.username or parts.password:
        raise click.BadParameter("give the public base URL, e.g. https://herald.example.com")
    if parts.scheme != "https" and not (parts.scheme == "http" and host in LOCAL_HOSTS):
        raise click.BadParameter("must be an https:// URL (http:// is allowed only for localhost)")
    return value.strip().rstrip("/")


def slack_manifest(url: str | None, *, name: str = "Herald", socket_mode: bool = False) -> dict[str, Any]:
    """The Slack app manifest for a Herald reachable at `url`, or, with `socket_mode`, for one that
    opens a Socket Mode connection itself (no Request URLs; `url` then only names the OAuth redirect
    for "Add to Slack" and may be None)."""
    from bot.handlers.slack.oauth import BOT_EVENTS, BOT_SCOPES, REDIRECT_PATH

    if socket_mode:
        return _socket_mode_manifest(slack_manifest(url or "https://unused.invalid", name=name), url, REDIRECT_PATH)
    events_url = f"{url}/slack/events"
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": "Notices from your vendor, with acknowledgements and reminders.",
            "background_color": "#1f2a44",
        },
        "features": {
            "app_home": {"home_tab_enabled": True, "messages_tab_enabled": True,
                         "messages_tab_read_only_enabled": False},
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [{
                "command": "/herald", "url": events_url, "should_escape": False,
                "description": "Send and follow partner notices", "usage_hint": "send | status | help",
            }],
        },
        "oauth_config": {"redirect_urls": [url + REDIRECT_PATH], "scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": {"request_url": events_url, "bot_events": list(BOT_EVENTS)},
            "interactivity": {"is_enabled": True, "request_url": events_url},
            "org_deploy_enabled": True,  # an Enterprise Grid org may install it org-wide (README)
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }


def _socket_mode_manifest(data: dict[str, Any], url: str | None, redirect_path: str) -> dict[str, Any]:
    """The HTTP manifest without Request URLs, with Socket Mode on."""
    for command in data["features"]["slash_commands"]:
        command.pop("url", None)
    data["settings"]["event_subscriptions"].pop("request_url", None)
    data["settings"]["interactivity"].pop("request_url", None)
    data["settings"]["socket_mode_enabled"] = True
    if url:
        data["oauth_config"]["redirect_urls"] = [url + redirect_path]
    else:
        data["oauth_config"].pop("redirect_urls", None)
    return data


@slack.command("manifest", help="Print the Slack app manifest (paste it at api.slack.com/apps → Create New App).")
@click.option("--url", default=None, callback=_public_url,
              help="Herald's public base URL, e.g. https://herald.example.com (optional with --socket-mode: "
                   "only for the \"Add to Slack\" redirect).")
@click.option("--socket-mode", is_flag=True, help="Slack over Socket Mode (HERALD_SLACK_APP_TOKEN): no Request URLs.")
@click.option("--name", default="Herald", show_default=True, help="The app's and bot user's display name.")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), default="json", show_default=True)
def manifest(url: str | None, socket_mode: bool, name: str, fmt: str) -> None:
    if url is None and not socket_mode:
        raise click.UsageError("give --url (Herald's public URL), or --socket-mode for a host without one")
    data = slack_manifest(url, name=name, socket_mode=socket_mode)
    if fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
    else:
        click.echo(json.dumps(data, indent=2))
