"""The partner directory as the console lists it: organisations with their CAM, pause, members
and how many of them Herald can reach on each platform; one organisation's members.

A CAM sees the organisations that name them as CAM; compliance and admins see all
(`permissions.partner_scope`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.common.errors import NotFound, PermissionDenied
from bot.core.directory.permissions import partner_scope
from bot.core.insights.sql import as_datetime, rows
from storage.models import Staff

PAGE = 50


@dataclass(frozen=True)
class DirectoryFilter:
    text: str = ""  # part of the name or id
    tier: str = ""
    region: str = ""


@dataclass
class DirectoryPage:
    organisations: list[dict[str, Any]]
    next_offset: int | None
    tiers: list[str]
    regions: list[str]


def _scoped(where: list[str], params: list[Any], scope: str | None) -> None:
    if scope is not None:
        where.append("LOWER(o.cam_email) = ?")
        params.append(scope)


async def organisations(staff: Staff | None, wanted: DirectoryFilter, *, offset: int = 0,
                        limit: int = PAGE) -> DirectoryPage:
    scope = partner_scope(staff)
    where, params = ["1 = 1"], []
    _scoped(where, params, scope)
    if wanted.text:
        where.append("(LOWER(o.name) LIKE ? OR LOWER(o.external_id) LIKE ?)")
        pattern = "%" + wanted.text.lower().replace("%", "").replace("_", "") + "%"
        params += [pattern, pattern]
    for column, value in (("o.tier", wanted.tier), ("o.region", wanted.region)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    found = await rows(
        "SELECT o.id, o.external_id, o.name, o.tier, o.region, o.country, o.partner_type, o.cam_email, "
        "o.paused_at, o.paused_until, o.pause_reason FROM organisation o "
        f"WHERE {' AND '.join(where)} ORDER BY o.name, o.id LIMIT ? OFFSET ?", [*params, limit + 1, offset])
    page = found[:limit]
    reach = await _reach([o["id"] for o in page])
    for org in page:
        org["paused_at"], org["paused_until"] = as_datetime(org["paused_at"]), as_datetime(org["paused_until"])
        org.update(reach.get(org["id"], {"members": 0, "platforms": {}}))
    choices = await rows("SELECT DISTINCT o.tier, o.region FROM organisation o "
                         + ("WHERE LOWER(o.cam_email) = ?" if scope is not None else ""),
                         [scope] if scope is not None else [])
    return DirectoryPage(page, offset + limit if len(found) > limit else None,
                         sorted({c["tier"] for c in choices if c["tier"]}),
                         sorted({c["region"] for c in choices if c["region"]}))


async def _reach(org_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Active members per organisation, and how many have an account on each platform."""
    if not org_ids:
        return {}
    marks = ",".join("?" * len(org_ids))
    out: dict[int, dict[str, Any]] = {i: {"members": 0, "platforms": {}} for i in org_ids}
    for r in await rows(f"SELECT m.organisation_id AS org, COUNT(*) AS n FROM member m WHERE m.active "
                        f"AND m.organisation_id IN ({marks}) GROUP BY m.organisation_id", org_ids):
        out[r["org"]]["members"] = r["n"]
    for r in await rows("SELECT m.organisation_id AS org, pa.platform, COUNT(DISTINCT m.id) AS n FROM member m "
                        f"JOIN platform_account pa ON pa.member_id = m.id WHERE m.active AND m.organisation_id "
                        f"IN ({marks}) GROUP BY m.organisation_id, pa.platform", org_ids):
        out[r["org"]]["platforms"][r["platform"]] = r["n"]
    return out


async def organisation(staff: Staff | None, external_id: str, *, offset: int = 0,
                       limit: int = PAGE) -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
    """One organisation and a page of its members, each with the platforms Herald reaches them on."""
    scope = partner_scope(staff)
    found = await rows("SELECT o.id, o.external_id, o.name, o.tier, o.region, o.country, o.industry, o.size, "
                       "o.partner_type, o.cam_email, o.paused_at, o.paused_until, o.pause_reason, o.paused_by "
                       "FROM organisation o WHERE o.external_id = ?", [external_id])
    if not found:
        raise NotFound(f"no partner organisation has the id '{external_id}'")
    org = found[0]
    if scope is not None and org["cam_email"].strip().lower() != scope:
        raise PermissionDenied(f"Only {org['name']}'s CAM, compliance and admins can see it.")
    org["paused_at"], org["paused_until"] = as_datetime(org["paused_at"]), as_datetime(org["paused_until"])
    members = await rows(
        "SELECT m.id, m.name, m.email, m.role, m.timezone, m.active, m.joined_at, m.preferred_platform, "
        "m.digest_frequency FROM member m WHERE m.organisation_id = ? ORDER BY m.name, m.email LIMIT ? OFFSET ?",
        [org["id"], limit + 1, offset])
    page = members[:limit]
    if page:
        marks = ",".join("?" * len(page))
        platforms: dict[int, list[str]] = {}
        for r in await rows(f"SELECT member_id, platform FROM platform_account WHERE member_id IN ({marks}) "
                            "ORDER BY platform", [m["id"] for m in page]):
            platforms.setdefault(r["member_id"], []).append(r["platform"])
        for m in page:
            m["platforms"] = platforms.get(m["id"], [])
            m["joined_at"] = as_datetime(m["joined_at"])
    return org, page, offset + limit if len(members) > limit else None
