"""Audit events, written in the same transaction as the state change they record, as a hash chain.

Every event gets a position `seq` (1, 2, 3, ... with no gaps), the hash of the event before it
(`prev_hash`) and its own `hash`:

    hash = sha256_hex(utf8(prev_hash + canonical(event)))

where `prev_hash` is 64 zeros for event 1 and `canonical(event)` is the JSON text (sorted keys,
separators "," and ":", non-ASCII characters unescaped) of

    {"actor": str, "data": object, "kind": str, "member_id": int|null, "notice_id": int|null,
     "occurred_at": "YYYY-MM-DDTHH:MM:SS.ffffff+00:00", "seq": int}

The single `AuditChainHead` row holds the last event's seq and hash, so deleting the newest
events is noticed too. `bot.core.audit_verify.verify_chain` recomputes the chain.

Because the hash is recomputed from what the database gives back, `audit_event` stores only
values that survive the round trip through both backends unchanged (see `json_safe`).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from storage import db as storage_db
from storage.models import AuditEvent

GENESIS_HASH = "0" * 64  # the prev_hash of event 1
HEAD_ID = 1

# Floats at or beyond this magnitude print in exponent form ("1e+16") in Python, which
# PostgreSQL's jsonb gives back as a plain integer; they are integers anyway, so store them as such.
_FLOAT_EXPONENT_FORM = 1e16


# ---- building events --------------------------------------------------------------------------

@dataclass(slots=True, eq=False)
class PendingEvent:
    """An event made by `audit_event`, normalised and not yet appended: what `record` needs of an
    AuditEvent, without an ORM object per event (a broadcast makes one per delivery)."""

    kind: str
    occurred_at: datetime
    actor: str
    notice_id: int | None
    member_id: int | None
    data: dict[str, Any]
    seq: int | None = None
    prev_hash: str = ""
    hash: str = ""
    pk: None = None


def audit_event(
    kind: str,
    *,
    now: datetime,
    actor: str = "",
    notice_id: int | None = None,
    member_id: int | None = None,
    **data: Any,
) -> PendingEvent:
    """An unsaved event; pass it (with others) to `record`.

    `data` is normalised to JSON values that round-trip exactly (see `json_safe`), and `now` to
    UTC with microsecond precision, so the hash computed when the event is appended equals the
    one recomputed later from the stored row. Values JSON cannot hold raise TypeError.
    """
    return PendingEvent(kind=kind, occurred_at=utc_instant(now), actor=actor or "",
                        notice_id=_optional_int(notice_id), member_id=_optional_int(member_id),
                        data=json_safe({**_origin.get(), **data}))


_origin: ContextVar[dict[str, str]] = ContextVar("audit_origin", default={})


def set_audit_origin(**origin: str) -> None:
    """Like `audit_origin`, for the rest of the current task (a CLI command's `asyncio.run`)."""
    _origin.set({**_origin.get(), **origin})


@contextmanager
def audit_origin(**origin: str) -> Iterator[None]:
    """Every audit event made inside the block also records where the action came from, e.g.
    `audit_origin(source="cli", os_user="alice")` around a `herald send --as ...` (the staff
    member is the actor; the operating-system user is who typed it)."""
    token = _origin.set({**_origin.get(), **origin})
    try:
        yield
    finally:
        _origin.reset(token)


def utc_instant(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (naive values are taken to be UTC, as tortoise does)."""
    if not isinstance(value, datetime):
        raise TypeError(f"an audit event's time must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    # A plain datetime (drops subclasses such as pendulum's and any fold): microseconds, as stored.
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                    value.microsecond, tzinfo=UTC)


def iso_utc(value: datetime) -> str:
    """'2024-05-06T07:08:09.123456+00:00': the form used in the canonical encoding and in data."""
    if type(value) is datetime and value.tzinfo is UTC:  # already as utc_instant makes it
        return value.isoformat(timespec="microseconds")
    return utc_instant(value).isoformat(timespec="microseconds")


def json_safe(value: Any) -> Any:
    """`value` as JSON data that PostgreSQL (jsonb) and SQLite give back unchanged.

    datetimes become ISO-8601 UTC strings, dates and times ISO strings, enums their values,
    tuples/lists lists, sets sorted lists, Decimal and UUID strings, mapping keys strings;
    -0.0 becomes 0.0, integral floats from 1e16 up become ints, NaN/infinity become strings.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most values: no subclass checks
        return value
    if kind is dict:
        return _json_safe_mapping(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, Mapping):
        return _json_safe_mapping(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [json_safe(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    raise TypeError(f"audit data cannot hold a {type(value).__name__} ({value!r}); "
                    "store an id or a string instead")


def _json_safe_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in value.items():
        name = json_safe(key) if isinstance(key, enum.Enum) else key
        name = name if isinstance(name, str) else json.dumps(json_safe(name))
        if name in result:
            raise ValueError(f"audit data has two keys that both read {name!r}")
        result[name] = json_safe(item)
    return result


def _json_float(value: float) -> float | int | str:
    if math.isnan(value) or math.isinf(value):
        return repr(value)  # 'nan', 'inf', '-inf': JSON has no such numbers
    if value == 0.0:
        return 0.0  # jsonb has no negative zero
    if abs(value) >= _FLOAT_EXPONENT_FORM:
        return int(value)
    return float(value)


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    return int(value)


# ---- hashing ----------------------------------------------------------------------------------

def canonical_encoding(event: AuditEvent | PendingEvent) -> str:
    """The event's content as canonical JSON (its position `seq` included, its id not)."""
    return json.dumps(
        {
            "seq": event.seq,
            "occurred_at": iso_utc(event.occurred_at),
            "kind": event.kind,
            "actor": event.actor,
            "notice_id": event.notice_id,
            "member_id": event.member_id,
            "data": event.data,
        },
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    )


def chain_hash(prev_hash: str, event: AuditEvent | PendingEvent) -> str:
    return hashlib.sha256((prev_hash + canonical_encoding(event)).encode("utf-8")).hexdigest()


# ---- appending --------------------------------------------------------------------------------

async def record(events: Iterable[AuditEvent | PendingEvent], *, using_db: BaseDBAsyncClient | None = None) -> None:
    """Append `events`, in order, to the audit chain, in the caller's transaction `using_db`.

    Call it as the LAST write of the transaction that makes the state change:

        async with in_transaction() as conn:
            ...state changes, using_db=conn...
            await record([audit_event(...), ...], using_db=conn)

    It locks the chain head row (PostgreSQL: SELECT ... FOR UPDATE; SQLite: the database's
    single write lock), and that lock is held until the transaction commits: every appender
    in every replica waits for it. Taking it last keeps the time it is held short and the lock
    order the same everywhere (row locks of the state change first, the head last), so two
    transactions can never wait for each other's locks (deadlock).

    One call takes the lock once, however many events it appends (a broadcast's 10,000
    delivery events are one append). With `using_db=None` the append runs in a transaction
    of its own (nested, as a savepoint, inside a surrounding `in_transaction()` block).
    """
    batch = list(events)
    if not batch:
        return
    if using_db is None:
        async with in_transaction() as conn:
            await _append(batch, conn)
    else:
        await _append(batch, using_db)


async def _append(batch: list[AuditEvent | PendingEvent], conn: BaseDBAsyncClient) -> None:
    for event in batch:
        if event.seq is not None or event.pk is not None:
            raise ValueError("an audit event can be recorded only once")
    seq, head_hash = await _lock_head(conn)
    prev_hash = head_hash if seq else GENESIS_HASH
    for event in batch:
        if not isinstance(event, PendingEvent):  # built as AuditEvent(...) directly
            _normalise(event)
        seq += 1
        event.seq, event.prev_hash = seq, prev_hash
        event.hash = prev_hash = chain_hash(prev_hash, event)
    # Plain statements, the time and the data converted by the model's own fields (as
    # bulk_create does): the ORM's query building cost more than the hashing for the outbox's
    # small, frequent groups.
    fields = AuditEvent._meta.fields_map
    when, data = fields["occurred_at"].to_db_value, fields["data"].to_db_value
    rows = [(when(e.occurred_at, e), e.kind, e.actor, e.notice_id, e.member_id, data(e.data, e), e.seq,
             e.prev_hash, e.hash) for e in batch]
    if conn.capabilities.dialect == "postgres":
        # the events and the new head in one statement: a round trip fewer per append
        await conn.execute_query_dict(_APPEND_PG, [*storage_db.columns(rows), seq, prev_hash, HEAD_ID])
        return
    await conn.execute_many(_INSERT_SQL, rows)
    await conn.execute_query("UPDATE audit_chain_head SET seq=?, hash=? WHERE id=?", [seq, prev_hash, HEAD_ID])


# the order of the values `_append` builds for each event
_COLUMNS = ("occurred_at", "kind", "actor", "notice_id", "member_id", "data", "seq", "prev_hash", "hash")
_INSERT_SQL = f"INSERT INTO audit_event ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_PG_ARRAY_TYPES = ("timestamptz", "text", "text", "int", "int", "jsonb", "bigint", "text", "text")  # as _COLUMNS
_APPEND_PG = (
    "WITH head AS (UPDATE audit_chain_head SET seq=$10, hash=$11 WHERE id=$12) "
    f"INSERT INTO audit_event ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, t in enumerate(_PG_ARRAY_TYPES, start=1)) + ")")


def _normalise(event: AuditEvent) -> None:
    """The same normalisation as `audit_event`, for events built as AuditEvent(...) directly."""
    event.occurred_at = utc_instant(event.occurred_at)
    event.data = json_safe(event.data if event.data is not None else {})
    event.actor = event.actor or ""
    event.notice_id = _optional_int(event.notice_id)
    event.member_id = _optional_int(event.member_id)


async def _lock_head(conn: BaseDBAsyncClient) -> tuple[int, str]:
    """The chain head's (seq, hash), its row locked for the rest of the transaction; created when missing."""
    postgres = conn.capabilities.dialect == "postgres"
    for _ in range(2):
        if postgres:
            rows = await conn.execute_query_dict(
                f"SELECT seq, hash FROM audit_chain_head WHERE id = {HEAD_ID} FOR UPDATE")
        else:
            # Writing first takes SQLite's write lock before the head is read, so an appender in
            # another process cannot read the same head (in-process, tortoise already serialises
            # transactions on its one connection).
            rows = await conn.execute_query_dict(
                f"UPDATE audit_chain_head SET seq = seq WHERE id = {HEAD_ID} RETURNING seq, hash")
        if rows:
            return int(rows[0]["seq"]), str(rows[0]["hash"])
        # The first append ever. Two may race: ON CONFLICT lets the loser wait for the winner's
        # row (PostgreSQL) instead of failing, and its transaction stays usable; then lock it.
        await conn.execute_query(
            f"INSERT INTO audit_chain_head (id, seq, hash) VALUES ({HEAD_ID}, 0, '') "
            "ON CONFLICT (id) DO NOTHING")
    raise RuntimeError("the audit chain head row could not be created")
