"""Replay protection for inbound requests: each authenticated request is acted on once.

A correctly signed Slack request passes the check while its timestamp is within five minutes of
now, either side, so anyone who captures one can send it again; Teams may deliver the same
activity twice. The key of every request acted on is
written to `seen_request` (a unique column, so two replicas racing on the same replay agree on
which one acts) and kept until a replay could no longer pass the platform's own check.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from tortoise import connections
from tortoise.exceptions import IntegrityError

from bot.common.group_commit import GroupCommit
from storage import db as storage_db
from storage.models import SeenRequest

SLACK_SKEW = timedelta(minutes=5)  # the signature check accepts a timestamp this far either side of now
# A timestamp accepted at a request's first sighting can be up to SLACK_SKEW ahead of Herald's
# clock, and passes the check until SLACK_SKEW after itself: its key is kept that whole span
# (twice the skew), plus a minute for the check's whole seconds and a clock that steps.
SLACK_WINDOW = 2 * SLACK_SKEW + timedelta(minutes=1)
TEAMS_WINDOW = timedelta(hours=1)  # a Bot Framework token lives about an hour


def request_key(platform: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{platform}:{digest}"


async def first_sighting(key: str, *, now: datetime, window: timedelta) -> bool:
    """True the first time `key` is seen within `window` (and records it); False for a replay."""
    if await _remember(key, now, now + window):
        return True
    # Seen before: a replay, unless the old record has outlived its window (then start again).
    renewed = await SeenRequest.filter(key=key, expires_at__lte=now).update(seen_at=now, expires_at=now + window)
    return renewed == 1


async def _remember(key: str, now: datetime, expires_at: datetime) -> bool:
    """Store `key`; False when it is stored already."""
    if storage_db.dialect() == "postgres":
        return await _SIGHTINGS.submit((key, now, expires_at))
    try:
        await SeenRequest.create(key=key, seen_at=now, expires_at=expires_at)
        return True
    except IntegrityError:
        return False


# Every inbound request needs this insert before it is acted on. On PostgreSQL the requests that
# arrive while one insert is in flight are stored together by the next (group commit): one
# statement for a burst of clicks instead of one each.
_INSERT_PG = ("INSERT INTO seen_request (key, seen_at, expires_at) "
              "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) "
              "ON CONFLICT (key) DO NOTHING RETURNING key")


async def _store_sightings(group: list[tuple[str, datetime, datetime]]) -> list[bool]:
    """Whether each (key, seen at, expires at) was stored by this group: a key already stored, or
    earlier in the same group, is not."""
    first = {key: (now, expires_at) for key, now, expires_at in reversed(group)}  # each key's first item
    rows = await connections.get("default").execute_query_dict(
        _INSERT_PG, storage_db.columns([(key, now, expires_at) for key, (now, expires_at) in first.items()]))
    stored = {r["key"] for r in rows}
    out = []
    for key, _, _ in group:
        out.append(key in stored)
        stored.discard(key)  # a second sighting of a key in the same group is a replay
    return out


_SIGHTINGS: GroupCommit[tuple[str, datetime, datetime], bool] = GroupCommit(
    _store_sightings, max_group=500, name="herald-replay-group-commit")


async def forget_expired(now: datetime) -> int:
    """Drop keys no replay can match any more (run from the clock's tick)."""
    return await SeenRequest.filter(expires_at__lte=now).delete()
