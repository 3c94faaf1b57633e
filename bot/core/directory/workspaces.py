"""Connected Slack workspaces (and, later, Teams tenants).

Bot tokens are stored sealed (`bot.common.secrets`): encrypted with a key derived from
`HERALD_SECRET_KEY` when it is set, in plaintext otherwise; plaintext rows stay readable.

Removal and reconnection: Herald removed from a workspace (Slack's `app_uninstalled` /
`tokens_revoked` event, or a send or an in-place update refused with a code that means the same,
or the refresh of its expiring token refused)
deactivates it and fails what waits for it with `removed_reason`, which says to reconnect it. Reconnecting it ("Add
to Slack" again, `herald slack add-workspace`, or a new `HERALD_SLACK_BOT_TOKEN` for a workspace
known only from the environment) puts the copies of still-live notices that failed so back to
pending, so the reason's promise holds.

A Teams tenant whose admin blocked Herald (the Bot Connector's 403 `BotDisabledByAdmin`) is
handled alike: an inactive row, its waiting copies failed saying whom to ask, until the first
activity from the tenant (`tenant_allowed`) requeues them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from bot.common.errors import UserError
from bot.common.secrets import TokenCipher, environment_cipher, token_fingerprint
from bot.core.compliance.audit import PendingEvent, audit_event, record
from bot.core.delivery.notice_rows import UPDATE_FAILED, complete_sent_notices
from bot.core.directory.quiet_hours import quiet_hours_ends
from bot.core.directory.reach import choose_account
from bot.core.directory.slack_orgs import installs_of
from bot.core.notices.reminders import WORKSPACE_REMOVED
from bot.core.notices.rejoining import resume_ended_reminders
from bot.core.ports import Outcome
from storage import db as storage_db
from storage.models import (
    OPEN_DELIVERY_STATUSES,
    AuditEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Member,
    Notice,
    NoticeStatus,
    OutboundMessage,
    Platform,
    PlatformAccount,
    Survey,
    Workspace,
)
from bot.topics import parse_importance

log = logging.getLogger(__name__)

INSTALLED = "workspace.installed"
UNINSTALLED = "workspace.uninstalled"
REMOVAL_IGNORED = "workspace.removal_ignored"  # a removal event from before the installation Herald holds
RECONNECTED = "workspace.reconnected"  # a new HERALD_SLACK_BOT_TOKEN for a workspace removed before
REQUEUED = "delivery.requeued"  # a copy failed by a removal, pending again after the reconnection
REROUTED = "delivery.rerouted"  # a copy waiting when Herald was removed, moved to the member's other account
# Slack's answers that mean Herald's token is dead for good (its error reference): the app was
# removed (`account_inactive` for a bot token, `token_revoked`), or `invalid_auth`, which may also
# be a token that was never right (another workspace's, mistyped) or an IP allow-list.
INVALID_AUTH = "invalid_auth"
# Slack refused to renew an expiring token (oauth.v2.access): the refresh token is dead, because
# the app was removed (its event missed) or the token was revoked.
REFRESH_REFUSED = "invalid_refresh_token"
# The Bot Connector's 403 code for a Teams tenant whose admin blocked Herald (Microsoft's table of
# its status codes): every member there is refused alike, as a removed Slack workspace's. The
# tenant gets an inactive row (Teams tenants have none otherwise) until an activity comes from
# it again (`tenant_allowed`).
TEAMS_BLOCKED = "BotDisabledByAdmin"
_CAUSES = ("app_uninstalled", "tokens_revoked", "account_inactive", "token_revoked", INVALID_AUTH, REFRESH_REFUSED,
           TEAMS_BLOCKED)


def removed_reason(platform: str, external_id: str, cause: str = "") -> str:
    """What a delivery that cannot go out because Herald was removed says (`cause`: Slack's event
    or error code)."""
    if platform == Platform.SLACK.value and cause == INVALID_AUTH:
        return (f"Slack refused Herald's token for workspace {external_id} (invalid_auth: the app was removed, "
                "or the token is not this workspace's or is IP-restricted); reconnect it to deliver")
    if platform == Platform.SLACK.value and cause == REFRESH_REFUSED:
        return (f"Slack refused to renew Herald's expiring token for workspace {external_id} (invalid_refresh_token: "
                "the app was removed or the token revoked); reconnect it to deliver")
    if platform == Platform.SLACK.value:
        return f"Herald was removed from Slack workspace {external_id}; reconnect it to deliver"
    if platform == Platform.TEAMS.value:  # a tenant is only made inactive by its admin's block (TEAMS_BLOCKED)
        return (f"a Teams admin of tenant {external_id} blocked Herald: ask them to allow it in the Teams admin "
                "center; the copies are sent when it is allowed again")
    return f"Herald was removed from {platform.title()} tenant {external_id}; reconnect it to deliver"


def _removed_reasons(platform: str, external_id: str) -> list[str]:
    """Every reason `removed_reason` gives for this workspace (what a reconnection restores)."""
    return sorted({removed_reason(platform, external_id, cause) for cause in _CAUSES})


def failed_because_removed(error: str, platform: str, external_id: str) -> bool:
    """Whether `error` says something failed only because Herald was removed from the workspace."""
    return error in _removed_reasons(platform, external_id)


def _check_team_id(team_id: str) -> str:
    team_id = team_id.strip()
    if not team_id.startswith(("T", "E")):
        raise UserError(f"'{team_id}' is not a Slack workspace id (they start with T; an Enterprise Grid "
                        "organisation's with E)")
    return team_id


@dataclass(frozen=True)
class _Stored:
    created: bool  # the row is new
    reconnected: bool  # the row was inactive (Herald had been removed)


async def _store_slack_workspace(conn: BaseDBAsyncClient, team_id: str, token: str, *, name: str,
                                 bot_user_id: str, cipher: TokenCipher, refresh_token: str = "",
                                 expires_at: datetime | None = None, now: datetime) -> _Stored:
    """Insert or reactivate the workspace with the sealed token, installed at `now`."""
    query = Workspace.filter(platform=Platform.SLACK.value, external_id=team_id).using_db(conn)
    if storage_db.dialect() == "postgres":
        query = query.select_for_update()
    workspace = await query.first()
    created = workspace is None
    reconnected = workspace is not None and not workspace.active
    if workspace is None:
        workspace = Workspace(platform=Platform.SLACK.value, external_id=team_id)
    workspace.bot_token, workspace.active = cipher.seal(token), True
    workspace.token_fingerprint = token_fingerprint(token)
    # token rotation: an expiring token comes with its refresh token (both sealed); none otherwise
    workspace.refresh_token = cipher.seal(refresh_token) if refresh_token else ""
    workspace.token_expires_at = expires_at if refresh_token else None
    workspace.refresh_claimed_by, workspace.refresh_claimed_until = "", None
    workspace.installed_at = now
    workspace.name = name or workspace.name
    workspace.bot_user_id = bot_user_id or workspace.bot_user_id
    await workspace.save(using_db=conn)
    return _Stored(created, reconnected)


async def add_slack_workspace(team_id: str, token: str, *, name: str = "", bot_user_id: str = "",
                              now: datetime, actor: str, cipher: TokenCipher | None = None) -> bool:
    """Store (or replace) a workspace's bot token. Returns True when the workspace is new.

    Without `cipher` the token is sealed with `HERALD_SECRET_KEY` as the environment sets it."""
    team_id = _check_team_id(team_id)
    cipher = cipher or environment_cipher()
    async with in_transaction() as conn:
        stored = await _store_slack_workspace(conn, team_id, token, name=name, bot_user_id=bot_user_id,
                                              cipher=cipher, now=now)
        events = [audit_event("workspace.added" if stored.created else "workspace.updated", now=now, actor=actor,
                              platform="slack", workspace=team_id)]
        if stored.reconnected:
            events += await requeue_removed_copies(conn, Platform.SLACK.value, team_id, now=now, actor=actor)
        await record(events, using_db=conn)
    return stored.created


class InstallReused(UserError):
    """The install link (its state) was already used for an installation."""


async def install_used(install_id: str, *, since: datetime, using_db: BaseDBAsyncClient | None = None) -> bool:
    """Whether an installation with `install_id` was recorded at or after `since`."""
    rows = await AuditEvent.filter(kind=INSTALLED, occurred_at__gte=since).using_db(using_db).values_list(
        "data", flat=True)
    return any(isinstance(data, dict) and data.get("install_id") == install_id for data in rows)


@dataclass(frozen=True)
class Installed:
    created: bool  # the workspace is new
    reconnected: bool  # Herald had been removed from it: what failed so is back in the outbox (wake it)


async def install_slack_workspace(team_id: str, token: str, *, name: str, bot_user_id: str, now: datetime,
                                  actor: str, cipher: TokenCipher, install_id: str, issued_at: datetime,
                                  scopes: str = "", app_id: str = "", refresh_token: str = "",
                                  expires_at: datetime | None = None, enterprise_install: bool = False) -> Installed:
    """Store a workspace connected through "Add to Slack" (audit `workspace.installed`).
    `enterprise_install`: an org-wide install of an Enterprise Grid organisation, stored under
    its enterprise id (`team_id` E...), whose token serves every workspace of the org.

    `install_id` identifies the install link, issued at `issued_at`; when an installation with it
    was already recorded, `InstallReused` is raised and nothing is stored. Returns whether the
    workspace is new, and whether it was reconnected (its removed copies requeued)."""
    team_id = _check_team_id(team_id)
    async with in_transaction() as conn:
        if await install_used(install_id, since=issued_at, using_db=conn):
            raise InstallReused("this install link was already used; start again from /slack/install")
        stored = await _store_slack_workspace(conn, team_id, token, name=name, bot_user_id=bot_user_id,
                                              cipher=cipher, refresh_token=refresh_token, expires_at=expires_at,
                                              now=now)
        events = [audit_event(INSTALLED, now=now, actor=actor, platform="slack", workspace=team_id,
                              name=name, bot_user_id=bot_user_id, reinstalled=not stored.created,
                              install_id=install_id, scopes=scopes, app_id=app_id,
                              token_encrypted=cipher.encrypts, token_rotation=bool(refresh_token),
                              enterprise_install=enterprise_install)]
        if stored.reconnected:
            events += await requeue_removed_copies(conn, Platform.SLACK.value, team_id, now=now, actor=actor)
        await record(events, using_db=conn)
    return Installed(stored.created, stored.reconnected)


@dataclass(frozen=True)
class Deactivation:
    changed: bool  # False: the workspace was already inactive (a repeated event)
    failed_deliveries: int
    messages: int = 0  # direct messages made due now, for the outbox to settle (`stop_waiting_messages`)
    stale: bool = False  # ignored: the removal was from before the installation Herald holds
    rerouted: int = 0  # copies moved to their members' other accounts (`_reroute`): the outbox sends them

    @property
    def wake(self) -> bool:
        """Whether the outbox has work from it now."""
        return bool(self.messages or self.rerouted)


async def deactivate_workspace(platform: str, external_id: str, *, reason: str, now: datetime,
                               actor: str = "", refused_token: str = "", env_token: str = "",
                               removed_at: datetime | None = None) -> Deactivation:
    """Herald was removed from a workspace: mark it inactive, wipe its token, and fail every
    delivery still waiting for it, in one transaction with the audit events.

    `reason` says why: the Slack event ("app_uninstalled", "tokens_revoked") or the error code a
    send was refused with ("account_inactive", "token_revoked", "invalid_auth"; "invalid_refresh_token"
    for the refresh of an expiring token). Idempotent: for a
    workspace that is already inactive nothing is written.

    `refused_token`: the fingerprint (bot.common.secrets.token_fingerprint) of the token a send
    was refused with; when the workspace holds another token now (reconnected while that send
    was on the wire), nothing is done. A workspace Herald only knew from `HERALD_SLACK_BOT_TOKEN`
    gets an inactive row keeping that token's fingerprint (`env_token`, else `refused_token`), so
    the revoked env token is not used, and a new one is (`readopt_env_token`).

    `removed_at`: when the removal happened (the event's `event_time`, whole seconds). Slack
    retries an event late and out of order: a removal from before the installation the row holds
    (`installed_at`: the admin added Herald again meanwhile) is ignored, with the audit event
    `workspace.removal_ignored`.
    """
    actor = actor or f"{platform}:{external_id}"
    message = removed_reason(platform, external_id, reason)
    async with in_transaction() as conn:
        query = Workspace.filter(platform=platform, external_id=external_id).using_db(conn)
        postgres = storage_db.dialect() == "postgres"
        if postgres:
            query = query.select_for_update()
        workspace = await query.first()
        if workspace is not None and not workspace.active and not workspace.bot_token:
            return Deactivation(changed=False, failed_deliveries=0)
        if workspace is not None and refused_token and workspace.token_fingerprint not in ("", refused_token):
            return Deactivation(changed=False, failed_deliveries=0)  # reconnected since: the new token is alive
        if workspace is not None and _removed_before_install(workspace, removed_at):
            assert removed_at is not None and workspace.installed_at is not None
            await record([audit_event(REMOVAL_IGNORED, now=now, actor=actor, platform=platform, workspace=external_id,
                                      reason=reason, removed_at=removed_at.isoformat(),
                                      installed_at=workspace.installed_at.isoformat())], using_db=conn)
            return Deactivation(changed=False, failed_deliveries=0, stale=True)
        if workspace is None:
            workspace = Workspace(platform=platform, external_id=external_id)
            workspace.token_fingerprint = env_token or refused_token  # the revoked env token's
        elif workspace.bot_token:
            workspace.token_fingerprint = ""  # a stored token: gone with the row's token
        workspace.active, workspace.bot_token = False, ""
        workspace.refresh_token, workspace.token_expires_at = "", None
        await workspace.save(using_db=conn)

        events = await fail_waiting(conn, "platform=? AND workspace_external_id=?", [platform, external_id],
                                    platform=platform, reason=message, now=now, actor=actor)
        failed, rerouted = failures(events)
        messages = await stop_waiting_messages(conn, now, platform=platform, workspace_external_id=external_id)
        await record([audit_event(UNINSTALLED, now=now, actor=actor, platform=platform, workspace=external_id,
                                  reason=reason, failed_deliveries=failed,
                                  **({"rerouted_deliveries": rerouted} if rerouted else {})), *events], using_db=conn)
    if platform == Platform.TEAMS.value:
        _BLOCKED_TENANTS.forget()
    return Deactivation(changed=True, failed_deliveries=failed, messages=messages, rerouted=rerouted)


def failures(events: list[PendingEvent]) -> tuple[int, int]:
    """(copies failed, copies moved to another account) among `fail_waiting`'s events."""
    rerouted = sum(event.kind == REROUTED for event in events)
    return len(events) - rerouted, rerouted


def _removed_before_install(workspace: Workspace, removed_at: datetime | None) -> bool:
    """Whether the removal surely happened before the row's installation: Slack's `event_time`
    is in whole seconds (cut, not rounded), so the removal was within the second after it."""
    if removed_at is None or workspace.installed_at is None:
        return False
    return removed_at + timedelta(seconds=1) <= workspace.installed_at


async def stop_waiting_messages(conn: BaseDBAsyncClient, now: datetime, **where: object) -> int:
    """In the caller's transaction: the direct messages matching `where` (the outbox's journey
    steps, digests, hand-offs, escalations, ...) that wait for a later time (a retry, the member's
    hours) are due now. The outbox then settles them at once without a request, as `fail_waiting`
    does the notice copies (`removed_reason` for a removed workspace, `APP_REMOVED` for an account
    whose member removed Herald), and each purpose records the failure as usual (its hook needs the
    outbox, hence not done here). Returns how many (the caller wakes the outbox)."""
    return await OutboundMessage.filter(status=DeliveryStatus.PENDING.value, next_attempt_at__gt=now,
                                        **where).using_db(conn).update(next_attempt_at=now)


async def fail_waiting(conn: BaseDBAsyncClient, where: str, params: list, *, platform: str, reason: str,
                       now: datetime, actor: str) -> list[PendingEvent]:
    """In the caller's transaction: the deliveries matching `where` (SQL on `delivery`) that still
    wait to be sent fail with `reason` (locked first on PostgreSQL), and their notices with
    nothing left to send are marked sent. A notice copy not yet sent whose member has an account
    Herald can still reach goes there instead (`_reroute`). Returns a `delivery.failed` /
    `reminder.failed` event each (`delivery.rerouted` for a copy moved)."""
    rows = await storage_db.select_locked(
        "delivery", "id, notice_id, member_id, kind, attempts, status, platform, account_id",
        f"{where} AND status IN ({', '.join('?' * len(OPEN_DELIVERY_STATUSES))})",
        [*params, *OPEN_DELIVERY_STATUSES], conn=conn)
    rerouted = await _reroute(conn, rows, reason=reason, now=now, actor=actor)
    moved = {event.data["delivery_id"] for event in rerouted}
    rows = [row for row in rows if row["id"] not in moved]
    for status, in_doubt_since in ((DeliveryStatus.PENDING.value, None), (DeliveryStatus.SENDING.value, now)):
        ids = [row["id"] for row in rows if row["status"] == status]
        if ids:
            # A copy on the wire or in doubt (`sending`) may have been posted: its failure keeps a
            # `claimed_until`, so a reconnection (requeue_failed_copies) looks for it before posting again.
            await Delivery.filter(id__in=ids).using_db(conn).update(
                status=DeliveryStatus.FAILED.value, error=reason, claimed_by="", claimed_until=in_doubt_since)
    await complete_sent_notices(now, {row["notice_id"] for row in rows}, using_db=conn)
    return [*rerouted, *(audit_event("reminder.failed" if row["kind"] == DeliveryKind.REMINDER.value
                                     else "delivery.failed", now=now, actor=actor, notice_id=row["notice_id"],
                                     member_id=row["member_id"], platform=platform, delivery_id=row["id"],
                                     reason=reason, attempts=row["attempts"])
                         for row in rows)]


@dataclass(frozen=True)
class _Account:
    """A member's platform account, shaped for `reach.choose_account`."""

    id: int
    platform: str
    workspace_external_id: str
    app_removed_at: datetime | None


async def _reroute(conn: BaseDBAsyncClient, rows: list[dict], *, reason: str, now: datetime,
                   actor: str) -> list[PendingEvent]:
    """In `fail_waiting`'s transaction: the notice copies among `rows` not yet sent (pending: a
    copy on the wire or in doubt may have landed, and a reminder belongs with its original) whose
    member has another account Herald can reach, chosen as a new notice's would be
    (`reach.choose_account`), are moved to it, still pending, instead of failing: Herald was
    removed from where they were going, and the member would otherwise miss the notice until it is
    added back there. Not when the member already has a copy on that platform. Returns a
    `delivery.rerouted` event each."""
    waiting = [r for r in rows if r["status"] == DeliveryStatus.PENDING.value
               and r["kind"] == DeliveryKind.NOTICE.value]
    if not waiting:
        return []
    member_ids = sorted({r["member_id"] for r in waiting})
    accounts: dict[int, list[_Account]] = {}
    found = await PlatformAccount.filter(member_id__in=member_ids).using_db(conn).values(
        "id", "member_id", "platform", "workspace_external_id", "app_removed_at")
    orgs = await installs_of(a["workspace_external_id"] for a in found if a["platform"] == Platform.SLACK.value)
    for a in found:
        workspace = a["workspace_external_id"]
        if a["platform"] == Platform.SLACK.value:
            workspace = orgs.get(workspace, workspace)  # served by its Enterprise Grid org's install
        accounts.setdefault(a["member_id"], []).append(_Account(a["id"], a["platform"], workspace, a["app_removed_at"]))
    unreachable = frozenset(await Workspace.filter(active=False).using_db(conn).values_list("platform", "external_id"))
    preferred = dict(await Member.filter(id__in=member_ids).using_db(conn).values_list("id", "preferred_platform"))
    taken = set(await Delivery.filter(notice_id__in=sorted({r["notice_id"] for r in waiting}), member_id__in=member_ids,
                                      kind=DeliveryKind.NOTICE.value).using_db(conn).values_list(
        "notice_id", "member_id", "platform"))
    events, moves = [], []
    for row in waiting:
        reachable = [a for a in accounts.get(row["member_id"], []) if a.id != row["account_id"]
                     and (a.platform, a.workspace_external_id) not in unreachable and a.app_removed_at is None]
        target = choose_account(reachable, preferred=preferred.get(row["member_id"]) or "")
        if target is None or (target.platform != row["platform"]
                              and (row["notice_id"], row["member_id"], target.platform) in taken):
            continue
        moves.append((target.platform, target.id, target.workspace_external_id, now, row["id"]))
        taken.add((row["notice_id"], row["member_id"], target.platform))
        events.append(audit_event(REROUTED, now=now, actor=actor, notice_id=row["notice_id"],
                                  member_id=row["member_id"], delivery_id=row["id"], from_platform=row["platform"],
                                  to_platform=target.platform, workspace=target.workspace_external_id,
                                  reason=reason))
    # all of them at once (a workspace of thousands of members: one statement, not one a row, while
    # the removal's transaction holds its locks)
    await storage_db.write_rows(_REROUTE_SQL, moves, postgres=_REROUTE_PG, using_db=conn)
    if events:
        log.info("%d waiting copies moved to the members' other accounts: %s", len(events), reason)
    return events


# `_reroute`'s move of a copy still pending (the rows are locked by `fail_waiting`): parameters the
# target's platform, account id and workspace, now, the copy's id (storage.db.write_rows).
_REROUTE_SET = ("error='', claimed_by='', claimed_until=NULL, history_read_to=''")
_REROUTE_SQL = (f"UPDATE delivery SET platform=?, account_id=?, workspace_external_id=?, {_REROUTE_SET}, updated_at=? "
                f"WHERE id=? AND status='{DeliveryStatus.PENDING.value}'")
_REROUTE_PG = ("UPDATE delivery d SET platform=v.platform, account_id=v.account_id, workspace_external_id=v.workspace, "
               f"{_REROUTE_SET}, updated_at=v.updated_at "
               "FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::int[]) "
               "AS v(platform, account_id, workspace, updated_at, id) "
               f"WHERE d.id=v.id AND d.status='{DeliveryStatus.PENDING.value}'")


async def workspace_refused(platform: str, external_id: str, *, cause: str, refused_token: str,
                            now: datetime) -> Deactivation:
    """A send was refused with `cause`, an answer that means Herald's token for the workspace is
    dead for good: handled as the uninstall event is (the event may have been missed: Herald was
    down for the hour Slack retries it). Logged with how to recover."""
    result = await deactivate_workspace(platform, external_id, reason=cause, now=now, refused_token=refused_token,
                                        actor=f"{platform}:{external_id}")
    if result.changed and platform == Platform.TEAMS.value:
        log.warning("Teams tenant %s refused Herald (%s: a Teams admin blocked the app there): marked unreachable, "
                    "%d waiting deliveries failed. To recover, ask the tenant's Teams admin to allow Herald in the "
                    "Teams admin center: the first activity from the tenant then sends the failed copies of live "
                    "notices.", external_id, cause, result.failed_deliveries)
    elif result.changed:
        log.warning("%s workspace %s refused Herald's token (%s): deactivated, %d waiting deliveries failed. "
                    "%s To recover, connect it again (\"Add to Slack\", `herald slack add-workspace`, or a new "
                    "HERALD_SLACK_BOT_TOKEN and a restart): the failed copies of live notices are then sent.",
                    platform.title(), external_id, cause, result.failed_deliveries,
                    _why_refused(cause))
    return result


def _why_refused(cause: str) -> str:
    if cause == INVALID_AUTH:
        return "invalid_auth can also mean a wrong token (another workspace's, mistyped) or an IP allow-list;"
    if cause == REFRESH_REFUSED:
        return "Slack refused to renew its expiring token: Herald was removed from it, or the token revoked."
    return "Herald was removed from it."


async def deactivate_refused(refusals: Iterable[tuple[str, str, Outcome]], now: datetime) -> bool:
    """After a send's outcome is handed to its recorder: each workspace whose token the send found
    dead (`Outcome.removed_cause`) is deactivated (`workspace_refused`). A failure here is logged
    and left to the next refused send. Returns whether the outbox has work from it now."""
    seen = {(platform, workspace, o.removed_cause, o.token_fingerprint)
            for platform, workspace, o in refusals if o.removed_cause}
    wake = False
    for platform, workspace, cause, fingerprint in sorted(seen):
        try:
            wake |= (await workspace_refused(platform, workspace, cause=cause, refused_token=fingerprint,
                                             now=now)).wake
        except Exception:  # noqa: BLE001 - the outcomes are stored; the next refusal tries again
            log.exception("could not deactivate %s workspace %s after it refused Herald's token", platform, workspace)
    return wake


async def requeue_removed_copies(conn: BaseDBAsyncClient, platform: str, external_id: str, *, now: datetime,
                                 actor: str) -> list[PendingEvent]:
    """In the reconnection's transaction: the notice copies of this workspace that failed only
    because Herald was removed (`removed_reason`) go back to pending, when their notice is still
    live (not retracted, its survey not closed). Due now, or when the member's quiet hours end for
    a notice that respects them. A deadline that passed meanwhile does not stop them: the member
    still gets a must-know notice, and the report shows their acknowledgement's time after the
    deadline (the escalation has named them already). Reminders are not requeued: a delivered copy plans its own.
    Returns the audit events (`delivery.requeued`, one per copy; `reminder.resumed`, one per
    delivered copy whose reminders waited for the reconnection) and marks their notices sending.
    Delivered copies whose in-place update (an edit, a retraction, an acknowledgement) was refused
    because Herald was removed are flagged for it again (`_reflag_removed_updates`)."""
    reasons = _removed_reasons(platform, external_id)
    await reflag_refused_updates(conn, reasons, now=now, platform=platform, workspace_external_id=external_id)
    requeued = await requeue_failed_copies(conn, reasons, now=now, actor=actor, why="the workspace was reconnected",
                                           platform=platform, workspace_external_id=external_id)
    # the reminders the planner ended while Herald was removed start again
    resumed = await resume_ended_reminders(WORKSPACE_REMOVED, now=now, actor=actor,
                                           why="the workspace was reconnected", platform=platform,
                                           workspace_external_id=external_id)
    return [*requeued, *resumed]


async def requeue_failed_copies(conn: BaseDBAsyncClient, reasons: list[str], *, now: datetime, actor: str,
                                why: str, **where: object) -> list[PendingEvent]:
    """In the caller's transaction: the notice copies matching `where` that failed with one of
    `reasons` go back to pending when their notice is still live (see requeue_removed_copies).
    Returns a `delivery.requeued` event each (saying `why`)."""
    live = [NoticeStatus.SENDING.value, NoticeStatus.SENT.value]
    rows = await Delivery.filter(
        kind=DeliveryKind.NOTICE.value, status=DeliveryStatus.FAILED.value, error__in=reasons,
        notice__status__in=live, member__active=True, **where).using_db(conn).values(
            "id", "notice_id", "member_id", "platform", "notice__importance", "claimed_until")
    if rows:
        closed = set(await Survey.filter(notice_id__in=list({r["notice_id"] for r in rows}), closed_at__isnull=False)
                     .using_db(conn).values_list("notice_id", flat=True))
        rows = [r for r in rows if r["notice_id"] not in closed]
    if not rows:
        return []
    quiet = {r["member_id"] for r in rows if parse_importance(r["notice__importance"]).respects_quiet_hours}
    ends = await quiet_hours_ends(sorted(quiet), now) if quiet else {}
    by_moment: dict[tuple[datetime, bool], list[int]] = {}
    for row in rows:
        moment = ends.get(row["member_id"], now) if row["member_id"] in quiet else now
        by_moment.setdefault((moment, row["claimed_until"] is not None), []).append(row["id"])
    for (moment, in_doubt), ids in by_moment.items():
        # one that may have been posted before it failed (`fail_waiting`) is in doubt again: claimed
        # back as after a crash, the channel looks for the earlier message before posting it again
        status = DeliveryStatus.SENDING.value if in_doubt else DeliveryStatus.PENDING.value
        for start in range(0, len(ids), 1000):
            await Delivery.filter(id__in=ids[start:start + 1000], status=DeliveryStatus.FAILED.value).using_db(
                conn).update(status=status, error="", next_attempt_at=moment, due_since=moment, claimed_by="",
                             claimed_until=moment if in_doubt else None, updated_at=now)
    notice_ids = sorted({row["notice_id"] for row in rows})
    await Notice.filter(id__in=notice_ids, status=NoticeStatus.SENT.value).using_db(conn).update(
        status=NoticeStatus.SENDING.value, completed_at=None)
    log.info("%s: %d failed copies of %d live notices are pending again", why, len(rows), len(notice_ids))
    return [audit_event(REQUEUED, now=now, actor=actor, notice_id=row["notice_id"], member_id=row["member_id"],
                        platform=row["platform"], delivery_id=row["id"], reason=why)
            for row in rows]


async def reflag_refused_updates(conn: BaseDBAsyncClient, reasons: list[str], *, now: datetime,
                                 **where: object) -> int:
    """The delivered copies matching `where` whose in-place update failed with one of `reasons`
    (Herald was removed) get it again (the outbox renders the notice as it is now): otherwise a
    copy edited or retracted meanwhile would keep showing the old text."""
    refused = [UPDATE_FAILED + reason for reason in reasons]
    return await Delivery.filter(status=DeliveryStatus.DELIVERED.value, error__in=refused, **where).using_db(
        conn).update(update_pending=True, error="", claimed_by="", claimed_until=None, updated_at=now)


async def readopt_env_token(env_token: str | None, *, now: datetime) -> list[str]:
    """`HERALD_SLACK_BOT_TOKEN` is a token other than the one that was revoked: the workspaces that
    were deactivated with the revoked env token are known from the environment again (their
    inactive rows are removed) and their removed copies are requeued, each with the audit event
    `workspace.reconnected`. The single-workspace set-up's way back after a reinstall: the
    operator sets the new token and restarts. Returns the workspaces readopted."""
    fingerprint = token_fingerprint(env_token)
    if not fingerprint:
        return []
    readopted = []
    stale = await Workspace.filter(platform=Platform.SLACK.value, active=False, bot_token="").exclude(
        token_fingerprint__in=["", fingerprint]).values_list("external_id", flat=True)
    for team_id in stale:
        async with in_transaction() as conn:
            deleted = await Workspace.filter(platform=Platform.SLACK.value, external_id=team_id, active=False,
                                             bot_token="").exclude(token_fingerprint__in=["", fingerprint]).using_db(
                conn).delete()
            if not deleted:
                continue  # another replica did it, or the workspace was connected otherwise meanwhile
            actor = "HERALD_SLACK_BOT_TOKEN"
            events = [audit_event(RECONNECTED, now=now, actor=actor, platform=Platform.SLACK.value, workspace=team_id,
                                  reason="a new HERALD_SLACK_BOT_TOKEN (the revoked one was replaced)")]
            events += await requeue_removed_copies(conn, Platform.SLACK.value, team_id, now=now, actor=actor)
            await record(events, using_db=conn)
        log.warning("Slack workspace %s: HERALD_SLACK_BOT_TOKEN differs from the token that was revoked; "
                    "using it again", team_id)
        readopted.append(team_id)
    return readopted


class _BlockedTenants:
    """The Teams tenants marked unreachable (`TEAMS_BLOCKED`: inactive rows), read at most every
    `ttl` seconds: every inbound Teams activity asks (`tenant_allowed`), an Acknowledge click
    included, and a blocked tenant is rare. A tenant this process marks or clears is seen at once
    (`forget`); one another replica marks, within `ttl`."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self._until = 0.0
        self._tenants: frozenset[str] = frozenset()

    async def get(self) -> frozenset[str]:
        if time.monotonic() >= self._until:
            tenants = await Workspace.filter(platform=Platform.TEAMS.value, active=False).values_list(
                "external_id", flat=True)
            self._tenants, self._until = frozenset(tenants), time.monotonic() + self.ttl
        return self._tenants

    def forget(self) -> None:
        self._until = 0.0


_BLOCKED_TENANTS = _BlockedTenants()


async def tenant_blocked(tenant_id: str) -> bool:
    """Whether the Teams tenant is marked unreachable because its admin blocked Herald (asked at
    every claim in a Teams lane and every inbound activity: read through `_BlockedTenants`)."""
    return tenant_id in await _BLOCKED_TENANTS.get()


async def tenant_allowed(tenant_id: str, *, now: datetime) -> bool:
    """An activity came from a Teams tenant (a message, a button press, an installationUpdate):
    Herald is allowed there. When the tenant was marked unreachable because its admin blocked
    Herald (`TEAMS_BLOCKED`), its row goes and what failed for that reason is sent again, as a
    Slack reconnection does (`requeue_removed_copies`), with the audit event
    `workspace.reconnected`. Nothing is read when there is nothing to do (`_BlockedTenants`). Returns whether the
    outbox has work from it."""
    platform = Platform.TEAMS.value
    if not await tenant_blocked(tenant_id):
        return False
    _BLOCKED_TENANTS.forget()
    actor = f"{platform}:{tenant_id}"
    async with in_transaction() as conn:
        deleted = await Workspace.filter(platform=platform, external_id=tenant_id, active=False).using_db(conn).delete()
        if not deleted:
            return False  # another replica, or another activity, did it
        events = [audit_event(RECONNECTED, now=now, actor=actor, platform=platform, workspace=tenant_id,
                              reason="an activity from the tenant: its Teams admin allowed Herald again")]
        events += await requeue_removed_copies(conn, platform, tenant_id, now=now, actor=actor)
        await record(events, using_db=conn)
    log.warning("Teams tenant %s: an activity came from it, so Herald is allowed there again; its failed copies "
                "of live notices are sent", tenant_id)
    return True


async def is_connected(platform: str, external_id: str) -> bool:
    """Whether Herald is connected to the workspace (an active row): a Slack Connect user's home
    team must be, for Herald to take them for a member of the partner the directory files there."""
    return await Workspace.filter(platform=platform, external_id=external_id, active=True).exists()


async def list_workspaces(platform: str | None = None) -> list[Workspace]:
    query = Workspace.all() if platform is None else Workspace.filter(platform=platform)
    return await query.order_by("platform", "external_id")
