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
