"""Vendor staff (CAMs, compliance officers, admins): upsert and look-ups."""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from bot.common.errors import UserError
from bot.core.compliance.audit import audit_event, record
from bot.core.directory.handoff_owners import follow_organisation_cams
from bot.core.directory.importer import normalise_email
from bot.core.directory.permissions import SENDERS
from storage.models import Organisation, Question, Staff, StaffRole

_ROLES = tuple(role.value for role in StaffRole)


async def add_staff(
    email: str,
    role: str,
    *,
    name: str = "",
    slack_user: str = "",
    slack_team: str = "",
    teams_aad: str = "",
    now: datetime,
    actor: str = "cli",
) -> tuple[Staff, bool]:
    """Create or update the staff member with this e-mail; returns (staff, created).

    On update, the role is always set and the person is made active again; name and platform
    ids are only changed when given (an empty argument keeps the stored value).
    """
    try:
        address = normalise_email(email)
    except ValueError as exc:
        raise UserError(f"'{email.strip()}' is not a valid e-mail address: {exc}") from None
    role_value = role.strip().lower()
    if role_value not in _ROLES:
        raise UserError(f"unknown staff role '{role.strip()}'; use one of: {', '.join(_ROLES)}")
    name, slack_user, slack_team = name.strip(), slack_user.strip().upper(), slack_team.strip().upper()  # as Slack sends them
    teams_aad = teams_aad.strip().lower()  # Teams sends AAD object ids as lower-case GUIDs
    if bool(slack_user) != bool(slack_team):
        raise UserError("give both the Slack team id and the Slack user id, or neither")

    wanted: dict[str, object] = {"role": role_value, "active": True}
    if name:
        wanted["name"] = name
    if slack_user:
        wanted["slack_team_id"] = slack_team
        wanted["slack_user_id"] = slack_user
    if teams_aad:
        wanted["teams_aad_object_id"] = teams_aad

    async with in_transaction():
        staff = await Staff.get_or_none(email=address)
        created = staff is None
        if staff is None:
            staff = await Staff.create(email=address, **wanted)
            changed = sorted(wanted)
        else:
            changed = sorted(k for k, v in wanted.items() if getattr(staff, k) != v)
            if changed:
                for key in changed:
                    setattr(staff, key, wanted[key])
                await staff.save(update_fields=[*changed, "updated_at"])
        reassigned = await follow_organisation_cams(await _organisations_concerned(staff), now=now, actor=actor)
        await record([audit_event("staff.added" if created else "staff.updated", now=now, actor=actor,
                                  staff_id=staff.id, email=address, role=role_value, changed=changed), *reassigned])
    return staff, created


async def _organisations_concerned(staff: Staff) -> set[int]:
    """Organisations whose open hand-offs may change hands when this person's role or state does:
    those that name them as CAM (now active: their hand-offs go to them) and those of the open
    hand-offs filed under them (no longer a CAM: they go to the organisation's current CAM)."""
    named = await Organisation.filter(cam_email__iexact=staff.email).values_list("id", flat=True)
    filed = await Question.filter(handoff_status="open", cam_id=staff.id).values_list(
        "member__organisation_id", flat=True)
    return {*named, *(org for org in filed if org is not None)}


async def list_staff() -> list[Staff]:
    """Every staff member, active or not, by e-mail."""
    return await Staff.all().order_by("email")


async def staff_for_slack(team_id: str, user_id: str) -> Staff | None:
    """The active staff member with this Slack identity, if any."""
    if not team_id or not user_id:
        return None
    return (
        await Staff.filter(slack_team_id=team_id, slack_user_id=user_id, active=True)
        .order_by("id")
        .first()
    )


async def cam_for_organisation(org: Organisation) -> Staff | None:
    """The staff member named as the organisation's CAM, if they may act as one (active, cam or
    admin role: `permissions.SENDERS`). A compliance officer or an inactive person the directory
    still names gets no hand-offs or escalations: they could not answer them."""
    if not org.cam_email:
        return None
    return await Staff.get_or_none(email=org.cam_email.strip().lower(), active=True, role__in=sorted(SENDERS))
