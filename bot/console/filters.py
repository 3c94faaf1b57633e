"""Jinja filters for the console's templates: times, rates and counts as people read them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode


def when(moment: datetime | None) -> str:
    if moment is None:
        return "–"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def when_iso(text: str | None) -> str:
    """An ISO-8601 time as the core's JSON-ready results give it (`...Z`), shown like `when`."""
    return when(datetime.fromisoformat(text.replace("Z", "+00:00"))) if text else "–"


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def ratio(part: int, whole: int) -> str:
    return "–" if not whole else f"{part / whole * 100:.0f}%"


def number(value: int | float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}".replace(",", "\u202f")  # a narrow no-break space groups thousands


_MINUTE, _HOUR, _DAY = 60, 3600, 86400


def _in_units(seconds: float, *sizes: int) -> tuple[float, ...]:
    """`seconds` as whole counts of each unit in `sizes` (largest first), then what is left over:
    `_in_units(90061, _DAY, _HOUR, _MINUTE)` is (1, 1, 1, 1)."""
    counts = []
    for size in sizes:
        count, seconds = divmod(seconds, size)
        counts.append(count)
    return (*counts, seconds)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    total = round(seconds)
    days, hours, minutes, _ = _in_units(total, _DAY, _HOUR, _MINUTE)
    if total < _MINUTE:
        return "under 1 min"
    if total < _HOUR:
        return f"{minutes} min"
    if total < _DAY:
        return f"{hours} h {minutes} min"
    return f"{days} d {hours} h"


def every(seconds: float) -> str:
    """How often a periodic job runs, in words: "every minute", "every 5 minutes", "every 30 seconds"."""
    for unit, size in (("hour", _HOUR), ("minute", _MINUTE)):
        count, rest = _in_units(seconds, size)
        if count >= 1 and not rest:
            return f"every {unit}" if count == 1 else f"every {int(count)} {unit}s"
    return f"every {seconds:g} seconds"


def query(params: dict[str, Any], **changes: Any) -> str:
    """The current query string with some parameters changed (None drops one)."""
    merged = {k: v for k, v in params.items()}
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return ("?" + urlencode(merged)) if merged else "?"


def path_segment(value: Any) -> str:
    """A value (an organisation's id from the directory import: any text, 'EMEA/1042') as one
    segment of a console path. Jinja's `urlencode` leaves '/' as it is, which splits the id
    into two segments and the link into a 404."""
    return quote(str(value), safe="")


FILTERS = {"when": when, "when_iso": when_iso, "iso": iso, "percent": percent, "ratio": ratio, "number": number,
           "duration": duration, "path_segment": path_segment}
