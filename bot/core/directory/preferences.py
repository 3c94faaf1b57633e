"""A partner member's own delivery preferences: topic subscriptions, digest frequency, quiet hours
and time zone.

The chat surfaces (Slack App Home, the Teams card) read and write through this module only.
Opt-outs apply to nice-to-know and need-to-know notices of topics whose catalog entry allows it
(`opt_out: true`); must-know notices always arrive (see `bot.core.notices.publish`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, UserError
from bot.common.schedule import DEFAULT_QUIET_END, DEFAULT_QUIET_START
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.messages import retime_held_messages
from bot.core.delivery.notice_rows import MemberHours, retime_held_copies
from bot.topics import ImportancePolicy, Topic, TopicCatalog
from storage import db as storage_db
from storage.models import Member, PlatformAccount

DIGEST_FREQUENCIES = ("daily", "weekly")
NO_QUIET_HOURS = "No quiet hours: they start and end at the same hour, so nothing waits for the night."
MAX_TIMEZONE = 64  # Member.timezone's column width


@dataclass(frozen=True)
class Preferences:
    timezone: str
    quiet_start: int  # hour of the day (0-23) in `timezone` when quiet hours begin
    quiet_end: int  # ... and end; equal to quiet_start = no quiet hours
    digest_frequency: str  # daily | weekly
    subscribed: dict[str, bool]  # every opt-out-able topic (catalog order) -> subscribed?
    fixed_topics: list[str]  # topics nobody can leave (opt_out: false), catalog order

    @property
    def no_quiet_hours(self) -> bool:
        """Start and end at the same hour: no quiet hours at all (`schedule.in_quiet_hours`), not a
        whole day of them. The preference views say so (NO_QUIET_HOURS)."""
        return self.quiet_start == self.quiet_end


def opt_outs_apply(topic: Topic, policy: ImportancePolicy) -> bool:
    """Whether members who left `topic` are spared its notices of this importance: the
    importance respects opt-outs (not must-know) and the topic's catalog entry allows them."""
    return policy.respects_opt_outs and topic.opt_out


async def member_for_platform_user(platform: str, workspace_id: str, user_id: str) -> Member | None:
    """The active directory member behind a Slack/Teams user, or None when Herald does not know them."""
    account = await PlatformAccount.filter(platform=platform, workspace_external_id=workspace_id,
                                           user_id=user_id).select_related("member").first()
    if account is None or not account.member.active:
        return None
    return account.member


async def preferences_for(member_id: int, catalog: TopicCatalog) -> Preferences:
    member = await Member.get_or_none(id=member_id)
    if member is None:
        raise NotFound(f"member {member_id} does not exist")
    return _preferences(member, catalog)


def _preferences(member: Member, catalog: TopicCatalog) -> Preferences:
    opted_out = set(member.topic_opt_outs or [])
    return Preferences(
        timezone=member.timezone or "UTC",
        quiet_start=DEFAULT_QUIET_START if member.quiet_start_hour is None else member.quiet_start_hour,
        quiet_end=DEFAULT_QUIET_END if member.quiet_end_hour is None else member.quiet_end_hour,
        digest_frequency=member.digest_frequency if member.digest_frequency in DIGEST_FREQUENCIES else "daily",
        subscribed={key: key not in opted_out for key, topic in catalog.topics.items() if topic.opt_out},
        fixed_topics=[key for key, topic in catalog.topics.items() if not topic.opt_out],
    )


async def update_preferences(member_id: int, catalog: TopicCatalog, *, now: datetime,
                             timezone: str | None = None, quiet_start: int | None = None,
                             quiet_end: int | None = None, digest_frequency: str | None = None,
                             subscriptions: dict[str, bool] | None = None) -> Preferences:
    """Change any of the member's preferences (None = leave as is) and return the result.

    Everything is validated before anything is written, so a bad value changes nothing; the
    error says exactly what was wrong. `subscriptions` maps topic keys to subscribed?; only
    topics that allow opting out may be set to False (True for a fixed topic is accepted and
    changes nothing). Records `preferences.updated` with the changes, when there are any.
    """
    zone = _valid_timezone(timezone) if timezone is not None else None
    start = _valid_hour(quiet_start, "quiet hours start") if quiet_start is not None else None
    end = _valid_hour(quiet_end, "quiet hours end") if quiet_end is not None else None
    frequency = _valid_frequency(digest_frequency) if digest_frequency is not None else None
    wanted = _valid_subscriptions(subscriptions, catalog) if subscriptions is not None else {}

    async with in_transaction() as conn:
        query = Member.filter(id=member_id).using_db(conn)
        if storage_db.dialect() == "postgres":
            query = query.select_for_update()  # two quick toggles must not lose one another
        member = await query.first()
        if member is None:
            raise NotFound(f"member {member_id} does not exist")
        before = _preferences(member, catalog)
        updates: dict[str, Any] = {}
        changes: dict[str, Any] = {}
        if zone is not None and zone != before.timezone:
            updates["timezone"] = zone
            updates["timezone_chosen"] = True  # directory imports leave it alone from now on
            changes["timezone"] = {"from": before.timezone, "to": zone}
        if start is not None or end is not None:
            hours = (before.quiet_start if start is None else start, before.quiet_end if end is None else end)
            if hours != (member.quiet_start_hour, member.quiet_end_hour):  # store both, explicitly
                updates["quiet_start_hour"], updates["quiet_end_hour"] = hours
            if hours != (before.quiet_start, before.quiet_end):
                changes["quiet_hours"] = {"from": [before.quiet_start, before.quiet_end], "to": list(hours)}
        if frequency is not None and frequency != member.digest_frequency:
            updates["digest_frequency"] = frequency
            changes["digest_frequency"] = {"from": before.digest_frequency, "to": frequency}
        opted_out = list(member.topic_opt_outs or [])
        left = sorted(k for k, on in wanted.items() if not on and k not in opted_out)
        rejoined = sorted(k for k, on in wanted.items() if on and k in opted_out)
        if left or rejoined:
            updates["topic_opt_outs"] = sorted((set(opted_out) | set(left)) - set(rejoined))
            if left:
                changes["unsubscribed"] = left
            if rejoined:
                changes["subscribed"] = rejoined
        retimed = 0
        if updates:
            updates["updated_at"] = now
            await Member.filter(id=member.id).using_db(conn).update(**updates)
            if _HOURS_COLUMNS & set(updates):
                retimed = await _retime_held(member.id, updates.get("timezone", member.timezone),
                                             updates.get("quiet_start_hour", member.quiet_start_hour),
                                             updates.get("quiet_end_hour", member.quiet_end_hour), now, conn)
        if changes:
            await record([audit_event("preferences.updated", now=now, actor=member.email, member_id=member.id,
                                      changes=changes, **({"held_retimed": retimed} if retimed else {}))],
                         using_db=conn)
    return await preferences_for(member_id, catalog)


_HOURS_COLUMNS = {"timezone", "quiet_start_hour", "quiet_end_hour"}


async def _retime_held(member_id: int, zone: str, quiet_start: int | None, quiet_end: int | None, now: datetime,
                       conn: BaseDBAsyncClient) -> int:
    """What is held for the member's quiet hours (need-to-know copies; digests and journey
    messages the outbox put back) follows the zone and hours they now have, in the transaction
    that changed them: held for the old ones, it would come hours early or late (SPEC: held until
    the end of the member's quiet hours, in their time zone). Returns how many moved."""
    hours = MemberHours(zone, quiet_start, quiet_end)
    copies = await retime_held_copies(member_id, hours, now, conn)
    return copies + await retime_held_messages(member_id, hours, now, conn)


async def adopt_device_timezone(member: Member, reported: object, *, now: datetime, source: str) -> bool:
    """Give the member the time zone a platform reports for their device (Teams sends it with every
    message) when nobody gave them one: neither a directory import (`timezone_from_directory`) nor
    the member, in their preferences (`timezone_chosen`). Their working hours and quiet hours are
    kept in it from then on, and it follows the device (a later report replaces it). Not an IANA
    name: ignored. Records `member.timezone_detected`; True when the zone changed."""
    if member.timezone_chosen or member.timezone_from_directory:
        return False
    zone = _device_zone(reported)
    if zone is None or zone == member.timezone:
        return False
    async with in_transaction() as conn:
        # only if still so: an import or the member may have set it since `member` was read
        moved = await Member.filter(id=member.id, timezone=member.timezone, timezone_chosen=False,
                                    timezone_from_directory=False).using_db(conn).update(timezone=zone, updated_at=now)
        if moved:
            retimed = await _retime_held(member.id, zone, member.quiet_start_hour, member.quiet_end_hour, now, conn)
            await record([audit_event("member.timezone_detected", now=now, actor=member.email, member_id=member.id,
                                      source=source, changes={"timezone": {"from": member.timezone, "to": zone}},
                                      **({"held_retimed": retimed} if retimed else {}))],
                         using_db=conn)
    if moved:
        member.timezone = zone
    return bool(moved)


def _device_zone(value: object) -> str | None:
    """The IANA zone a platform reported, or None (nothing is guessed from a name that is not one)."""
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_TIMEZONE:
        return None
    return _canonical_zones().get(value.strip().lower())


@lru_cache(maxsize=1)
def _canonical_zones() -> dict[str, str]:
    return {name.lower(): name for name in _zone_names()}


# ---- validation ---------------------------------------------------------------------------------

def _valid_timezone(value: str) -> str:
    name = str(value).strip()
    if not name:
        raise UserError("the time zone is empty: give an IANA name such as Europe/Berlin")
    if len(name) <= MAX_TIMEZONE:
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    match = difflib.get_close_matches(name, _zone_names(), n=1, cutoff=0.6)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    raise UserError(f"unknown time zone '{name[:MAX_TIMEZONE]}'{hint}; use an IANA name such as Europe/Berlin")


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _valid_hour(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what} must be a whole hour from 0 to 23, not {value!r}")
    if not 0 <= value <= 23:
        raise UserError(f"{what} must be an hour from 0 to 23, not {value}")
    return value


def _valid_frequency(value: str) -> str:
    word = str(value).strip().lower()
    if word not in DIGEST_FREQUENCIES:
        raise UserError(f"unknown digest frequency '{value}': use daily or weekly")
    return word


def _valid_subscriptions(wanted: dict[str, bool], catalog: TopicCatalog) -> dict[str, bool]:
    result: dict[str, bool] = {}
    for key, on in wanted.items():
        topic = catalog.get(str(key))  # UserError naming the topics for an unknown one
        if not isinstance(on, bool):
            raise UserError(f"subscription to '{topic.key}' must be true or false, not {on!r}")
        if not on and not topic.opt_out:
            raise UserError(f"you cannot unsubscribe from '{topic.key}' ({topic.title}): "
                            "every partner it is meant for receives it")
        if topic.opt_out:
            result[topic.key] = on
    return result
