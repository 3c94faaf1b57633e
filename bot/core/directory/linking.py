"""Linking people who talk to Herald on a platform to the directory (members) and to staff.

Teams gives us a conversation reference at install time or first message; storing it is what
makes proactive delivery possible later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.transactions import in_transaction

from bot.core.compliance.audit import audit_event, record
from storage.models import Member, Platform, PlatformAccount, Staff


@dataclass(frozen=True)
class TeamsIdentity:
    tenant_id: str
    aad_object_id: str
    conversation_id: str
    service_url: str
    email: str = ""  # from the roster, when the platform tells us
    name: str = ""


@dataclass(frozen=True)
class LinkResult:
    member: Member | None
    staff: Staff | None
    created: bool  # a new platform account was stored for a member


async def link_teams_identity(identity: TeamsIdentity, *, now: datetime) -> LinkResult:
    """Store the conversation reference for whoever this is: a directory member (by AAD object id,
    else by e-mail) and/or a staff member (by AAD object id, else by e-mail). Idempotent."""
    aad = identity.aad_object_id.lower()
    tenant = identity.tenant_id.lower()
    member, created = await _link_member(identity, aad, tenant, now=now)
    staff = await _link_staff(identity, aad, tenant)
    return LinkResult(member, staff, created)


async def _link_member(identity: TeamsIdentity, aad: str, tenant: str, *, now: datetime) -> tuple[Member | None, bool]:
    account = await PlatformAccount.filter(platform=Platform.TEAMS.value, workspace_external_id=tenant,
                                           user_id=aad).select_related("member").first()
    if account is not None:
        if (account.dm_channel, account.service_url) != (identity.conversation_id, identity.service_url):
            account.dm_channel, account.service_url = identity.conversation_id, identity.service_url
            await account.save(update_fields=["dm_channel", "service_url", "updated_at"])
        return account.member, False
    if not identity.email:
        return None, False
    member = await Member.filter(email=identity.email.lower(), active=True).first()
    if member is None:
        return None, False
    async with in_transaction() as conn:
        await PlatformAccount.create(member=member, platform=Platform.TEAMS.value, workspace_external_id=tenant,
                                     user_id=aad, dm_channel=identity.conversation_id,
                                     service_url=identity.service_url, using_db=conn)
        await record([audit_event("member.linked", now=now, actor=member.email, member_id=member.id,
                                  platform="teams", tenant=tenant, matched_by="email")], using_db=conn)
    return member, True


async def _link_staff(identity: TeamsIdentity, aad: str, tenant: str) -> Staff | None:
    staff = await Staff.filter(teams_aad_object_id=aad, active=True).first()
    if staff is None and identity.email:
        staff = await Staff.filter(email=identity.email.lower(), active=True).first()
    if staff is None:
        return None
    wanted = {"teams_aad_object_id": aad, "teams_tenant_id": tenant,
              "teams_conversation_id": identity.conversation_id, "teams_service_url": identity.service_url}
    changed = [k for k, v in wanted.items() if getattr(staff, k) != v]
    if changed:
        for key in changed:
            setattr(staff, key, wanted[key])
        await staff.save(update_fields=[*changed, "updated_at"])
    return staff


async def staff_for_teams(tenant_id: str, aad_object_id: str) -> Staff | None:
    return await Staff.filter(teams_aad_object_id=aad_object_id.lower(), active=True).first()
