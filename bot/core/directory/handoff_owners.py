"""Open hand-offs follow their organisation's CAM.

A question handed off to a CAM is filed under them (`Question.cam`): their `questions` list and
console page, the reply they may send, and whom the partner is told it is with. When the directory
names another CAM for the organisation (an import), or the CAM it names becomes active staff
(`add_staff`), or the CAM they are filed under loses the role (made compliance, deactivated),
the organisation's open hand-offs move to that CAM, each with a `question.reassigned` audit event.
Answered hand-offs stay with the CAM they were filed under; while the directory names nobody who
may act as CAM (not staff, inactive, a compliance officer), open hand-offs stay where they are
and `herald doctor` flags them: admins see and may answer every open hand-off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.core.compliance.audit import PendingEvent, audit_event
from bot.core.directory.permissions import SENDERS
from storage.models import Organisation, Question, Staff


async def follow_organisation_cams(organisation_ids: Iterable[int], *, now: datetime,
                                   actor: str) -> list[PendingEvent]:
    """Move the open hand-offs of these organisations to the active CAM or admin each one names
    as its CAM, if any. Returns the `question.reassigned` events, for the caller to record in the
    transaction that changed the organisations or the staff (this runs in it)."""
    ids = sorted(set(organisation_ids))
    if not ids:
        return []
    rows = await Question.filter(handoff_status="open", member__organisation__id__in=ids).order_by("id").values(
        "id", "cam_id", "member_id", "member__organisation__cam_email")
    named = {(r["member__organisation__cam_email"] or "").strip().lower() for r in rows} - {""}
    if not named:
        return []
    cams = {s.email: s for s in await Staff.filter(email__in=sorted(named), active=True, role__in=sorted(SENDERS))}
    before = {s.id: s.email for s in await Staff.filter(id__in=sorted({r["cam_id"] for r in rows if r["cam_id"]}))}
    events = []
    for row in rows:
        cam = cams.get((row["member__organisation__cam_email"] or "").strip().lower())
        if cam is None or cam.id == row["cam_id"]:
            continue
        if await Question.filter(id=row["id"], handoff_status="open", cam_id=row["cam_id"]).update(cam_id=cam.id):
            events.append(audit_event("question.reassigned", now=now, actor=actor, member_id=row["member_id"],
                                      question_id=row["id"], from_cam=before.get(row["cam_id"]), cam=cam.email,
                                      reason="the organisation's CAM changed"))
    return events


@dataclass(frozen=True)
class UnansweredOwners:
    """What `herald doctor` flags: partners whose hand-offs nobody named can answer."""

    organisations: list[str]  # external ids: the directory names a CAM who is not an active CAM or admin
    open_handoffs: int  # open hand-offs (of active members) filed under someone who may no longer answer


async def unanswerable_ownership() -> UnansweredOwners:
    """Organisations whose `cam_email` names nobody who may act as CAM (not staff, inactive, a
    compliance officer): their partners' Ask my CAM is refused and their escalations go to the
    notice's author. And open hand-offs still filed under someone who lost the role: only an
    admin can answer those until the directory names a CAM who may."""
    able = {e.lower() for e in await Staff.filter(active=True, role__in=sorted(SENDERS)).values_list("email", flat=True)}
    organisations = sorted(external_id for external_id, cam_email in await Organisation.exclude(cam_email="").values_list(
        "external_id", "cam_email") if cam_email.strip().lower() not in able)
    able_ids = await Staff.filter(active=True, role__in=sorted(SENDERS)).values_list("id", flat=True)
    stuck = await Question.filter(handoff_status="open", member__active=True).exclude(cam_id__in=able_ids).count()
    return UnansweredOwners(organisations, stuck)
