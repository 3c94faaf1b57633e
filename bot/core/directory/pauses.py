"""Pausing a partner organisation's automated reminders and nudges (must-know notices still go out)."""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.compliance.audit import audit_event, record
from bot.core.directory.permissions import may_act_for_partner
from bot.core.notices.reminders import PAUSED
from bot.core.notices.rejoining import resume_ended_reminders
from storage.models import Delivery, Member, Organisation, Staff


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
    organisation = await _organisation_for(staff, org_id)
    if until is not None and until <= now:
        raise UserError("the pause must end in the future")
    async with in_transaction() as conn:
        await Organisation.filter(id=organisation.id).using_db(conn).update(
            paused_at=now, paused_until=until, pause_reason=reason[:500], paused_by=staff.email)  # type: ignore[union-attr]
        await record([audit_event("organisation.paused", now=now, actor=staff.email,  # type: ignore[union-attr]
                                  organisation=organisation.external_id, until=until, reason=reason)], using_db=conn)
    return await Organisation.get(id=organisation.id)


async def resume_organisation(staff: Staff | None, org_id: str, *, now: datetime) -> Organisation:
    organisation = await _organisation_for(staff, org_id)
    if organisation.paused_at is None:
        raise UserError(f"{organisation.name} is not paused")
    async with in_transaction() as conn:
        await Organisation.filter(id=organisation.id).using_db(conn).update(
            paused_at=None, paused_until=None, pause_reason="", paused_by="")
        resumed = []
        if organisation.paused_until is not None:
            # the reminder planner put the reminders due during the pause off to its end: due
            # again now (the planner still checks acknowledgements, deadlines and quiet hours)
            members = await Member.filter(organisation_id=organisation.id).using_db(conn).values_list("id", flat=True)
            await Delivery.filter(member_id__in=list(members), next_reminder_at=organisation.paused_until,
                                  ).using_db(conn).update(next_reminder_at=now)
        else:
            # paused until resumed: the planner ended the reminders (not looked at hourly): due again
            resumed = await resume_ended_reminders(PAUSED, now=now, actor=staff.email,  # type: ignore[union-attr]
                                                   why="the organisation was resumed",
                                                   member__organisation_id=organisation.id)
        await record([audit_event("organisation.resumed", now=now, actor=staff.email,  # type: ignore[union-attr]
                                  organisation=organisation.external_id), *resumed], using_db=conn)
    return await Organisation.get(id=organisation.id)
