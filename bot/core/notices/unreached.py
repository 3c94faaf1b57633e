"""The partners a notice's audience matched that get no copy of it, and why.

A report is compliance's proof that a notice reached every partner it was for. Its roll-up per
organisation is read from the copies written, so a partner that got none (its one contact left,
nobody there in the topic's roles, everyone opted out) would simply be absent, and the list read
as complete. `publish` records those partners on the notice with the reason, as of the send (the
directory changes afterwards), and audits them in `notice.sent`; the report lists each one with
0 recipients.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from tortoise import connections

from bot.core.directory.audiences import Audience, matched_organisation_ids
from storage import db as storage_db
from storage.models import UnreachedReason


@dataclass(frozen=True)
class Unreached:
    """How many organisations the audience matched, and those without a copy by reason."""

    matched: int
    by_reason: dict[str, list[int]] = field(default_factory=dict)  # UnreachedReason -> organisation ids

    def organisation_ids(self) -> list[int]:
        return sorted(i for ids in self.by_reason.values() for i in ids)


async def unreached_organisations(audience: Audience, reached: Iterable[int | None],
                                  opted_out: Collection[int]) -> Unreached:
    """The organisations `audience` matches (`matched_organisation_ids`) that none of the copies
    about to be written (`reached`: their organisation ids) goes to. `opted_out`: the members
    left out because they left the topic."""
    matched = await matched_organisation_ids(audience)
    copied = set(reached)
    missing = [org_id for org_id in matched if org_id not in copied]
    if not missing:
        return Unreached(len(matched))
    left_topic = await _organisations_of_members(opted_out) if opted_out else set()
    staffed = await _with_an_active_member(missing)
    by_reason: dict[str, list[int]] = {}
    for org_id in missing:
        if org_id in left_topic:
            reason = UnreachedReason.OPTED_OUT
        elif org_id in staffed:
            reason = UnreachedReason.NOT_IN_AUDIENCE
        else:
            reason = UnreachedReason.NO_ACTIVE_MEMBER
        by_reason.setdefault(reason.value, []).append(org_id)
    return Unreached(len(matched), by_reason)


async def audit_fields(unreached: Unreached) -> dict[str, Any]:
    """For `notice.sent`: how many organisations were matched and, when some got no copy, their
    directory ids by reason (what compliance asks about: which partner, and why)."""
    fields: dict[str, Any] = {"organisations_matched": unreached.matched}
    if unreached.by_reason:
        where, param = storage_db.in_ids("id", unreached.organisation_ids())
        external = {r["id"]: r["external_id"] for r in await connections.get("default").execute_query_dict(
            storage_db.placeholders(f"SELECT id, external_id FROM organisation WHERE {where}"), [param])}
        fields["organisations_unreached"] = {reason: sorted(external[i] for i in ids)
                                             for reason, ids in sorted(unreached.by_reason.items())}
    return fields


async def _organisations_of_members(member_ids: Collection[int]) -> set[int]:
    where, param = storage_db.in_ids("id", list(member_ids))
    rows = await connections.get("default").execute_query_dict(storage_db.placeholders(
        f"SELECT DISTINCT organisation_id FROM member WHERE {where}"), [param])
    return {r["organisation_id"] for r in rows}


async def _with_an_active_member(organisation_ids: list[int]) -> set[int]:
    where, param = storage_db.in_ids("organisation_id", organisation_ids)
    rows = await connections.get("default").execute_query_dict(storage_db.placeholders(
        f"SELECT DISTINCT organisation_id FROM member WHERE active = ? AND {where}"), [True, param])
    return {r["organisation_id"] for r in rows}
