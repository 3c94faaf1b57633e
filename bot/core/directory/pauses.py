"""Pausing a partner organisation's automated reminders and nudges (must-know notices still go out)."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.compliance.audit import PendingEvent, audit_event, record
from bot.core.directory.permissions import may_act_for_partner
from bot.core.notices.reminders import PAUSED
from bot.core.notices.rejoining import resume_ended_reminders
from storage import db as storage_db
from storage.models import Delivery, Member, Organisation, Staff

_MEMBERS_AT_ONCE = 5000  # member ids in one statement: a large partner's would pass asyncpg's 32,767 arguments


async def _organisation_for(staff: Staff | None, org_id: str) -> Organisation:
    organisation = await Organisation.get_or_none(external_id=org_id.strip())
    if organisation is None:
        raise NotFound(f"no partner organisation has the id '{org_id}'")
    if staff is None or not staff.active:
        raise PermissionDenied("Only Herald staff can pause reminders.")
    if not may_act_for_partner(staff, cam_email=organisation.cam_email):
        raise PermissionDenied(f"Only {organisation.name}'s CAM or an admin can pause or resume it.")
    return organisation


async def pause_organisation(staff: Staff | None, org_id: str, *, until: datetime | None, reason: str,
                             now: datetime) -> Organisation:
    """Pause the organisation's automated reminders (or change the pause: its end or its reason).

    A pause that changes moves the reminders the previous one stopped: those put off to its end
    follow the new end (or are due now under a pause until resumed: the planner ends them), and
    those a pause until resumed ended come back at the new end (`reminder.resumed`)."""
    organisation = await _organisation_for(staff, org_id)
    if until is not None and until <= now:
        raise UserError("the pause must end in the future")
    async with in_transaction() as conn:
        previous = await _locked(organisation.id, conn)
        await Organisation.filter(id=organisation.id).using_db(conn).update(
            paused_at=now, paused_until=until, pause_reason=reason[:500], paused_by=staff.email)  # type: ignore[union-attr]
        moved = await _follow_the_new_end(previous, until, now=now, actor=staff.email)  # type: ignore[union-attr]
        await record([audit_event("organisation.paused", now=now, actor=staff.email,  # type: ignore[union-attr]
                                  organisation=organisation.external_id, until=until, reason=reason), *moved],
                     using_db=conn)
    return await Organisation.get(id=organisation.id)


async def _locked(organisation_id: int, conn: BaseDBAsyncClient) -> Organisation:
    """The organisation as it is now, locked on PostgreSQL until the transaction ends: two changes
    of its pause at once take turns, each moving what the one before it left."""
    query = Organisation.filter(id=organisation_id).using_db(conn)
    if storage_db.dialect() == "postgres":
        query = query.select_for_update()
    return await query.get()


async def _follow_the_new_end(previous: Organisation, until: datetime | None, *, now: datetime,
                              actor: str) -> list[PendingEvent]:
    """The reminders the organisation's previous pause stopped follow the pause that replaces it
    (in its transaction): otherwise they would wait for an end that no longer comes, possibly
    after the notice's deadline. Returns the `reminder.resumed` events of those brought back."""
    if previous.paused_at is None:
        return []
    if previous.paused_until is not None:
        # put off to the old end by the planner: now at the new end (a pause until resumed: due
        # now, and the planner ends them for it, to come back when it is resumed)
        await _move_put_off(previous, previous.paused_until, until or now)
        return []
    if until is None:
        return []  # still paused until resumed: they stay ended
    return await resume_ended_reminders(PAUSED, now=now, at=until, actor=actor,
                                        why="the organisation's pause now has an end",
                                        member__organisation_id=previous.id)


async def _move_put_off(organisation: Organisation, put_off_to: datetime, to: datetime) -> None:
    """The organisation's members' originals whose next reminder is at `put_off_to` (where the
    planner puts reminders due during a timed pause) are due at `to` instead."""
    members = await Member.filter(organisation_id=organisation.id).values_list("id", flat=True)
    for start in range(0, len(members), _MEMBERS_AT_ONCE):
        await Delivery.filter(member_id__in=list(members[start:start + _MEMBERS_AT_ONCE]),
                              next_reminder_at=put_off_to).update(next_reminder_at=to)


async def resume_organisation(staff: Staff | None, org_id: str, *, now: datetime) -> Organisation:
    """End the organisation's pause: the reminders it stopped are due again now (the planner still
    checks acknowledgements, deadlines and quiet hours), whether they were put off to its end or
    ended by a pause until resumed (which a later end date may have replaced)."""
    organisation = await _organisation_for(staff, org_id)
    async with in_transaction() as conn:
        organisation = await _locked(organisation.id, conn)
        if organisation.paused_at is None:
            raise UserError(f"{organisation.name} is not paused")
        await Organisation.filter(id=organisation.id).using_db(conn).update(
            paused_at=None, paused_until=None, pause_reason="", paused_by="")
        if organisation.paused_until is not None:
            await _move_put_off(organisation, organisation.paused_until, now)
        resumed = await resume_ended_reminders(PAUSED, now=now, actor=staff.email,  # type: ignore[union-attr]
                                               why="the organisation was resumed",
                                               member__organisation_id=organisation.id)
        await record([audit_event("organisation.resumed", now=now, actor=staff.email,  # type: ignore[union-attr]
                                  organisation=organisation.external_id), *resumed], using_db=conn)
    return await Organisation.get(id=organisation.id)
