"""Connecting Slack workspaces with "Add to Slack" (OAuth v2).

    GET /slack/install          302 to Slack's authorize page, with a signed `state`
    GET /slack/oauth_redirect   Slack sends the browser back with `code` and `state`; the code is
                                exchanged (oauth.v2.access) and the workspace stored

The `state` (CSRF protection, survives restarts, no server-side session):

* `/slack/install` draws a random nonce and answers with `state = v1.<nonce>.<expiry>.<HMAC>`
  (HMAC-SHA256 with a key derived from HERALD_SECRET_KEY; expiry 10 minutes) and sets the nonce
  in an HttpOnly, SameSite=Lax cookie (Secure and `__Host-` prefixed when the public URL is https).
* `/slack/oauth_redirect` accepts the state only when the HMAC is right, it has not expired, and
  it carries the same nonce as the cookie: the browser that comes back must be the one that
  started the install, so a link crafted by someone else (login CSRF, "install my workspace into
  your Herald") fails. The cookie is cleared on every answer, and the nonce (hashed) is kept in
  the `workspace.installed` audit event, so a state that was used once is refused even when the
  cookie is presented again.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.common.errors import UserError
from bot.common.secrets import cipher_for, sign, signing_key, signing_keys, verify_any, warn_if_plaintext
from bot.core.directory.slack_orgs import grant_teams
from bot.core.directory.workspaces import (
    InstallReused,
    install_slack_workspace,
    install_used,
)
from bot.service import Herald
from config.settings import Settings

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_TTL = timedelta(minutes=10)
STATE_VERSION = "v1"
_STATE_PURPOSE = "slack-oauth-state/v1"

# What the Slack app needs, and no more (every partner workspace's admin approves each one); the
# manifest (`herald slack manifest`), "Add to Slack" and `herald doctor` use the same list.
#   commands      the /herald slash command
#   chat:write    chat.postMessage, chat.update (notices, reminders, replies, in-place updates)
#   im:write      conversations.open (a member's DM)
#   im:history    the message.im event (questions to the assistant) and conversations.history of
#                 a DM (finding a message an interrupted send already posted)
#   files:write   files.getUploadURLExternal / files.completeUploadExternal (reports sent in Slack)
# views.open, views.publish and auth.test need none. Herald never looks people up in Slack (the
# directory names their Slack user ids), so neither users:read nor users:read.email is asked for.
BOT_SCOPES = ("commands", "chat:write", "im:write", "im:history", "files:write")
# team_access_granted / team_access_revoked: which workspaces of an Enterprise Grid org an org-wide
# install may act in (no scope needed; Slack sends them to org-ready apps only)
BOT_EVENTS = ("app_home_opened", "message.im", "app_uninstalled", "tokens_revoked", "team_access_granted",
              "team_access_revoked")

NOT_CONFIGURED = ("Installing Herald into Slack workspaces is not configured here: "
                  "set HERALD_SLACK_CLIENT_ID and HERALD_SLACK_CLIENT_SECRET.")
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class StateError(Exception):
    """The `state` coming back from Slack is not acceptable; the message says why."""


def make_state(secret_key: str, nonce: str, expires: int) -> str:
    body = f"{STATE_VERSION}.{nonce}.{expires}"
    return f"{body}.{sign(signing_key(secret_key, _STATE_PURPOSE), body)}"


def check_state(secret_key: str, state: str, cookie_nonce: str | None, now: datetime,
                previous_keys: Sequence[str] = ()) -> tuple[str, int]:
    """The state's (nonce, expiry) when it is genuine (signed with the key or a previous one, for
    an install begun before a key rotation), unexpired and bound to this browser."""
    parts = state.split(".")
    if len(parts) != 4 or parts[0] != STATE_VERSION or not parts[2].isdigit():
        raise StateError("the install link is not valid")
    version, nonce, expires, signature = parts
    if not verify_any(signing_keys(secret_key, _STATE_PURPOSE, previous_keys), f"{version}.{nonce}.{expires}",
                      signature):
        raise StateError("the install link is not valid")
    if now.timestamp() > int(expires):
        raise StateError("the install link has expired (they last 10 minutes)")
    if not cookie_nonce or not secrets.compare_digest(cookie_nonce.encode(), nonce.encode()):
        raise StateError("the install was not started from this browser (or it was already completed)")
    return nonce, int(expires)


def install_id(nonce: str) -> str:
    """What the audit log keeps of a state's nonce (enough to refuse its reuse)."""
    return hashlib.sha256(nonce.encode()).hexdigest()[:32]


def _page(status: int, title: str, message: str) -> web.Response:
    body = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Herald: {html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;"
        "line-height:1.5}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n<p>{message}</p></body></html>\n"
    )
    return web.Response(status=status, text=body, content_type="text/html", headers=_SECURITY_HEADERS)


def _start_again(text: str) -> str:
    return f"{html.escape(text)}. <a href=\"{INSTALL_PATH}\">Start the installation again</a>."


class _Installer:
    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        self.settings: Settings = herald.settings

    # ---- helpers ----------------------------------------------------------------------------

    @property
    def _secret(self) -> str:
        assert self.settings.secret_key is not None  # required by the settings with a client secret
        return self.settings.secret_key.get_secret_value()

    def _base_url(self, request: web.Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url
        return f"{request.scheme}://{request.host}"

    def _cookie(self, request: web.Request) -> tuple[str, str, bool]:
        """(name, path, secure) of the state cookie."""
        secure = self._base_url(request).startswith("https://")
        return ("__Host-herald_slack_install", "/", True) if secure else ("herald_slack_install", "/slack/", False)

    def _not_configured(self) -> web.Response:
        return web.Response(status=404, text=NOT_CONFIGURED + "\n", headers={"Cache-Control": "no-store"})

    # ---- GET /slack/install -----------------------------------------------------------------

    async def install(self, request: web.Request) -> web.Response:
        if not self.settings.slack_oauth_enabled:
            return self._not_configured()
        nonce = secrets.token_urlsafe(24)
        expires = int((self.herald.clock.now() + STATE_TTL).timestamp())
        query = urlencode({
            "client_id": self.settings.slack_client_id,
            "scope": ",".join(BOT_SCOPES),
            "state": make_state(self._secret, nonce, expires),
            "redirect_uri": self._base_url(request) + REDIRECT_PATH,
        })
        location = f"{self.settings.slack_oauth_base_url}/oauth/v2/authorize?{query}"
        response = web.Response(status=302, headers={**_SECURITY_HEADERS, "Location": location})
        name, path, secure = self._cookie(request)
        response.set_cookie(name, nonce, max_age=int(STATE_TTL.total_seconds()), path=path, secure=secure,
                            httponly=True, samesite="Lax")
        return response

    # ---- GET /slack/oauth_redirect ----------------------------------------------------------

    async def redirect(self, request: web.Request) -> web.Response:
        if not self.settings.slack_oauth_enabled:
            return self._not_configured()
        response = await self._complete(request)
        name, path, secure = self._cookie(request)
        # the state is single-use: whatever happened, this browser must start again
        response.del_cookie(name, path=path, secure=secure, httponly=True, samesite="Lax")
        return response

    async def _complete(self, request: web.Request) -> web.Response:
        query = request.query
        now = self.herald.clock.now()
        if query.get("error"):
            return _page(400, "Installation cancelled",
                         _start_again(f"Slack did not install Herald ({query['error']})"))
        name, _, _ = self._cookie(request)
        try:
            nonce, expires = check_state(self._secret, query.get("state", ""), request.cookies.get(name), now,
                                         self.settings.previous_secret_keys)
        except StateError as exc:
            log.warning("Slack install refused: %s", exc)
            return _page(400, "Installation link not valid", _start_again(str(exc).capitalize()))
        code = query.get("code", "")
        if not code:
            return _page(400, "Installation link not valid", _start_again("Slack sent no authorisation code"))
        issued_at = datetime.fromtimestamp(expires, now.tzinfo) - STATE_TTL
        if await install_used(install_id(nonce), since=issued_at):
            log.warning("Slack install refused: the state was already used")
            return _page(400, "Installation link already used",
                         _start_again("This install link was already used"))

        try:
            answer = await self._exchange(code, self._base_url(request) + REDIRECT_PATH)
        except _Refused as exc:
            return _page(502, "Slack refused the installation", _start_again(str(exc)))

        install = _Installation.of(answer)
        token, bot_user_id = str(answer.get("access_token") or ""), str(answer.get("bot_user_id") or "")
        if not install.external_id:
            return _page(502, "Slack refused the installation", _start_again("Slack's answer named no workspace"))
        # xoxe.xoxb-: an expiring bot token (token rotation), which comes with a refresh token
        if answer.get("token_type", "bot") != "bot" or not token.startswith(("xoxb-", "xoxe.xoxb-")):
            log.warning("oauth.v2.access for %s returned no bot token", install.external_id)
            return _page(502, "Slack refused the installation", _start_again("Slack's answer had no bot token"))
        installer = str((answer.get("authed_user") or {}).get("id") or "")
        actor = f"slack:{install.external_id}/{installer}" if installer else f"slack:{install.external_id}"
        try:
            installed = await install_slack_workspace(
                install.external_id, token, name=install.name, bot_user_id=bot_user_id, now=now, actor=actor,
                cipher=self.herald.slack_workspaces.cipher
                or cipher_for(self.settings.secret_key, self.settings.previous_secret_keys),
                install_id=install_id(nonce), issued_at=issued_at, enterprise_install=install.org_wide,
                scopes=str(answer.get("scope") or ""), app_id=str(answer.get("app_id") or ""),
                refresh_token=str(answer.get("refresh_token") or ""),
                expires_at=now + timedelta(seconds=int(answer["expires_in"])) if answer.get("expires_in") else None)
        except InstallReused as exc:
            return _page(400, "Installation link already used", _start_again(str(exc)))
        except UserError as exc:
            return _page(502, "Slack refused the installation", _start_again(str(exc)))
        self.herald.slack_workspaces.forget(install.external_id)
        if installed.reconnected:  # the copies that failed because Herald was removed are pending again
            self.herald.outbox.wake()
        created = installed.created
        if install.org_wide:
            await learn_org_teams(self.herald, install.external_id, token, actor=actor)
        log.info("Slack %s %s (%s) %s", "organisation" if install.org_wide else "workspace", install.external_id,
                 install.name, "installed" if created else "reinstalled")
        return _page(200, "Herald is installed", _installed_text(install, str(answer.get("app_id") or "")))

    async def _exchange(self, code: str, redirect_uri: str) -> dict:
        assert self.settings.slack_client_secret is not None and self.settings.slack_client_id
        client = AsyncWebClient(base_url=self.settings.slack_api_url, timeout=20)
        started = time.monotonic()
        try:
            response = await client.oauth_v2_access(
                client_id=self.settings.slack_client_id,
                client_secret=self.settings.slack_client_secret.get_secret_value(),
                code=code, redirect_uri=redirect_uri)
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            log.warning("oauth.v2.access refused (%s, HTTP %s)", error or "no error code",
                        exc.response.status_code if exc.response is not None else "?")
            raise _Refused(f"Slack did not accept the authorisation code ({error or 'unknown error'})") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("oauth.v2.access failed after %.1fs: %s", time.monotonic() - started, type(exc).__name__)
            raise _Refused(f"Herald could not reach Slack ({type(exc).__name__})") from None
        return dict(response.data) if isinstance(response.data, dict) else {}


class _Refused(Exception):
    pass


async def learn_org_teams(herald: Herald, enterprise_id: str, token: str, *, actor: str) -> list[str]:
    """The workspaces of the org its org-wide install may act in, from auth.teams.list (Slack's
    "full list of workspaces your org-wide app has been approved for"; Tier 2, pages of up to
    1000), stored (bot.core.directory.slack_orgs). Usually none right after the install (the Org
    Admin adds the workspaces next: team_access_granted); some on a reinstall. The install is
    stored already: a failure here is logged, and the events keep the list up to date."""
    client = herald.slack_workspaces.client(token)
    teams: list[tuple[str, str]] = []
    cursor = ""
    try:
        while True:
            page = await client.auth_teams_list(limit=1000, **({"cursor": cursor} if cursor else {}))
            teams += [(str(t.get("id") or ""), str(t.get("name") or "")) for t in page.get("teams") or []]
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
    except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("Slack organisation %s: auth.teams.list failed (%s); its workspaces are learnt from "
                    "team_access_granted events", enterprise_id, exc)
        return []
    added = await grant_teams(enterprise_id, teams, now=herald.clock.now(), actor=actor)
    for team_id in added:
        herald.slack_workspaces.forget(team_id)
    return added


@dataclass(frozen=True)
class _Installation:
    """What an oauth.v2.access answer installed: one workspace (`team`), or, when an Org Admin
    installed Herald across an Enterprise Grid organisation (`is_enterprise_install: true`,
    `"team": null`), the whole org, keyed by its enterprise id (E...): Slack's "Using APIs with
    organization-wide apps"; one bot token then serves every workspace of the org."""

    external_id: str
    name: str
    org_wide: bool

    @classmethod
    def of(cls, answer: dict) -> _Installation:
        if answer.get("is_enterprise_install"):
            org = answer.get("enterprise") or {}
            return cls(str(org.get("id") or ""), str(org.get("name") or "")[:200], True)
        team = answer.get("team") or {}
        return cls(str(team.get("id") or ""), str(team.get("name") or "")[:200], False)


def _installed_text(install: _Installation, app_id: str) -> str:
    label = html.escape(install.name or install.external_id)
    if not install.org_wide:
        return (f"Herald is now connected to the Slack workspace <strong>{label}</strong>. "
                "You can close this page; notices will reach its members as direct messages.")
    # Slack adds an org-wide app to no workspace by itself: an Org Admin chooses them (its docs
    # suggest sending the installer to this page)
    add = (f"https://app.slack.com/manage/{quote(install.external_id)}/integrations/profile/{quote(app_id)}"
           "/workspaces/add")
    return (f"Herald is now installed across the Enterprise Grid organisation <strong>{label}</strong>. "
            f"As an Org Admin, <a href=\"{html.escape(add)}\">add it to the organisation's workspaces</a> whose "
            "members should receive notices; in the partner directory, their slack_team_id is the organisation's "
            f"id, <code>{html.escape(install.external_id)}</code>.")


def add_slack_oauth_routes(app: web.Application, herald: Herald) -> None:
    """The install routes; also gives the Slack token store the cipher for HERALD_SECRET_KEY."""
    settings = herald.settings
    cipher = cipher_for(settings.secret_key, settings.previous_secret_keys)
    herald.slack_workspaces.cipher = cipher
    warn_if_plaintext(cipher)
    if settings.slack_oauth_enabled and not settings.public_url:
        log.warning("HERALD_PUBLIC_URL is not set: the Slack OAuth redirect URL is taken from each request's "
                    "host; set it to the URL Slack knows (e.g. https://herald.example.com)")
    installer = _Installer(herald)
    app.router.add_get(INSTALL_PATH, installer.install)
    app.router.add_get(REDIRECT_PATH, installer.redirect)
