"""Time rules: a member's working hours, and when reminders fall due.

Pure functions over aware datetimes, so tests can reason about them without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_QUIET_START = 20  # 20:00 local
DEFAULT_QUIET_END = 8  # 08:00 local
WEEKEND = (5, 6)  # Saturday, Sunday


def member_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def in_quiet_hours(local: datetime, start: int, end: int) -> bool:
    hour = local.hour
    if start == end:
        return False
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


def next_working_moment(now: datetime, zone: str, *, quiet_start: int | None = None,
                        quiet_end: int | None = None, skip_weekends: bool = True) -> datetime:
    """`now` if it is working time for the member, else the start of their next working period."""
    start = DEFAULT_QUIET_START if quiet_start is None else quiet_start
    end = DEFAULT_QUIET_END if quiet_end is None else quiet_end
    tz = member_zone(zone)
    local = now.astimezone(tz)
    for _ in range(9):  # at most a long weekend plus a night
        working_day = not (skip_weekends and local.weekday() in WEEKEND)
        if working_day and not in_quiet_hours(local, start, end):
            return local.astimezone(now.tzinfo)
        # jump to the end of tonight's quiet hours (or to tomorrow's start of day on weekends)
        candidate = datetime.combine(local.date(), time(end), tzinfo=tz)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), time(end), tzinfo=tz)
        local = candidate
    return local.astimezone(now.tzinfo)


@dataclass(frozen=True)
class ReminderSchedule:
    """Reminders `after_hours` (since delivery), then every `then_every_hours` until the deadline."""

    after_hours: tuple[float, ...] = (24.0, 72.0)
    then_every_hours: float = 24.0

    def offset(self, number: int) -> timedelta:
        """How long after delivery reminder `number` (1-based) is due."""
        if number <= len(self.after_hours):
            return timedelta(hours=self.after_hours[number - 1])
        last = self.after_hours[-1] if self.after_hours else 0.0
        return timedelta(hours=last + (number - len(self.after_hours)) * self.then_every_hours)

    def due_at(self, delivered_at: datetime, number: int, deadline: datetime | None) -> datetime | None:
        """When reminder `number` is due, or None when there is no such reminder.

        With a deadline, reminders continue (daily by default) until it; without one, only the
        listed `after_hours` reminders are sent.
        """
        if not self.after_hours:
            return None
        if deadline is None and number > len(self.after_hours):
            return None
        due = delivered_at + self.offset(number)
        if deadline is not None and due >= deadline:
            return None
        return due

    @classmethod
    def parse(cls, data: dict | None, fallback: "ReminderSchedule | None" = None) -> "ReminderSchedule":
        base = fallback or cls()
        if not data:
            return base
        hours = data.get("after_hours", base.after_hours)
        every = data.get("then_every_hours", base.then_every_hours)
        values = tuple(float(h) for h in hours)
        if any(h <= 0 for h in values) or list(values) != sorted(values) or float(every) <= 0:
            raise ValueError("reminders: after_hours must be increasing positive hours and then_every_hours positive")
        return cls(after_hours=values, then_every_hours=float(every))
