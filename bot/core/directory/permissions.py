"""Who may do what. Every command goes through one of these checks."""

from __future__ import annotations

from bot.common.errors import PermissionDenied
from storage.models import Staff, StaffRole

SENDERS = {StaffRole.CAM.value, StaffRole.ADMIN.value}
VIEWERS = {StaffRole.CAM.value, StaffRole.ADMIN.value, StaffRole.COMPLIANCE.value}


def require_sender(staff: Staff | None) -> Staff:
    if staff is None or not staff.active or staff.role not in SENDERS:
        raise PermissionDenied("Only channel account managers and admins can send notices. "
                               "Ask an admin to run `herald staff add <email> --role cam`.")
    return staff


def may_act_as_cam(staff: Staff | None) -> bool:
    """Whether the person holds a role that changes things (send, remind, answer partners): an
    active CAM or admin. Compliance officers read everything and change nothing."""
    return staff is not None and staff.active and staff.role in SENDERS


def named_as_cam(staff: Staff, cam_email: str | None) -> bool:
    """Whether the directory's `cam_email` of an organisation names this staff member (any case)."""
    return bool(cam_email) and cam_email.strip().lower() == staff.email.strip().lower()  # type: ignore[union-attr]


def may_act_for_partner(staff: Staff | None, *, cam_email: str | None, owner_id: int | None = None) -> bool:
    """May `staff` act as the CAM on something of a partner organisation (Remind now, a hand-off's
    reply, teaching the knowledge base, a pause): an admin on anything; a CAM on what is theirs
    (`owner_id`: the notice they wrote, the question filed under them) or on the organisation
    whose CAM the directory names them (`cam_email`). The role comes first: a compliance officer
    or an inactive staff member may do none of it, whatever they wrote or the directory says."""
    if not may_act_as_cam(staff):
        return False
    assert staff is not None
    if staff.role == StaffRole.ADMIN.value:
        return True
    return (owner_id is not None and owner_id == staff.id) or named_as_cam(staff, cam_email)


def require_viewer(staff: Staff | None) -> Staff:
    if staff is None or not staff.active or staff.role not in VIEWERS:
        raise PermissionDenied("Only Herald staff (CAMs, compliance, admins) can see notice status.")
    return staff


def partner_scope(staff: Staff | None) -> str | None:
    """Which partner organisations a person's directory and engagement views cover: None for
    all of them (admins and compliance), else the CAM's e-mail, meaning the organisations that
    name them as CAM (the rule `pause`, `progress` and hand-offs apply)."""
    staff = require_viewer(staff)
    if staff.role in (StaffRole.ADMIN.value, StaffRole.COMPLIANCE.value):
        return None
    return staff.email.strip().lower()
