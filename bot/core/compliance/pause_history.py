"""When partner organisations' reminders were paused, from the audit trail.

An organisation's pause columns say only how it is paused now: a resumed pause leaves nothing
there, and a pause started long after a notice's deadline is there for every old notice. A report
asks what held a notice's reminders back while it was out, so it reads the `organisation.paused`
and `organisation.resumed` events instead: a pause lasts until it is resumed, runs out (its
`until`), or is replaced by the next `pause` (a pause of a paused organisation continues it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.models import AuditEvent

PAUSED = "organisation.paused"
RESUMED = "organisation.resumed"


@dataclass(frozen=True, slots=True)
class PausePeriod:
    """One stretch of an organisation's pause: `until` None = still paused until resumed."""

    since: datetime
    until: datetime | None
    reason: str

    def overlaps(self, start: datetime, end: datetime | None) -> bool:
        return (end is None or self.since < end) and (self.until is None or self.until > start)


async def pause_periods(start: datetime, end: datetime | None) -> dict[str, list[PausePeriod]]:
    """Organisation external id -> its pause periods, oldest first, overlapping [start, end)
    (end None: open). One read of the pause events up to `end` (the (kind, occurred_at) index)."""
    events = AuditEvent.filter(kind__in=[PAUSED, RESUMED])
    if end is not None:
        events = events.filter(occurred_at__lt=end)
    by_organisation: dict[str, list[tuple[str, datetime, dict]]] = {}
    for kind, at, data in await events.order_by("id").values_list("kind", "occurred_at", "data"):
        if isinstance(data, dict) and data.get("organisation"):
            by_organisation.setdefault(str(data["organisation"]), []).append((kind, at, data))
    periods = {org: [p for p in _periods(history) if p.overlaps(start, end)]
               for org, history in by_organisation.items()}
    return {org: found for org, found in periods.items() if found}


def _periods(history: list[tuple[str, datetime, dict]]) -> list[PausePeriod]:
    """The pause periods one organisation's events describe, contiguous re-pauses merged (the
    latest reason and end win)."""
    periods: list[PausePeriod] = []
    current: PausePeriod | None = None
    for kind, at, data in history:
        if current is not None and current.until is not None and current.until <= at:
            periods.append(current)  # it ran out before this event
            current = None
        if kind == PAUSED:
            until = _moment(data.get("until"))
            since = current.since if current is not None else at
            current = PausePeriod(since, until, str(data.get("reason") or ""))
        elif current is not None:  # resumed
            periods.append(PausePeriod(current.since, at, current.reason))
            current = None
    if current is not None:
        periods.append(current)
    return periods


def _moment(value: object) -> datetime | None:
    """An audited datetime (ISO-8601 UTC, storage's json_safe) back as a datetime."""
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
