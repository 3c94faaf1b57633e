"""Marking notices' engagement figures to be worked out again when the directory changes what
they are grouped by (a member's role; an organisation's tier, region or CAM): the clock
(`engagement.refresh_engagement`) then works out only those, instead of every notice of the year
once a day. Apart from `engagement` so the directory import can call it without an import cycle."""

from __future__ import annotations

from bot.core.insights.sql import execute
from storage.db import in_ids

RECOUNT = ""  # the fingerprint of figures marked to be worked out again (no fingerprint parses as it)


async def mark_for_recount(*, member_ids: list[int], organisation_ids: list[int]) -> None:
    """The directory changed the role of these members, or the tier, region or CAM of these
    organisations: the figures of the notices that reached them are worked out again by the next
    refresh (call it in the change's transaction, so the change and the mark are one). Notices
    that reached none of them are left as they are."""
    if not member_ids and not organisation_ids:
        return
    members, members_param = in_ids("m.id", member_ids)
    organisations, organisations_param = in_ids("m.organisation_id", organisation_ids)
    await execute(
        "UPDATE notice_engagement SET fingerprint = ? WHERE notice_id IN (SELECT d.notice_id FROM member m "
        f"JOIN delivery d ON d.member_id = m.id WHERE ({members} OR {organisations}) AND d.kind = 'notice')",
        [RECOUNT, members_param, organisations_param])
