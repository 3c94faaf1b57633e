"""Members' quiet hours as Herald applies them to what it writes for them.

A need-to-know copy written while its member is in their quiet hours is due when those hours end
(sending, rolling an A/B winner out, re-sending to a member who rejoins, restoring a workspace's
copies); a journey step or digest the outbox gets to outside them waits likewise
(bot.core.delivery.messages). The rule itself (`next_working_moment`) is in bot.common.schedule;
this reads the members' zones and hours for it.
"""

from __future__ import annotations

from datetime import datetime

from bot.common.schedule import next_working_moment
from storage.models import Member

_CHUNK = 5000  # members read per query


async def quiet_hours_ends(member_ids: list[int], now: datetime) -> dict[int, datetime]:
    """member id -> when their quiet hours end, for members in quiet hours now (weekends do not count)."""
    return await _hours_ends(member_ids, now, skip_weekends=False)


async def working_hours_ends(member_ids: list[int], now: datetime) -> dict[int, datetime]:
    """member id -> when their working hours begin, for members outside them now (quiet hours,
    weekends)."""
    return await _hours_ends(member_ids, now, skip_weekends=True)


async def _hours_ends(member_ids: list[int], now: datetime, *, skip_weekends: bool) -> dict[int, datetime]:
    ends: dict[int, datetime] = {}
    for start in range(0, len(member_ids), _CHUNK):
        chunk = member_ids[start:start + _CHUNK]
        for member_id, zone, quiet_start, quiet_end in await Member.filter(id__in=chunk).values_list(
                "id", "timezone", "quiet_start_hour", "quiet_end_hour"):
            moment = next_working_moment(now, zone, quiet_start=quiet_start, quiet_end=quiet_end,
                                         skip_weekends=skip_weekends)
            if moment > now:
                ends[member_id] = moment
    return ends
