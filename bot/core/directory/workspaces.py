"""Connected Slack workspaces (and, later, Teams tenants).

Bot tokens are stored sealed (`bot.common.secrets`): encrypted with a key derived from
`HERALD_SECRET_KEY` when it is set, in plaintext otherwise; plaintext rows stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from bot.common.errors import UserError
from bot.common.secrets import TokenCipher, environment_cipher
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.notice_rows import complete_sent_notices
from storage import db as storage_db
from storage.models import (
    OPEN_DELIVERY_STATUSES,
    AuditEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Platform,
    Workspace,
)

INSTALLED = "workspace.installed"
UNINSTALLED = "workspace.uninstalled"


def removed_reason(platform: str, external_id: str) -> str:
    """What a delivery that cannot go out because Herald was removed says."""
    if platform == Platform.SLACK.value:
        return f"Herald was removed from Slack workspace {external_id}; reconnect it to deliver"
    return f"Herald was removed from {platform.title()} tenant {external_id}; reconnect it to deliver"


def _check_team_id(team_id: str) -> str:
    team_id = team_id.strip()
    if not team_id.startswith(("T", "E")):
        raise UserError(f"'{team_id}' is not a Slack workspace id (they start with T)")
    return team_id


async def _store_slack_workspace(conn: BaseDBAsyncClient, team_id: str, token: str, *, name: str,
                                 bot_user_id: str, cipher: TokenCipher, refresh_token: str = "",
                                 expires_at: datetime | None = None) -> bool:
    """Insert or reactivate the workspace with the sealed token; True when the row is new."""
    query = Workspace.filter(platform=Platform.SLACK.value, external_id=team_id).using_db(conn)
    if storage_db.dialect() == "postgres":
        query = query.select_for_update()
    workspace = await query.first()
    created = workspace is None
    if workspace is None:
        workspace = Workspace(platform=Platform.SLACK.value, external_id=team_id)
    workspace.bot_token, workspace.active = cipher.seal(token), True
    # token rotation: an expiring token comes with its refresh token (both sealed); none otherwise
    workspace.refresh_token = cipher.seal(refresh_token) if refresh_token else ""
    workspace.token_expires_at = expires_at if refresh_token else None
    workspace.refresh_claimed_by, workspace.refresh_claimed_until = "", None
    workspace.name = name or workspace.name
    workspace.bot_user_id = bot_user_id or workspace.bot_user_id
    await workspace.save(using_db=conn)
    return created


async def add_slack_workspace(team_id: str, token: str, *, name: str = "", bot_user_id: str = "",
                              now: datetime, actor: str, cipher: TokenCipher | None = None) -> bool:
    """Store (or replace) a workspace's bot token. Returns True when the workspace is new.

    Without `cipher` the token is sealed with `HERALD_SECRET_KEY` as the environment sets it."""
    team_id = _check_team_id(team_id)
    cipher = cipher or environment_cipher()
    async with in_transaction() as conn:
        created = await _store_slack_workspace(conn, team_id, token, name=name, bot_user_id=bot_user_id,
                                               cipher=cipher)
        await record([audit_event("workspace.added" if created else "workspace.updated", now=now, actor=actor,
                                  platform="slack", workspace=team_id)], using_db=conn)
    return created


class InstallReused(UserError):
    """The install link (its state) was already used for an installation."""


async def install_used(install_id: str, *, since: datetime, using_db: BaseDBAsyncClient | None = None) -> bool:
    """Whether an installation with `install_id` was recorded at or after `since`."""
    rows = await AuditEvent.filter(kind=INSTALLED, occurred_at__gte=since).using_db(using_db).values_list(
        "data", flat=True)
    return any(isinstance(data, dict) and data.get("install_id") == install_id for data in rows)


async def install_slack_workspace(team_id: str, token: str, *, name: str, bot_user_id: str, now: datetime,
                                  actor: str, cipher: TokenCipher, install_id: str, issued_at: datetime,
                                  scopes: str = "", app_id: str = "", refresh_token: str = "",
                                  expires_at: datetime | None = None) -> bool:
    """Store a workspace connected through "Add to Slack" (audit `workspace.installed`).

    `install_id` identifies the install link, issued at `issued_at`; when an installation with it
    was already recorded, `InstallReused` is raised and nothing is stored. Returns True when the
    workspace is new."""
    team_id = _check_team_id(team_id)
    async with in_transaction() as conn:
        if await install_used(install_id, since=issued_at, using_db=conn):
            raise InstallReused("this install link was already used; start again from /slack/install")
        created = await _store_slack_workspace(conn, team_id, token, name=name, bot_user_id=bot_user_id,
                                               cipher=cipher, refresh_token=refresh_token, expires_at=expires_at)
        await record([audit_event(INSTALLED, now=now, actor=actor, platform="slack", workspace=team_id,
                                  name=name, bot_user_id=bot_user_id, reinstalled=not created,
                                  install_id=install_id, scopes=scopes, app_id=app_id,
                                  token_encrypted=cipher.encrypts, token_rotation=bool(refresh_token))],
                     using_db=conn)
    return created


@dataclass(frozen=True)
class Deactivation:
    changed: bool  # False: the workspace was already inactive (a repeated event)
    failed_deliveries: int


async def deactivate_workspace(platform: str, external_id: str, *, reason: str, now: datetime,
                               actor: str = "") -> Deactivation:
    """Herald was removed from a workspace: mark it inactive, wipe its token, and fail every
    delivery still waiting for it, in one transaction with the audit events.

    `reason` says why (e.g. the Slack event: "app_uninstalled", "tokens_revoked"). Idempotent:
    for a workspace that is already inactive nothing is written. A workspace Herald only knew
    from `HERALD_SLACK_BOT_TOKEN` gets an inactive row, so the revoked env token is not used.
    """
    actor = actor or f"{platform}:{external_id}"
    message = removed_reason(platform, external_id)
    async with in_transaction() as conn:
        query = Workspace.filter(platform=platform, external_id=external_id).using_db(conn)
        postgres = storage_db.dialect() == "postgres"
        if postgres:
            query = query.select_for_update()
        workspace = await query.first()
        if workspace is not None and not workspace.active and not workspace.bot_token:
            return Deactivation(changed=False, failed_deliveries=0)
        if workspace is None:
            workspace = Workspace(platform=platform, external_id=external_id)
        workspace.active, workspace.bot_token = False, ""
        await workspace.save(using_db=conn)

        rows = await storage_db.select_locked(
            "delivery", "id, notice_id, member_id, kind, attempts",
            f"platform=? AND workspace_external_id=? AND status IN ({', '.join('?' * len(OPEN_DELIVERY_STATUSES))})",
            [platform, external_id, *OPEN_DELIVERY_STATUSES], conn=conn)
        ids = [row["id"] for row in rows]
        if ids:
            await Delivery.filter(id__in=ids).using_db(conn).update(
                status=DeliveryStatus.FAILED.value, error=message, claimed_by="", claimed_until=None)
        await complete_sent_notices(now, {row["notice_id"] for row in rows}, using_db=conn)

        events = [audit_event(UNINSTALLED, now=now, actor=actor, platform=platform, workspace=external_id,
                              reason=reason, failed_deliveries=len(ids))]
        for row in rows:
            kind = "reminder.failed" if row["kind"] == DeliveryKind.REMINDER.value else "delivery.failed"
            events.append(audit_event(kind, now=now, actor=actor, notice_id=row["notice_id"],
                                      member_id=row["member_id"], platform=platform, delivery_id=row["id"],
                                      reason=message, attempts=row["attempts"]))
        await record(events, using_db=conn)
    return Deactivation(changed=True, failed_deliveries=len(ids))


async def list_workspaces(platform: str | None = None) -> list[Workspace]:
    query = Workspace.all() if platform is None else Workspace.filter(platform=platform)
    return await query.order_by("platform", "external_id")
