"""Replay protection for inbound requests: each authenticated request is acted on once.

A correctly signed Slack request stays valid for five minutes, so anyone who captures one can
send it again; Teams may deliver the same activity twice. The key of every request acted on is
written to `seen_request` (a unique column, so two replicas racing on the same replay agree on
which one acts) and kept until a replay could no longer pass the platform's own check.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from tortoise import connections
from tortoise.exceptions import IntegrityError

from storage import db as storage_db
from storage.models import SeenRequest

SLACK_WINDOW = timedelta(minutes=5)  # bolt refuses signatures older than this
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


# Every inbound click pays for this statement: on PostgreSQL it is one plain round trip (no ORM
# model, no exception on a replay).
_INSERT_PG = ("WITH added AS (INSERT INTO seen_request (key, seen_at, expires_at) VALUES ($1, $2, $3) "
              "ON CONFLICT (key) DO NOTHING RETURNING 1) SELECT count(*) AS n FROM added")


async def _remember(key: str, now: datetime, expires_at: datetime) -> bool:
    """Store `key`; False when it is stored already."""
    if storage_db.dialect() == "postgres":
        _, rows = await connections.get("default").execute_query(_INSERT_PG, [key, now, expires_at])
        return bool(rows[0]["n"])
    try:
        await SeenRequest.create(key=key, seen_at=now, expires_at=expires_at)
        return True
    except IntegrityError:
        return False


async def forget_expired(now: datetime) -> int:
    """Drop keys no replay can match any more (run from the clock's tick)."""
    return await SeenRequest.filter(expires_at__lte=now).delete()
