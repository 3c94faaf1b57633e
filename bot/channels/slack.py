"""Outbound Slack: open DMs, post notices, update them in place. Web API calls go to
`HERALD_SLACK_API_URL` (a local fake in tests)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.channels.slack_blocks import (
    direct_message_blocks,
    escape,
    notice_blocks,
    notice_fallback_text,
)
from bot.channels.slack_tokens import TokenRefreshFailed, TokenRotator
from bot.common.secrets import (
    TokenCipher,
    TokenDecryptError,
    environment_cipher,
    is_sealed,
    token_fingerprint,
)
from bot.core.directory.slack_orgs import org_install_of
from bot.core.directory.workspaces import removed_reason
from bot.core.notices.views import NoticeView
from bot.core.ports import DirectMessage, MessageRef, Outcome, RateLimited, Recipient, UpdateRefused
from storage.models import Platform, Workspace

log = logging.getLogger(__name__)
_json_string = json.encoder.encode_basestring_ascii  # a str as json.dumps writes it (ensure_ascii)

METADATA_EVENT = "herald_notice"
_TOKEN_TTL_SECONDS = 30.0
_RENDERED_VIEWS = 256  # notice renderings kept: a broadcast sends the same few views to everyone
_TIMEOUT = aiohttp.ClientTimeout(total=20)
# The look for a copy in doubt (_find_earlier_send) reads the DM's history from this long before
# the first attempt began (Herald's clock and Slack's may differ a little), a page at a time.
# Slack caps a page at 15 messages for an app distributed outside the Marketplace (its `limit` is
# then ignored above 15: docs/platform-limits.md); 200 is what Slack suggests as a page otherwise.
_LOOK_BACK_MARGIN_SECONDS = 60.0
_HISTORY_PAGE = 200

# Answers that mean Herald's token is dead for the whole workspace: the app was removed (Slack's
# error reference: `account_inactive` is what a bot token of a deleted workspace or removed app
# gets; `token_revoked`), or `invalid_auth` (also a token that was never right: another
# workspace's, mistyped, or refused by an IP allow-list). The workspace is deactivated as on the
# uninstall event, so no further request is made with that token.
_REMOVED_ERRORS = frozenset({"account_inactive", "token_revoked", "invalid_auth"})

_PERMANENT_ERRORS = {
    "user_not_found": "Slack user {user} does not exist in workspace {team} (check the directory)",
    "user_disabled": "the member's Slack account {user} is deactivated",
    "account_inactive": "Herald's Slack token for workspace {team} is inactive; reconnect the workspace",
    "invalid_auth": "Herald's Slack token for workspace {team} is invalid; reconnect the workspace",
    "not_authed": "Herald has no Slack token for workspace {team}",
    "token_revoked": "Herald was removed from Slack workspace {team}; reconnect the workspace",
    "cannot_dm_bot": "Slack user {user} is a bot and cannot receive direct messages",
    "channel_not_found": "the direct-message channel for {user} no longer exists",
    "is_archived": "the direct-message channel for {user} is archived",
    "missing_scope": "Herald's Slack app lacks a permission (scope) in workspace {team}; reinstall it",
}


class SlackWorkspaces:
    """Bot tokens per Slack workspace, read from the database (and decrypted); the env token is
    the fallback for a single-workspace install.

    An org-wide install of an Enterprise Grid organisation is one row under the org's enterprise
    id (E...), and the directory files the org's members under that id, so their deliveries share
    one lane and one rate-limit budget. A workspace of the org (T...) the org-wide install was
    granted, with no installation of its own, is served with the org's token (`_installation`). Slack's rate-limit page (docs.slack.dev/apis/web-api/rate-limits:
    limits apply "per API method per app per workspace") and its page on organization-wide apps
    (api.slack.com/enterprise/apps/changes-apis) do not say how an org token's calls are counted
    across the org's workspaces; one budget for the whole org is the reading that cannot exceed them."""

    def __init__(self, api_url: str, default_token: str | None = None, cipher: TokenCipher | None = None,
                 rotator: TokenRotator | None = None) -> None:
        self.api_url = api_url
        self.default_token = default_token
        # Renews expiring tokens (Slack token rotation); None when "Add to Slack" is not configured.
        self.rotator = rotator
        # Opens sealed tokens; None = HERALD_SECRET_KEY from the environment. The server sets it
        # from its settings (bot.handlers.slack.oauth.add_slack_oauth_routes).
        self.cipher = cipher
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._loading: dict[str, asyncio.Future[str | None]] = {}
        self._refreshing: set[asyncio.Future] = set()  # refreshes started by token_now
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, AsyncWebClient] = {}
        # Fingerprints of tokens Slack refused for good (`refused`): not used again by this process,
        # even before the workspace's deactivation is stored or while the env token is the revoked one.
        self._refused: set[str] = set()

    async def token_for(self, team_id: str) -> str | None:
        """The workspace's bot token; None when Herald is not installed there (or was removed, or
        the stored token cannot be read: `missing_reason`). Raises `TokenRefreshFailed` when its
        rotating token expired and Slack did not renew it."""
        cached = self._cache.get(team_id)
        if cached and time.monotonic() - cached[0] < _TOKEN_TTL_SECONDS:
            return cached[1]
        # One read per workspace at a time: a broadcast's first sends all ask at once.
        loading = self._loading.get(team_id)
        if loading is None:
            loading = self._loading[team_id] = asyncio.ensure_future(self._load_token(team_id))
            loading.add_done_callback(lambda _: self._loading.pop(team_id, None))
        return await asyncio.shield(loading)

    async def token_now(self, team_id: str) -> str | None:
        """A token to answer a request with now (Slack waits 3 s for the acknowledgement): while
        the workspace's expiring token is still valid, that token, its refresh (when due) going on
        in the background instead of before the answer. Otherwise as ``token_for``, but None
        when the expired token could not be renewed (the request cannot wait for a retry)."""
        try:
            return await self._token_now(team_id)
        except TokenRefreshFailed as exc:
            log.warning("cannot answer a request from Slack: %s", exc)
            return None

    async def _token_now(self, team_id: str) -> str | None:
        cached = self._cache.get(team_id)
        if (cached and time.monotonic() - cached[0] < _TOKEN_TTL_SECONDS) or self.rotator is None:
            return await self.token_for(team_id)
        workspace = await _installation(team_id)
        now = self.rotator.clock.now()
        if (workspace is None or not workspace.active or workspace.token_expires_at is None
                or workspace.token_expires_at <= now or not self.rotator.due(workspace, now)):
            return await self.token_for(team_id)
        refresh = asyncio.ensure_future(self.token_for(team_id))  # one refresh, however many ask
        self._refreshing.add(refresh)
        refresh.add_done_callback(self._refreshed)
        return self._usable(self._open(workspace))

    def _refreshed(self, refresh: asyncio.Future) -> None:
        self._refreshing.discard(refresh)
        if not refresh.cancelled() and refresh.exception() is not None:
            log.warning("could not refresh a Slack token in the background: %s", refresh.exception())

    async def _load_token(self, team_id: str) -> str | None:
        workspace = await _installation(team_id)
        if workspace is not None and workspace.active and self.rotator is not None and workspace.token_expires_at:
            token = await self._rotating(workspace)
            if workspace.external_id != team_id and token and not self.rotator.due(workspace, self.rotator.clock.now()):
                self._cache[team_id] = (time.monotonic(), token)  # a workspace of the org: cached as the org's
            return token
        if workspace is not None:
            token = self._open(workspace) if workspace.active else None
        else:
            token = self.default_token
        token = self._usable(token)
        self._cache[team_id] = (time.monotonic(), token)
        return token

    def _usable(self, token: str | None) -> str | None:
        return None if token and token_fingerprint(token) in self._refused else token

    def refused(self, team_id: str, token: str) -> None:
        """Slack refused `token` for good (the app was removed): never use it again."""
        self._refused.add(token_fingerprint(token))
        self.forget(team_id)

    async def missing_reason(self, team_id: str) -> str:
        """Why there is no token for the workspace, for the copy that cannot go out."""
        workspace = await _installation(team_id)
        if workspace is not None and not workspace.active:  # removed (a workspace of an org: the org's install)
            return removed_reason(Platform.SLACK.value, workspace.external_id)
        if workspace is None and self.default_token:
            return removed_reason(Platform.SLACK.value, team_id)  # the env token was refused
        return f"Herald is not installed in Slack workspace {team_id}"

    async def _rotating(self, workspace: Workspace, *, expired: bool = False) -> str | None:
        """An expiring token, refreshed when due; cached only until it is due again."""
        assert self.rotator is not None
        try:
            token = await self.rotator.fresh_token(workspace.external_id, self.cipher or environment_cipher(),
                                                   expired=expired)
        except TokenDecryptError as exc:
            log.error("Slack workspace %s: %s", workspace.external_id, exc)
            return None
        if token and not expired and not self.rotator.due(workspace, self.rotator.clock.now()):
            self._cache[workspace.external_id] = (time.monotonic(), token)
        return token

    async def token_expired(self, team_id: str) -> None:
        """Slack answered `token_expired`: refresh now (before the retry), whatever the clock says.
        Raises `TokenRefreshFailed` as `token_for` does."""
        self.forget(team_id)
        workspace = await _installation(team_id)
        if workspace is not None and workspace.active and self.rotator is not None and workspace.refresh_token:
            self.forget(workspace.external_id)
            await self._rotating(workspace, expired=True)

    def _open(self, workspace: Workspace) -> str | None:
        if not is_sealed(workspace.bot_token):
            return workspace.bot_token or None  # stored before encryption, or without HERALD_SECRET_KEY
        try:
            return (self.cipher or environment_cipher()).open(workspace.bot_token) or None
        except TokenDecryptError as exc:
            log.error("Slack workspace %s: %s", workspace.external_id, exc)
            return None

    def forget(self, team_id: str) -> None:
        self._cache.pop(team_id, None)

    async def client_for(self, team_id: str) -> AsyncWebClient | None:
        token = await self.token_for(team_id)
        return self.client(token) if token else None

    def client(self, token: str) -> AsyncWebClient:
        client = self._clients.get(token)
        if client is None:
            client = AsyncWebClient(token=token, base_url=self.api_url, session=self.session(), timeout=20,
                                    logger=_sdk_logger())
            self._clients[token] = client
        return client

    def session(self) -> aiohttp.ClientSession:
        """The one HTTP session (connection pool) of every call to Slack."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        return self._session

    async def post_json(self, token: str, method: str, body: bytes) -> dict[str, Any]:
        """A Web API call with a JSON body made ready by the caller, for the two calls every
        broadcast makes once per member (chat.postMessage, chat.update). slack_sdk's
        AsyncWebClient spends as much CPU around a call as the HTTP request itself (URL joining,
        walking the arguments for block objects, re-encoding the blocks, building the response;
        bench/fanout.py), and the blocks of a broadcast are the same for everyone, so they are
        encoded once (SlackChannel._render). Same request and answer as the SDK's: errors raise
        its SlackApiError with its response object (`ok: false`, any status but 200); a success
        is the answer's JSON object."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"}
        url = f"{self.api_url}{method}"
        async with self.session().post(url, data=body, headers=headers, timeout=_TIMEOUT) as http:
            raw = await http.read()
            status, answer_headers = http.status, http.headers
        try:
            data: Any = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Slack %s: HTTP %s, %s", method, status, "ok" if data.get("ok") else data.get("error"))
        if status == 200 and data.get("ok"):
            return data
        response = AsyncSlackResponse(client=None, http_verb="POST", api_url=url, req_args={}, data=data,
                                      headers=answer_headers, status_code=status)
        raise SlackApiError(f"The request to the Slack API failed. (url: {url}, status: {status})", response)

    async def close(self) -> None:
        if self._refreshing:  # a refresh cut short could leave the workspace with a used refresh token
            await asyncio.wait(self._refreshing, timeout=10)
        if self._session is not None:
            await self._session.close()
        self._clients.clear()


async def _installation(team_id: str) -> Workspace | None:
    """The installation serving Slack workspace `team_id`: its own row, else, for a workspace of an
    Enterprise Grid org that the org-wide install was granted (bot.core.directory.slack_orgs), the
    org's row (E...), whose token reaches every workspace of the org."""
    workspace = await Workspace.get_or_none(platform=Platform.SLACK.value, external_id=team_id)
    if workspace is None and (org := await org_install_of(team_id)) is not None:
        workspace = await Workspace.get_or_none(platform=Platform.SLACK.value, external_id=org)
    return workspace


@dataclass
class _Look:
    """A look for a copy in doubt: the ts of the oldest message read so far (where it began: the
    copy's stored resume point, or "" for the newest message)."""

    read_to: str


class SlackChannel:
    platform = Platform.SLACK.value

    def __init__(self, workspaces: SlackWorkspaces) -> None:
        self.workspaces = workspaces
        self._rendered: dict[NoticeView, bytes] = {}

    def _render(self, view: NoticeView) -> bytes:
        """The message's fallback text and blocks as the JSON body's `"text":...,"blocks":...`
        members, drawn and encoded once per distinct view (the view holds everything they show;
        the per-recipient delivery id goes in the metadata)."""
        rendered = self._rendered.get(view)
        if rendered is None:
            if len(self._rendered) >= _RENDERED_VIEWS:
                del self._rendered[next(iter(self._rendered))]
            rendered = self._rendered[view] = _json_members(text=notice_fallback_text(view),
                                                            blocks=notice_blocks(view))
        return rendered

    async def deliver(self, recipient: Recipient, view: NoticeView, *, delivery_id: int,
                      maybe_sent: bool, wanted: bool = True, since: datetime | None = None,
                      read_to: str = "") -> Outcome:
        try:
            token = await self.workspaces.token_for(recipient.workspace_id)
        except TokenRefreshFailed as exc:
            return _refresh_failed(exc, recipient.workspace_id)
        if not token:
            return Outcome.failed(await self.workspaces.missing_reason(recipient.workspace_id))
        opened, checking, look = "", maybe_sent, _Look(read_to)
        try:
            # No conversations.open on the hot path (Tier 3, ~50 a minute per workspace): a bot
            # token may post to a user id, which lands in the app's DM with that user; the answer's
            # `channel` is that DM's D... id, cached by the engine (PlatformAccount.dm_channel).
            # Slack's chat.postMessage reference (https://docs.slack.dev/reference/methods/chat.postMessage/,
            # on the `channel` argument and direct messages): "provide the user's ID as the channel
            # value and a direct message conversation will be opened if it isn't open already".
            channel = recipient.dm_channel or recipient.user_id
            if maybe_sent:
                client = self.workspaces.client(token)
                if not recipient.dm_channel:  # in doubt and no DM known: its history needs the D... id
                    response = await client.conversations_open(users=recipient.user_id)
                    channel = opened = response["channel"]["id"]
                earlier = await self._find_earlier_send(client, channel, delivery_id, since, look)
                if earlier is not None:
                    return Outcome.delivered(earlier, dm_channel=opened)
                if not wanted:
                    return Outcome.not_posted(dm_channel=opened)
            checking = False
            thread = {}
            if view.original_ref and view.original_ref[0] == channel and view.original_ref[1]:
                # a reminder is a reply to the original, also shown in the DM: it links back to it
                thread = {"thread_ts": view.original_ref[1], "reply_broadcast": True}
            body = _json_body(self._render(view), channel=channel, unfurl_links=False, unfurl_media=False,
                              tail=_metadata(view.notice_id, delivery_id), **thread)
            response = await self.workspaces.post_json(token, "chat.postMessage", body)
            dm_channel = "" if recipient.dm_channel else str(response["channel"])
            return Outcome.delivered(MessageRef(response["channel"], response["ts"]), dm_channel=dm_channel)
        except SlackApiError as exc:
            if exc.response is not None and exc.response.get("error") == "token_expired":
                try:
                    await self.workspaces.token_expired(recipient.workspace_id)
                except TokenRefreshFailed as failed:
                    return _refresh_failed(failed, recipient.workspace_id, dm_channel=opened)
            outcome = _classify(exc, recipient, opened, to_user=not recipient.dm_channel, token=token)
            if outcome.removed_cause:
                self.workspaces.refused(recipient.workspace_id, token)
            if checking and outcome.throttled:
                # The check's own method limit (conversations.history: 1 a minute for an app
                # distributed outside the Marketplace), not chat.postMessage's: this row waits, still
                # in doubt, and the workspace's other sends go on; the next look, in any process,
                # goes on from where this one stopped (the engine stores it with the copy).
                return Outcome.deferred(outcome.retry_after or 60.0, in_doubt=True,
                                        read_to=look.read_to if look.read_to != read_to else "")
            return outcome
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # Only a connection never made proves the message was not posted; after a timeout or a
            # dropped connection Slack may have posted it, and the retry looks before posting again.
            return Outcome.retry(f"network error talking to Slack ({type(exc).__name__})", dm_channel=opened,
                                 in_doubt=not isinstance(exc, aiohttp.ClientConnectorError))

    async def _find_earlier_send(self, client: AsyncWebClient, channel: str, delivery_id: int,
                                 since: datetime | None, look: _Look) -> MessageRef | None:
        """Look for a message an interrupted earlier attempt posted (by its metadata): the DM's
        history back to just before `since` (when the first attempt that may have posted it began;
        None: unknown, the whole history), page by page. Outside the Marketplace a page holds 15
        messages and Slack answers 1 request a minute, and the look can come long after the
        attempt: the DM may have had many messages since. A page refused for the rate limit raises
        (the row waits, still in doubt, deliver()), `look.read_to` saying where the next look goes
        on: the last message read, not the newest again (every message newer than that one was
        read, and the earlier copy was posted before the first look began). The look starts where
        `look.read_to` says (the copy's stored resume point), else from the newest message."""
        oldest = f"{since.timestamp() - _LOOK_BACK_MARGIN_SECONDS:.6f}" if since is not None else ""
        bounds = {name: value for name, value in (("oldest", oldest), ("latest", look.read_to)) if value}
        cursor = ""
        while True:
            response = await client.conversations_history(channel=channel, limit=_HISTORY_PAGE,
                                                          include_all_metadata=True, **bounds,
                                                          **({"cursor": cursor} if cursor else {}))
            messages = response.get("messages") or []
            for message in messages:  # newest first
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("delivery_id") == delivery_id:
                    return MessageRef(channel, message["ts"])
            if messages:
                look.read_to = str(messages[-1]["ts"])
            cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
            if not response.get("has_more") or not cursor:
                return None

    async def send_message(self, recipient: Recipient, message: DirectMessage) -> Outcome:
        try:
            token = await self.workspaces.token_for(recipient.workspace_id)
        except TokenRefreshFailed as exc:
            return _refresh_failed(exc, recipient.workspace_id)
        if not token:
            return Outcome.failed(await self.workspaces.missing_reason(recipient.workspace_id))
        try:
            channel = recipient.dm_channel or recipient.user_id  # posting to a user id: see deliver()
            thread = {"thread_ts": recipient.thread_id} if recipient.thread_id else {}
            response = await self.workspaces.client(token).chat_postMessage(
                channel=channel, text=escape(message.title), blocks=direct_message_blocks(message), unfurl_links=False,
                **thread)
            dm_channel = "" if recipient.dm_channel else str(response["channel"])
            return Outcome.delivered(MessageRef(response["channel"], response["ts"]), dm_channel=dm_channel)
        except SlackApiError as exc:
            outcome = _classify(exc, recipient, "", to_user=not recipient.dm_channel, token=token)
            if outcome.removed_cause:
                self.workspaces.refused(recipient.workspace_id, token)
            return outcome
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return Outcome.retry(f"network error talking to Slack ({type(exc).__name__})")

    async def update(self, workspace_id: str, ref: MessageRef, view: NoticeView) -> None:
        try:
            token = await self.workspaces.token_for(workspace_id)
        except TokenRefreshFailed as exc:
            if exc.refused:  # as a refused chat.update: the engine deactivates the workspace
                raise UpdateRefused(removed_reason(Platform.SLACK.value, workspace_id, exc.error),
                                    removed_cause=exc.error, token_fingerprint=exc.fingerprint) from exc
            raise  # a passing failure: the engine tries the update again, as after a 5xx
        if not token:  # removed (its updates are flagged again when it is reconnected), or never connected
            raise UpdateRefused(await self.workspaces.missing_reason(workspace_id))
        try:
            body = _json_body(self._render(view), channel=ref.channel_id, ts=ref.message_id)
            await self.workspaces.post_json(token, "chat.update", body)
        except SlackApiError as exc:
            if exc.response is not None and (exc.response.status_code == 429
                                             or exc.response.get("error") in _RATE_LIMITED):
                # chat.update's own limit (Tier 3): Slack's limits are per method per workspace, so the
                # workspace's new messages (chat.postMessage) go on meanwhile.
                raise RateLimited(float(exc.response.headers.get("Retry-After", 1) or 1), "Slack rate limit",
                                  method_only=True) from exc
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            if error in _REMOVED_ERRORS:  # as a refused chat.postMessage: the engine deactivates the workspace
                self.workspaces.refused(workspace_id, token)
                raise UpdateRefused(removed_reason(Platform.SLACK.value, workspace_id, error), removed_cause=error,
                                    token_fingerprint=token_fingerprint(token)) from exc
            if error in _UPDATE_REFUSED:
                raise UpdateRefused(f"Slack refused the update ({error})") from exc
            raise

    async def close(self) -> None:
        await self.workspaces.close()


def _json_members(**members: Any) -> bytes:
    """`"a":1,"b":2`: members of a JSON object, to be joined into one by _json_body; the bytes
    `json.dumps(members, separators=(",", ":"))` gives, less its braces. A string or a bool (every
    member a send adds to the cached rendering: channel, ts, unfurl flags) is encoded directly:
    json.dumps builds an encoder for every call, a few percent of a broadcast's CPU per copy."""
    parts = []
    for name, value in members.items():
        kind = type(value)
        if kind is str:
            encoded = _json_string(value)
        elif kind is bool:
            encoded = "true" if value else "false"
        else:
            encoded = json.dumps(value, separators=(",", ":"))
        parts.append(f"{_json_string(name)}:{encoded}")
    return ",".join(parts).encode()


def _json_body(rendered: bytes, tail: bytes = b"", **members: Any) -> bytes:
    """One JSON object: these members, then the already-encoded ones (`rendered`, then `tail`)."""
    return b"{" + _json_members(**members) + b"," + rendered + tail + b"}"


def _metadata(notice_id: int, delivery_id: int) -> bytes:
    """`,"metadata":{...}`, the message metadata that finds an interrupted send again
    (SlackChannel._find_earlier_send), for _json_body's `tail`."""
    return b',"metadata":{"event_type":"%s","event_payload":{"notice_id":%d,"delivery_id":%d}}' % (
        METADATA_EVENT.encode(), int(notice_id), int(delivery_id))


def _sdk_logger() -> logging.Logger:
    """slack_sdk formats a debug line with the whole request body for every call unless its
    logger's own level (not the inherited one) is above DEBUG; give it the level that applies."""
    logger = logging.getLogger("slack_sdk.web.async_client.herald")
    logger.setLevel(logging.NOTSET)
    logger.setLevel(logger.getEffectiveLevel())  # what "slack_sdk" is configured to, as of now
    return logger


# Slack's two spellings: "ratelimited" with a 429, and chat.postMessage's documented "rate_limited"
# ("Application has posted too many messages"), whatever status it comes with.
_RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})


def rate_limit_wait(exc: SlackApiError) -> float | None:
    """The seconds Slack asked to wait (its Retry-After, 1 when missing) if `exc` is a rate limit,
    else None."""
    response = exc.response
    if response is None or (response.status_code != 429 and response.get("error") not in _RATE_LIMITED):
        return None
    return float(response.headers.get("Retry-After", 1) or 1)

# chat.update's errors that no retry changes (its reference's error list): the message or the
# conversation is gone, or the message cannot take the update. (The app removed from the workspace,
# _REMOVED_ERRORS, is refused for good too, and deactivates the workspace.)
_UPDATE_REFUSED = frozenset({"message_not_found", "channel_not_found", "cant_update_message", "edit_window_closed",
                             "is_archived", "not_in_channel", "no_permission", "msg_too_long", "invalid_blocks",
                             "restricted_action"})


def _refresh_failed(exc: TokenRefreshFailed, workspace_id: str, dm_channel: str = "") -> Outcome:
    """A send whose workspace's expired token Slack did not renew: when Slack refused the refresh
    token, Herald was removed (the engine deactivates the workspace and a reconnection sends the
    copy); otherwise tried again later, as after a 5xx."""
    if exc.refused:
        return Outcome.removed(exc.error, removed_reason(Platform.SLACK.value, workspace_id, exc.error),
                               token_fingerprint=exc.fingerprint, dm_channel=dm_channel)
    return Outcome.retry(str(exc), dm_channel=dm_channel)


def _classify(exc: SlackApiError, recipient: Recipient, opened: str, *, to_user: bool = False,
              token: str = "") -> Outcome:
    status = exc.response.status_code
    error = str(exc.response.get("error", "")) if exc.response is not None else ""
    if to_user and error == "channel_not_found":  # posted to a user id Slack will not DM
        error = "user_not_found"
    if error in _REMOVED_ERRORS and token:
        return Outcome.removed(error, removed_reason(Platform.SLACK.value, recipient.workspace_id, error),
                               token_fingerprint=token_fingerprint(token), dm_channel=opened)
    if status == 429 or error in _RATE_LIMITED:
        retry_after = float(exc.response.headers.get("Retry-After", 1) or 1)
        return Outcome.retry("Slack rate limit", retry_after=retry_after, throttled=True, dm_channel=opened)
    if status >= 500 or error in ("internal_error", "fatal_error", "service_unavailable", "request_timeout",
                                  "token_expired"):  # an expired rotating token is refreshed before the retry
        # 504: a gateway stopped waiting for Slack, which may still have posted the message; the
        # retry looks first. A fast error is taken as not posted: Slack's reference allows that
        # internal_error comes after "some aspect of the operation succeeded", but looking after
        # each one (conversations.history, 1 a minute outside the Marketplace) would hold a
        # broadcast up for hours through an incident.
        return Outcome.retry(f"Slack answered HTTP {status} {error}".strip(), dm_channel=opened,
                             in_doubt=status == 504)
    template = _PERMANENT_ERRORS.get(error, "Slack refused the message ({error})")
    return Outcome.failed(template.format(user=recipient.user_id, team=recipient.workspace_id, error=error),
                          dm_channel=opened)
