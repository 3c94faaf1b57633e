"""Slack token rotation: expiring bot tokens (12 hours) renewed with their refresh token.

A workspace installed with token rotation on has `token_expires_at` and a sealed `refresh_token`.
When its token is needed and it expires within `REFRESH_MARGIN` (or Slack said `token_expired`),
one replica refreshes it (`oauth.v2.access` with `grant_type=refresh_token`) and stores the new
pair, sealed, with the `workspace.token_refreshed` audit event. Slack revokes a refresh token once
it is used, so two replicas refreshing at once would leave one holding a dead token: the refresher
first takes a lease on the row (a conditional UPDATE, atomic on SQLite and PostgreSQL); the others
keep using the current token while it is valid, or wait for the new one.

When an expired token cannot be renewed, `fresh_token` raises `TokenRefreshFailed`: `refused`
when Slack refused the refresh token itself (the app was removed, or the token revoked: only a
reconnection helps, and the caller treats the workspace as removed), else a passing failure (a
5xx, a rate limit, the network) that the caller retries.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.common import metrics
from bot.common.clock import Clock
from bot.common.secrets import TokenCipher, token_fingerprint
from bot.core.compliance.audit import audit_event, record
from storage.models import Platform, Workspace

log = logging.getLogger(__name__)

# oauth.v2.access answers that mean the workspace's refresh token is dead for good (the app was
# uninstalled or the token revoked): only reconnecting the workspace helps.
_REFRESH_REFUSED = frozenset({"invalid_refresh_token", "invalid_grant", "token_revoked"})
# Answers that mean Herald's own client credentials are wrong: every workspace's refresh fails
# until the operator corrects them, so no workspace is taken for removed.
_CLIENT_REFUSED = frozenset({"invalid_client_id", "bad_client_secret"})

REFRESH_MARGIN = timedelta(minutes=15)
LEASE = timedelta(seconds=60)
WAIT_STEP = 0.2  # seconds between looks while another replica refreshes


class TokenRotator:
    def __init__(self, api_url: str, client_id: str, client_secret: str, *, clock: Clock,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.api_url = api_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.clock = clock
        self.sleep = sleep
        self.owner = uuid.uuid4().hex
        self._locks: dict[str, asyncio.Lock] = {}

    @staticmethod
    def due(workspace: Workspace, now: datetime, *, expired: bool = False) -> bool:
        if workspace.token_expires_at is None or not workspace.refresh_token:
            return False
        return expired or workspace.token_expires_at - now <= REFRESH_MARGIN

    async def fresh_token(self, team_id: str, cipher: TokenCipher, *, expired: bool = False) -> str | None:
        """The workspace's bot token, refreshed first when it is due. None when the workspace is
        not installed (or removed). Raises `TokenRefreshFailed` when the token could not be
        renewed and the current one cannot serve (expired, or its refresh token refused)."""
        async with self._locks.setdefault(team_id, asyncio.Lock()):  # one refresh per process
            workspace = await _workspace(team_id)
            if workspace is None or not workspace.active:
                return None
            now = self.clock.now()
            if not self.due(workspace, now, expired=expired):
                return cipher.open(workspace.bot_token) or None
            if await self._claim(workspace.id, now):
                return await self._refresh(workspace, cipher, now)
            return await self._wait_for_other(workspace, cipher, expired)

    async def _claim(self, workspace_id: int, now: datetime) -> bool:
        free = Q(refresh_claimed_until__isnull=True) | Q(refresh_claimed_until__lt=now)
        return bool(await Workspace.filter(free, id=workspace_id).update(
            refresh_claimed_by=self.owner, refresh_claimed_until=now + LEASE))

    async def _release(self, workspace_id: int) -> None:
        await Workspace.filter(id=workspace_id, refresh_claimed_by=self.owner).update(
            refresh_claimed_by="", refresh_claimed_until=None)

    async def _refresh(self, claimed: Workspace, cipher: TokenCipher, now: datetime) -> str | None:
        workspace = await Workspace.get(id=claimed.id)  # the lease is ours: re-read what others wrote
        if not self.due(workspace, now) and workspace.bot_token != claimed.bot_token:
            await self._release(workspace.id)  # refreshed by another replica a moment ago
            return cipher.open(workspace.bot_token) or None
        try:
            answer = await self._exchange(cipher.open(workspace.refresh_token))
        except _Refused as exc:
            await self._release(workspace.id)
            metrics.token_refreshed("failed")
            return await self._after_failed_refresh(workspace, cipher, now, exc)
        expires_at = now + timedelta(seconds=int(answer.get("expires_in") or 43200))
        async with in_transaction() as conn:
            stored = await Workspace.filter(id=workspace.id, refresh_claimed_by=self.owner).using_db(conn).update(
                bot_token=cipher.seal(str(answer["access_token"])),
                token_fingerprint=token_fingerprint(str(answer["access_token"])),
                refresh_token=cipher.seal(str(answer["refresh_token"])),
                token_expires_at=expires_at, refresh_claimed_by="", refresh_claimed_until=None)
            if stored:
                await record([audit_event("workspace.token_refreshed", now=now, actor=f"slack:{workspace.external_id}",
                                          platform="slack", workspace=workspace.external_id,
                                          expires_at=expires_at.isoformat())], using_db=conn)
        if not stored:  # the lease ran out mid-refresh and another replica took over: use its pair
            log.warning("Slack workspace %s: the token refresh outlasted its lease", workspace.external_id)
        metrics.token_refreshed("refreshed")
        log.info("Slack workspace %s: token refreshed, valid until %s", workspace.external_id, expires_at.isoformat())
        return str(answer["access_token"])

    async def _after_failed_refresh(self, workspace: Workspace, cipher: TokenCipher, now: datetime,
                                    exc: "_Refused") -> str:
        """Slack did not renew the token: the current one while it is still valid (a passing
        failure; the next use tries again), else `TokenRefreshFailed`. A refusal of the refresh
        token after another replica stored a new pair (this one's lease ran out) is no refusal."""
        team_id = workspace.external_id
        if exc.refused:
            current = await Workspace.get(id=workspace.id)
            if current.active and current.bot_token != workspace.bot_token:
                return cipher.open(current.bot_token)
            log.error("Slack workspace %s: Slack refused to refresh its token (%s); reconnect the workspace "
                      "(\"Add to Slack\")", team_id, exc)
            raise TokenRefreshFailed(team_id, str(exc), refused=True, fingerprint=workspace.token_fingerprint)
        if str(exc) in _CLIENT_REFUSED:
            log.error("Slack refused Herald's client credentials refreshing workspace %s's token (%s): check "
                      "HERALD_SLACK_CLIENT_ID and HERALD_SLACK_CLIENT_SECRET", team_id, exc)
        else:
            log.warning("Slack workspace %s: its token could not be refreshed (%s); tried again at its next use",
                        team_id, exc)
        if workspace.token_expires_at is not None and workspace.token_expires_at > now:
            return cipher.open(workspace.bot_token)
        raise TokenRefreshFailed(team_id, str(exc), refused=False, fingerprint=workspace.token_fingerprint)

    async def _wait_for_other(self, seen: Workspace, cipher: TokenCipher, expired: bool) -> str | None:
        """Another replica holds the lease. The current token serves while it is valid; an expired
        one is waited for until the new pair is stored (or the other's lease runs out)."""
        if not expired and seen.token_expires_at is not None and seen.token_expires_at > self.clock.now():
            return cipher.open(seen.bot_token) or None
        metrics.token_refreshed("waited")
        for _ in range(int(LEASE.total_seconds() / WAIT_STEP)):
            await self.sleep(WAIT_STEP)
            workspace = await _workspace(seen.external_id)
            if workspace is None or not workspace.active:
                return None
            if workspace.bot_token != seen.bot_token:
                return cipher.open(workspace.bot_token) or None
            if not workspace.refresh_claimed_by:  # the other replica gave up
                break
        raise TokenRefreshFailed(seen.external_id, "another replica's refresh of the token did not finish",
                                 refused=False, fingerprint=seen.token_fingerprint)

    async def _exchange(self, refresh_token: str) -> dict:
        client = AsyncWebClient(base_url=self.api_url, timeout=20)
        try:
            response = await client.oauth_v2_access(client_id=self.client_id, client_secret=self._client_secret,
                                                    grant_type="refresh_token", refresh_token=refresh_token)
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            if error in _REFRESH_REFUSED or error in _CLIENT_REFUSED:
                raise _Refused(error, refused=error in _REFRESH_REFUSED) from None
            status = exc.response.status_code if exc.response is not None else 0
            raise _Refused(f"oauth.v2.access answered HTTP {status} {error}".strip(), refused=False) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _Refused(f"network error: {type(exc).__name__}", refused=False) from None
        data = dict(response.data) if isinstance(response.data, dict) else {}
        if not data.get("access_token") or not data.get("refresh_token"):
            raise _Refused("the answer had no token pair", refused=False)
        return data


class TokenRefreshFailed(Exception):
    """A workspace's rotating token could not be renewed, and the current one cannot serve.

    `refused`: Slack refused the refresh token (`error`, e.g. `invalid_refresh_token`: the app was
    removed, or the token revoked); the workspace must be reconnected. Otherwise a passing failure
    (a 5xx, a rate limit, the network, another replica's refresh that did not finish): a later try
    may succeed. `fingerprint`: of the token the workspace held then (a workspace reconnected
    since is left alone)."""

    def __init__(self, team_id: str, error: str, *, refused: bool, fingerprint: str) -> None:
        what = "Slack refused to renew Herald's token" if refused else "could not renew Herald's expired token"
        super().__init__(f"{what} for Slack workspace {team_id} ({error})")
        self.team_id, self.error, self.refused, self.fingerprint = team_id, error, refused, fingerprint


class _Refused(Exception):
    """oauth.v2.access did not renew the pair; `refused`: the refresh token is dead for good."""

    def __init__(self, reason: str, *, refused: bool) -> None:
        super().__init__(reason)
        self.refused = refused


async def _workspace(team_id: str) -> Workspace | None:
    return await Workspace.get_or_none(platform=Platform.SLACK.value, external_id=team_id)
