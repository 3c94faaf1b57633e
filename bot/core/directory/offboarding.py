"""Taking a staff member's access away (`herald staff remove EMAIL`), and what they leave behind.

Every check already refuses an inactive staff member (chat, console, API, report links), so the
core of offboarding is `active = False`. What would otherwise outlive it, or come back with a
later `herald staff add` (which reactivates), is ended here in the same transaction: console
sessions and unused sign-in links, API tokens (revoked for good), and the open hand-offs filed
under them (moved to their organisation's current CAM, as `follow_organisation_cams` does; those
whose organisation names nobody able stay for an admin, and `herald doctor` flags them). Their
scheduled notices are then failed with the reason, each audited. Their Slack and Teams ids stay
on file: an inactive person is not recognised on either platform, and a reactivation needs no
re-linking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tortoise.transactions import in_transaction

from bot.common.errors import UserError
from bot.core.compliance.audit import audit_event, record
from bot.core.directory.handoff_owners import follow_organisation_cams
from bot.core.directory.importer import normalise_email
from bot.core.notices.sending import fail_scheduled_of
from storage.models import ApiToken, ConsoleSession, ConsoleSignIn, Question, Staff


@dataclass
class Offboarded:
    staff: Staff
    was_active: bool
    sessions_ended: int = 0
    links_expired: int = 0
    tokens_revoked: int = 0
    handoffs_moved: int = 0
    handoffs_left: int = 0  # open, still filed under them: their organisation names nobody able
    notices_failed: list[int] = field(default_factory=list)


async def remove_staff(email: str, *, now: datetime, actor: str) -> Offboarded:
    """Deactivate the staff member with this e-mail and end what they could still use. Running it
    again on an inactive person changes nothing and records nothing new."""
    try:
        address = normalise_email(email)
    except ValueError as exc:
        raise UserError(f"'{email.strip()}' is not a valid e-mail address: {exc}") from None
    staff = await Staff.get_or_none(email=address)
    if staff is None:
        raise UserError(f"no staff member with e-mail '{address}'")
    async with in_transaction() as conn:
        was_active = bool(await Staff.filter(id=staff.id, active=True).using_db(conn).update(active=False))
        done = Offboarded(staff, was_active)
        done.sessions_ended = await ConsoleSession.filter(staff_id=staff.id, ended_at__isnull=True).using_db(
            conn).update(ended_at=now)
        done.links_expired = await ConsoleSignIn.filter(staff_id=staff.id, used_at__isnull=True,
                                                        expires_at__gt=now).using_db(conn).update(expires_at=now)
        done.tokens_revoked = await ApiToken.filter(staff_id=staff.id, revoked_at__isnull=True).using_db(
            conn).update(revoked_at=now)
        filed = Question.filter(handoff_status="open", cam_id=staff.id)
        organisations = await filed.values_list("member__organisation_id", flat=True)
        moved = await follow_organisation_cams((o for o in organisations if o is not None), now=now, actor=actor)
        done.handoffs_moved = len(moved)
        done.handoffs_left = await Question.filter(handoff_status="open", cam_id=staff.id,
                                                   member__active=True).count()
        if was_active or done.sessions_ended or done.links_expired or done.tokens_revoked or moved:
            await record([audit_event("staff.deactivated", now=now, actor=actor, staff_id=staff.id, email=address,
                                      role=staff.role, sessions_ended=done.sessions_ended,
                                      links_expired=done.links_expired, tokens_revoked=done.tokens_revoked,
                                      handoffs_moved=done.handoffs_moved, handoffs_left=done.handoffs_left),
                          *moved], using_db=conn)
    staff.active = False
    done.notices_failed = await fail_scheduled_of(staff, now=now, actor=actor)
    return done
