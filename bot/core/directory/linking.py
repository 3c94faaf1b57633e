"""Linking people who talk to Herald on a platform to the directory (members) and to staff.

Teams gives us a conversation reference at install time or first message; storing it is what
makes proactive delivery possible later.

Who may be linked by e-mail: the roster's `email` is the user's mail attribute, which the admin of
the sender's tenant sets as they like, so an address alone proves nothing across tenants. A member
is linked by address only from a tenant the directory already knows for their organisation, or,
for an organisation with no Teams tenant known yet, by their userPrincipalName (its domain is
verified in the sender's tenant). Staff are linked by address only from the vendor's own tenant,
and only on first contact: a staff member already bound to an AAD object id is never rebound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.core.compliance.audit import audit_event, record
from storage.models import Member, Platform, PlatformAccount, Staff


@dataclass(frozen=True)
class TeamsIdentity:
    tenant_id: str
    aad_object_id: str
    conversation_id: str
    service_url: str
    email: str = ""  # the roster's `email` (the user's mail attribute: set by their tenant's admin)
    name: str = ""
    upn: str = ""  # the roster's userPrincipalName (its domain is verified in the sender's tenant)


@dataclass(frozen=True)
class LinkResult:
    member: Member | None
    staff: Staff | None
    created: bool  # a new platform account was stored for a member


async def link_teams_identity(identity: TeamsIdentity, *, now: datetime,
                              staff_tenants: frozenset[str] = frozenset()) -> LinkResult:
    """Store the conversation reference for whoever this is: a directory member (by AAD object id,
    else by e-mail, see the module) and/or a staff member (by AAD object id, else by e-mail from one
    of `staff_tenants`, the vendor's own; see `vendor_tenants`). Idempotent."""
    aad = identity.aad_object_id.lower()
    tenant = identity.tenant_id.lower()
    member, created = await _link_member(identity, aad, tenant, now=now)
    staff = await _link_staff(identity, aad, tenant, staff_tenants, now=now)
    return LinkResult(member, staff, created)


async def vendor_tenants(configured: str | None) -> frozenset[str]:
    """The tenants staff may be linked from by e-mail: the app's own (`HERALD_TEAMS_TENANT_ID`), else
    those of staff already linked by AAD object id (`herald staff add --teams-aad`)."""
    if configured:
        return frozenset({configured.lower()})
    tenants = await Staff.filter(active=True).exclude(teams_tenant_id="").exclude(teams_aad_object_id="") \
        .distinct().values_list("teams_tenant_id", flat=True)
    return frozenset(str(t).lower() for t in tenants)


async def _link_member(identity: TeamsIdentity, aad: str, tenant: str, *, now: datetime) -> tuple[Member | None, bool]:
    known = await _refresh_account(identity, aad, tenant)
    if known is not None:
        return known, False
    member = await _member_by_address(identity, tenant)
    if member is None:
        return None, False
    try:
        async with in_transaction() as conn:
            await PlatformAccount.create(member=member, platform=Platform.TEAMS.value, workspace_external_id=tenant,
                                         user_id=aad, dm_channel=identity.conversation_id,
                                         service_url=identity.service_url, using_db=conn)
            await record([audit_event("member.linked", now=now, actor=member.email, member_id=member.id,
                                      platform="teams", tenant=tenant, matched_by="email")], using_db=conn)
    except IntegrityError:
        # A personal install sends a conversationUpdate and an installationUpdate together: the
        # other one (another task or replica) linked this person first, and audited it.
        linked = await _refresh_account(identity, aad, tenant)
        if linked is None:
            raise  # not that race (e.g. the member was deleted meanwhile)
        return linked, False
    return member, True


async def _refresh_account(identity: TeamsIdentity, aad: str, tenant: str) -> Member | None:
    """The member of this sender's stored Teams account (None if there is none yet), with the
    conversation reference brought up to date."""
    account = await PlatformAccount.filter(platform=Platform.TEAMS.value, workspace_external_id=tenant,
                                           user_id=aad).select_related("member").first()
    if account is None:
        return None
    if (account.dm_channel, account.service_url) != (identity.conversation_id, identity.service_url):
        account.dm_channel, account.service_url = identity.conversation_id, identity.service_url
        await account.save(update_fields=["dm_channel", "service_url", "updated_at"])
    return account.member


async def _member_by_address(identity: TeamsIdentity, tenant: str) -> Member | None:
    """The member this sender's roster address names, if the sender's tenant may speak for them."""
    upn, email = identity.upn.lower(), identity.email.lower()
    for address in dict.fromkeys(a for a in (upn, email) if a):
        # the same address may be a member of two partners: the one whose organisation the tenant speaks for
        for member in await Member.filter(email=address, active=True).order_by("id"):
            org_tenants = set(await PlatformAccount.filter(
                platform=Platform.TEAMS.value, member__organisation_id=member.organisation_id,
            ).distinct().values_list("workspace_external_id", flat=True))
            if tenant in org_tenants or (not org_tenants and address == upn):
                return member
    return None


async def _link_staff(identity: TeamsIdentity, aad: str, tenant: str, staff_tenants: frozenset[str], *,
                      now: datetime) -> Staff | None:
    staff = await staff_for_teams(tenant, aad)
    if staff is None and tenant in staff_tenants:
        for address in dict.fromkeys(a.lower() for a in (identity.upn, identity.email) if a):
            staff = await Staff.filter(email=address, active=True, teams_aad_object_id="").first()
            if staff is not None:
                break
    if staff is None:
        return None
    wanted = {"teams_aad_object_id": aad, "teams_tenant_id": tenant,
              "teams_conversation_id": identity.conversation_id, "teams_service_url": identity.service_url}
    changed = {k: v for k, v in wanted.items() if getattr(staff, k) != v}
    if not changed:
        return staff
    if not BINDING & changed.keys():  # the same person in a new conversation: nothing to audit
        await Staff.filter(id=staff.id).update(**changed, updated_at=now)
    elif not await _bind_staff(staff, changed, now=now):
        # A personal install sends a conversationUpdate and an installationUpdate together: the
        # other one (another task or replica) bound this staff member first, and audited it.
        return await staff_for_teams(tenant, aad)
    for key, value in changed.items():
        setattr(staff, key, value)
    return staff


BINDING = frozenset({"teams_aad_object_id", "teams_tenant_id"})  # who a staff member is on Teams


async def _bind_staff(staff: Staff, changed: dict[str, str], *, now: datetime) -> bool:
    """Write `changed` (a new binding, see BINDING) and audit it, only while the staff row is
    bound as `staff` was read; False (nothing written) when a concurrent link changed it first."""
    async with in_transaction() as conn:
        bound = await Staff.filter(id=staff.id, **{key: getattr(staff, key) for key in BINDING}).using_db(conn) \
            .update(**changed, updated_at=now)
        if bound:
            await record([audit_event("staff.teams_linked", now=now, actor=staff.email, platform="teams",
                                      tenant=changed.get("teams_tenant_id", staff.teams_tenant_id),
                                      aad_object_id=changed.get("teams_aad_object_id", staff.teams_aad_object_id))],
                         using_db=conn)
    return bool(bound)


async def staff_for_teams(tenant_id: str, aad_object_id: str) -> Staff | None:
    """Staff bound to this AAD object id, in this tenant (or with no tenant stored yet)."""
    return await Staff.filter(Q(teams_tenant_id="") | Q(teams_tenant_id=tenant_id.lower()),
                              teams_aad_object_id=aad_object_id.lower(), active=True).first()
