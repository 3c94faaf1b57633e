"""The workspaces of an Enterprise Grid organisation that Herald's org-wide install may act in.

An org-wide install is one Workspace row under the org's enterprise id (E...), whose token serves
every workspace of the org the Org Admin added Herald to. Slack says which ones: auth.teams.list
("the workspaces your org-wide app has been approved for") at the install, then the
team_access_granted / team_access_revoked events. Herald keeps them (`SlackOrgTeam`), so a
directory entry, a staff row or a request naming one of those workspaces (T...) is served by the
org's installation: its token, its delivery lane, its members (user ids are org-wide).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from tortoise.transactions import in_transaction

from bot.core.compliance.audit import audit_event, record
from storage.models import Platform, PlatformAccount, SlackOrgTeam, Staff, Workspace

GRANTED = "workspace.team_access_granted"
REVOKED = "workspace.team_access_revoked"


async def grant_teams(enterprise_id: str, teams: Iterable[tuple[str, str]], *, now: datetime,
                      actor: str) -> list[str]:
    """The org-wide install of `enterprise_id` may act in these (team id, name) workspaces: stored,
    with an audit event naming the ones that are new to it. Idempotent. Returns the new ones."""
    wanted = {team_id: name for team_id, name in teams if team_id.startswith("T")}
    if not wanted:
        return []
    async with in_transaction() as conn:
        known = dict(await SlackOrgTeam.filter(team_id__in=list(wanted)).using_db(conn).values_list(
            "team_id", "enterprise_id"))
        added = sorted(t for t in wanted if known.get(t) != enterprise_id)
        for team_id in added:
            if team_id in known:  # moved from another org (Slack lets an org's workspaces be moved)
                await SlackOrgTeam.filter(team_id=team_id).using_db(conn).update(
                    enterprise_id=enterprise_id, name=wanted[team_id][:200], granted_at=now)
            else:
                await SlackOrgTeam.create(team_id=team_id, enterprise_id=enterprise_id, name=wanted[team_id][:200],
                                          granted_at=now, using_db=conn)
        if added:
            await record([audit_event(GRANTED, now=now, actor=actor, platform=Platform.SLACK.value,
                                      workspace=enterprise_id, teams=added)], using_db=conn)
    return added


async def revoke_teams(enterprise_id: str, team_ids: Iterable[str], *, now: datetime, actor: str) -> list[str]:
    """The org-wide install of `enterprise_id` may no longer act in these workspaces (an Org Admin
    removed Herald from them). Idempotent. Returns the ones it had."""
    async with in_transaction() as conn:
        gone = sorted(await SlackOrgTeam.filter(enterprise_id=enterprise_id, team_id__in=list(team_ids)).using_db(
            conn).values_list("team_id", flat=True))
        if gone:
            await SlackOrgTeam.filter(enterprise_id=enterprise_id, team_id__in=gone).using_db(conn).delete()
            await record([audit_event(REVOKED, now=now, actor=actor, platform=Platform.SLACK.value,
                                      workspace=enterprise_id, teams=gone)], using_db=conn)
    return gone


async def org_install_of(team_id: str) -> str | None:
    """The enterprise id of the org-wide install serving workspace `team_id`, when Herald has no
    installation of its own there (a workspace install's row wins) and the org granted it one."""
    if not team_id.startswith("T"):
        return None
    if await Workspace.filter(platform=Platform.SLACK.value, external_id=team_id).exists():
        return None
    granted = await SlackOrgTeam.get_or_none(team_id=team_id)
    return granted.enterprise_id if granted is not None else None


async def installs_of(team_ids: Iterable[str]) -> dict[str, str]:
    """team id -> the enterprise id of the org-wide install serving it (`org_install_of`), for the
    workspaces among `team_ids` that have one: two queries, whatever their number."""
    wanted = sorted({t for t in team_ids if t.startswith("T")})
    if not wanted:
        return {}
    granted = dict(await SlackOrgTeam.filter(team_id__in=wanted).values_list("team_id", "enterprise_id"))
    own = set(await Workspace.filter(platform=Platform.SLACK.value, external_id__in=list(granted)).values_list(
        "external_id", flat=True)) if granted else set()
    return {team: org for team, org in granted.items() if team not in own}


async def org_team_ids(enterprise_id: str) -> list[str]:
    """The workspaces the org-wide install of `enterprise_id` was granted."""
    return sorted(await SlackOrgTeam.filter(enterprise_id=enterprise_id).values_list("team_id", flat=True))


async def directory_ids(enterprise_id: str, *team_ids: str) -> Sequence[str]:
    """Every id the directory may file a member or a staff member of the org under: the org's
    enterprise id, then the workspaces named (where they act), then the others it was granted."""
    granted = await org_team_ids(enterprise_id)
    return list(dict.fromkeys([enterprise_id, *(t for t in team_ids if t), *granted]))


async def filed_under(user_id: str, ids: Sequence[str]) -> str | None:
    """The first of `ids` (`directory_ids`) the directory files this Slack user under, as an
    active member's account or an active staff member; None when it names them under none."""
    accounts = await PlatformAccount.filter(platform=Platform.SLACK.value, user_id=user_id, member__active=True,
                                            workspace_external_id__in=list(ids)).values_list(
        "workspace_external_id", flat=True)
    staff = await Staff.filter(slack_user_id=user_id, slack_team_id__in=list(ids), active=True).values_list(
        "slack_team_id", flat=True)
    found = {*accounts, *staff}
    return next((i for i in ids if i in found), None)
