"""Herald added and removed by a member in Microsoft Teams.

Herald is a personal-scope Teams app: Teams sends an `installationUpdate` in the member's 1:1 chat
when the app is added for them ("add") or removed ("remove"), by the member or by their tenant's
admin for them (Microsoft, "Conversation events in your Teams bot": installation update event).
A removal concerns that one account, unlike Slack, where the whole workspace goes
(`workspaces.py`); after it, every message Herald posts there is refused with 403.

So the removal is recorded on the account (`PlatformAccount.app_removed_at`, audited
`teams.app_removed`): what waits for it fails at once with `APP_REMOVED` (notice copies here; the
direct messages, journey steps, digests, replies, are made due and the outbox fails them without a
request), later copies and messages fail so without a request (the outbox), its reminders wait (the planner), and a member who also has a
Slack account is reached there (`reach.choose_account`). The next "add" clears it
(`teams.app_added`) and, as Slack's reconnection does, puts back in the outbox the copies of live
notices that failed because Herald was not installed for the member (`delivery.requeued`), the
in-place updates refused for that reason, the reminders that waited (`reminder.resumed`), and the
journey steps that failed so (`journey.step_requeued`). While every account of a member has
Herald removed, their journey waits (bot.core.onboarding.journeys), as for a removed workspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.transactions import in_transaction

from bot.core.compliance.audit import PendingEvent, audit_event, record
from bot.core.directory.workspaces import (
    fail_waiting,
    failures,
    reflag_refused_updates,
    requeue_failed_copies,
    stop_waiting_messages,
)
from bot.core.notices.reminders import TEAMS_APP_REMOVED
from bot.core.notices.rejoining import resume_ended_reminders
from storage import db as storage_db
from storage.models import DeliveryStatus, JourneyStep, Platform, PlatformAccount

APP_REMOVED = "the member removed Herald in Teams; it is sent when they add Herald again"
# What the Teams channel records for a copy the Bot Connector refused with 403 for one member
# (bot/channels/teams.py: Microsoft's status codes table, and what the connector answers):
NOT_INSTALLED = ("Herald is not installed for the member in Teams: have it installed for them (an app setup "
                 "policy in the Teams admin centre) or ask them to add it")
REMOVED = "the member removed Herald in Teams"
BLOCKED = "the member blocked Herald in Teams"
REMOVED_OR_BLOCKED = "the member removed Herald in Teams or blocked it"
# Failures an install ends: Herald was not installed for the member (a blocked app stays blocked,
# but "removed or blocked" is most often the removal, and a copy still blocked fails again).
_NOT_INSTALLED_REASONS = [APP_REMOVED, NOT_INSTALLED, REMOVED, REMOVED_OR_BLOCKED]
REMOVED_EVENT = "teams.app_removed"
ADDED_EVENT = "teams.app_added"


@dataclass(frozen=True)
class InstallChange:
    changed: bool  # False: nothing to do (a repeated event, or an account Herald does not know)
    deliveries: int  # failed by the removal, or back in the outbox after the install
    messages: int = 0  # direct messages made due by the removal, and copies moved to another account (wake the outbox)


async def _locked_account(conn, tenant_id: str, user_id: str) -> PlatformAccount | None:  # noqa: ANN001
    query = PlatformAccount.filter(platform=Platform.TEAMS.value, workspace_external_id=tenant_id.lower(),
                                   user_id=user_id.lower()).using_db(conn)
    if storage_db.dialect() == "postgres":
        query = query.select_for_update()
    return await query.first()


async def app_removed(tenant_id: str, user_id: str, *, now: datetime, refused: bool = False) -> InstallChange:
    """Teams says Herald was removed for this member (AAD object id `user_id` in `tenant_id`):
    record it and fail what waits for the account, in one transaction with the audit events.
    `refused`: Teams said so by refusing a message in the member's chat (403
    BotNotInConversationRoster), the installationUpdate having been missed (Herald was down).
    Idempotent: an account already marked removed, or none, is left alone."""
    actor = f"teams:{tenant_id}"
    async with in_transaction() as conn:
        account = await _locked_account(conn, tenant_id, user_id)
        if account is None or account.app_removed_at is not None:
            return InstallChange(changed=False, deliveries=0)
        account.app_removed_at = now
        await account.save(using_db=conn, update_fields=["app_removed_at", "updated_at"])
        events = await fail_waiting(conn, "account_id=?", [account.id], platform=Platform.TEAMS.value,
                                    reason=APP_REMOVED, now=now, actor=actor)
        failed, rerouted = failures(events)
        messages = await stop_waiting_messages(conn, now, account_id=account.id)
        await record([audit_event(REMOVED_EVENT, now=now, actor=actor, member_id=account.member_id,  # type: ignore[attr-defined]
                                  tenant=account.workspace_external_id, user=account.user_id,
                                  failed_deliveries=failed,
                                  **({"rerouted_deliveries": rerouted} if rerouted else {}),
                                  **({"learned_from": "a message Teams refused"} if refused else {})),
                      *events], using_db=conn)
    return InstallChange(changed=True, deliveries=failed, messages=messages + rerouted)


async def app_added(tenant_id: str, user_id: str, *, now: datetime) -> InstallChange:
    """Teams says Herald is installed for this member: a removal recorded before ends, and the
    copies of live notices that failed because Herald was not installed for them are pending again
    (their updates too). Cheap when there is nothing to do (a first install, a repeated event)."""
    actor = f"teams:{tenant_id}"
    async with in_transaction() as conn:
        account = await _locked_account(conn, tenant_id, user_id)
        if account is None:
            return InstallChange(changed=False, deliveries=0)
        events = []
        if account.app_removed_at is not None:
            events.append(audit_event(ADDED_EVENT, now=now, actor=actor, member_id=account.member_id,  # type: ignore[attr-defined]
                                      tenant=account.workspace_external_id, user=account.user_id,
                                      removed_at=account.app_removed_at))
            account.app_removed_at = None
            await account.save(using_db=conn, update_fields=["app_removed_at", "updated_at"])
        await reflag_refused_updates(conn, _NOT_INSTALLED_REASONS, now=now, account_id=account.id)
        requeued = await requeue_failed_copies(conn, _NOT_INSTALLED_REASONS, now=now, actor=actor,
                                               why="Herald was added in Teams again", account_id=account.id)
        steps = await _requeue_failed_steps(conn, account, now=now, actor=actor)
        resumed = await resume_ended_reminders(TEAMS_APP_REMOVED, now=now, actor=actor,
                                               why="Herald was added in Teams again", account_id=account.id)
        await record([*events, *requeued, *steps, *resumed], using_db=conn)
    return InstallChange(changed=bool(events or requeued or steps or resumed), deliveries=len(requeued))


async def _requeue_failed_steps(conn, account: PlatformAccount, *, now: datetime,  # noqa: ANN001
                                actor: str) -> list[PendingEvent]:
    """In the install's transaction: the member's journey steps (not milestones) that failed in
    Teams because Herald was not installed for them go back to pending, as the copies do: they
    are part of the journey, and the next run sends them first, in the member's working hours.
    Returns a `journey.step_requeued` event each."""
    rows = await JourneyStep.filter(member_id=account.member_id, member__active=True, position__gte=1,  # type: ignore[attr-defined]
                                    status=DeliveryStatus.FAILED.value, platform=Platform.TEAMS.value,
                                    error__in=_NOT_INSTALLED_REASONS).using_db(conn).values(
        "id", "journey", "step_key")
    if not rows:
        return []
    await JourneyStep.filter(id__in=[r["id"] for r in rows], status=DeliveryStatus.FAILED.value).using_db(
        conn).update(status=DeliveryStatus.PENDING.value, error="")
    return [audit_event("journey.step_requeued", now=now, actor=actor, member_id=account.member_id,  # type: ignore[attr-defined]
                        journey=row["journey"], step=row["step_key"], step_id=row["id"],
                        reason="Herald was added in Teams again") for row in rows]
