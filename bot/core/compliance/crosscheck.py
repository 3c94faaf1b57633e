"""The tables reports read, checked against what the audit chain records.

Reports are built from tables, not from the chain: a row inserted, altered or deleted there with
the chain left alone would change a report that names an intact chain head. So `verify_chain`
hands every event to a `Ledger` as it walks the chain, and `Ledger.first_mismatch` then streams
the tables and compares them with it, both ways:

- acknowledgements: every row has its `notice.acknowledged` event (notice, member, revision and
  time), and every such event its row;
- deliveries (the notice's copies and its reminders): a row that says delivered has its
  `delivery.delivered` / `notice.reminded` event (by delivery id) at its `delivered_at` (a copy
  sent in a digest: the member's `digest.sent` event listing the notice, on that platform, at that
  time); one that says failed has its `delivery.failed` / `reminder.failed` event with its reason;
  a copy the chain records as delivered (or failed) whose row says otherwise, or that has no row,
  is named;
- escalations: each row has its `notice.escalated` event (notice, organisation, time, how many
  members it names and, on trails that record it, a digest of them) and, once sent, its
  `escalation.delivered` event at its `sent_at`; every `notice.escalated` event has its row;
- what notices said: each notice's title, body and link (and revision number), each kept
  revision's and each A/B variant's against the digest (`text_digest`) its `notice.created`,
  `notice.sent` or `notice.edited` event records (trails from before the digests: not compared);
- when and to whom: each notice's `sent_at` against the time of its `notice.sent` event (a
  journey step's survey: its `notice.created`), its `retracted_at` against its `notice.retracted`
  event (both ways: a time the chain does not record, or a recorded one the row lost), and its
  audience and deadline against the ones `notice.created` / `notice.sent` record (trails from
  before they recorded the deadline: not compared). The report counts late acknowledgements
  against that deadline. The partners the audience matched that got no copy (the report's
  roll-up names them) against the ones `notice.sent` records.

What legitimately changes a row after its event leaves these alone: a retry or a deferral is
pending again without an event, a copy in doubt stays `sending` (in flight: not compared), a
cancelled or held-back copy never had a delivered or failed event, an edit's or a click's in-place
update changes only the update columns. Delivered and failed are final: nothing in Herald moves a
copy out of them.

Rows written while the check runs have their events beyond the chain head it read: a row that
does not match is compared again with those later events before it is named.

Memory: what the chain records of each delivery, acknowledgement and digest copy is kept in
flat arrays of 64-bit ints (`_MarkTable`: 24 bytes an entry, sorted once for look-ups, instead of
a dict entry of Python ints and tuples, about 150 bytes: a year's 3 million events took some
500 MB); an entry per escalation, a digest per notice, revision and variant, and a small record
per notice. Rows are read `chunk` at a time.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

import numpy as np

from storage.models import (
    Acknowledgement,
    AuditEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Escalation,
    Notice,
    NoticeRevision,
    NoticeVariant,
    Organisation,
)

ACKNOWLEDGED = "notice.acknowledged"
_DELIVERED_EVENT = {DeliveryKind.NOTICE.value: "delivery.delivered", DeliveryKind.REMINDER.value: "notice.reminded"}
_FAILED_EVENT = {DeliveryKind.NOTICE.value: "delivery.failed", DeliveryKind.REMINDER.value: "reminder.failed"}
_DELIVERED_KINDS = frozenset(_DELIVERED_EVENT.values())
_FAILED_KINDS = frozenset(_FAILED_EVENT.values())
_DIGEST_SENT = "digest.sent"
_ESCALATED, _ESCALATION_DELIVERED = "notice.escalated", "escalation.delivered"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Marks = int | tuple[int, ...]  # one value, or (rarely) several


def micros(moment: datetime) -> int:
    """A time as whole microseconds since 1970 (UTC; naive = UTC, as tortoise stores it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _iso(value: int) -> str:
    return (_EPOCH + timedelta(microseconds=value)).isoformat()


def _reason(text: str | None) -> int:
    """A failure reason as an int to compare (Python's string hash: keyed per process, so it
    cannot be aimed at from outside; only compared within this check)."""
    return hash(text or "")


def members_digest(member_ids: Iterable[int]) -> str:
    """SHA-256 of the members an escalation names (sorted, comma-separated ids): recorded in
    `notice.escalated`, so the report's "escalated at" column can be checked member by member."""
    return sha256(",".join(str(m) for m in sorted(set(member_ids))).encode()).hexdigest()


def text_digest(title: str, body: str, link: str = "") -> str:
    """SHA-256 of what a notice (or one revision or A/B variant of it) says: the JSON text, sorted
    keys and no spaces, of {"body", "link", "title"} (variants: link ""). Recorded in
    `notice.created`, `notice.sent` and `notice.edited`, so the wording members were sent and
    acknowledged can be checked against the tables that reports print it from."""
    canonical = json.dumps({"title": title, "body": body, "link": link or ""}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return sha256(canonical.encode("utf-8")).hexdigest()


async def text_digests(notice_id: int, *, using_db: Any = None) -> dict[str, Any]:
    """The audit data that pins a notice's wording as stored now: `text_sha256`, and for an A/B
    test `variants_sha256` (label -> digest of its title and body). Read inside the transaction
    that writes the event, so the digest is of what that transaction commits."""
    notice = await Notice.filter(id=notice_id).using_db(using_db).first().values("title", "body", "link")
    variants = await NoticeVariant.filter(notice_id=notice_id).using_db(using_db).order_by("label").values(
        "label", "title", "body")
    data: dict[str, Any] = {"text_sha256": text_digest(notice["title"], notice["body"], notice["link"])}
    if variants:
        data["variants_sha256"] = {v["label"]: text_digest(v["title"], v["body"]) for v in variants}
    return data


def _add(table: dict[Any, Marks], key: Any, value: int) -> None:
    seen = table.get(key)
    if seen is None:
        table[key] = value
    elif isinstance(seen, int):
        if seen != value:
            table[key] = (seen, value)
    elif value not in seen:
        table[key] = (*seen, value)


def _has(marks: Marks | None, value: int) -> bool:
    return marks == value or (isinstance(marks, tuple) and value in marks)


def _merge(first: Marks | None, second: Marks | None) -> Marks | None:
    if first is None or second is None:
        return first if second is None else second
    merged: dict[int, Marks] = {0: first}
    for value in (second,) if isinstance(second, int) else second:
        _add(merged, 0, value)
    return merged[0]


def _first(marks: Marks) -> int:
    return marks if isinstance(marks, int) else marks[0]


_ID_BITS = 31  # ids are 32-bit signed integer columns: two fit in one 64-bit key
_ID_MASK = (1 << _ID_BITS) - 1
Key = Any  # a table's own key: a delivery id, (notice, member, revision), (notice, member, platform)
Encoded = tuple[int, int]  # the key as two 64-bit ints (see _MarkTable)


class _MarkTable:
    """Marks (64-bit ints: times, reason hashes) by key, as the chain records them, in three flat
    arrays of 64-bit ints (key, sub-key, mark) while the chain is walked (`add`), sorted once
    when first looked up; then `get`, and `pop` (marks the key's entries taken: what is left at
    the end the tables have no row for). Marks merged in after the walk (`merge`: events appended
    while the check ran) are kept apart, in a dict (a few). A key's marks are returned as
    `Marks`, as `_add` keeps them in a dict."""

    def __init__(self, encode: Callable[[Key], Encoded], decode: Callable[[int, int], Key]) -> None:
        self._encode, self._decode = encode, decode
        self._columns: tuple[array, array, array] | None = (array("q"), array("q"), array("q"))
        self._keys = self._subkeys = self._marks = np.empty(0, dtype=np.int64)
        self._taken = np.empty(0, dtype=bool)
        self._extra: dict[Key, Marks] = {}

    def add(self, key: Key, value: int) -> None:
        assert self._columns is not None, "added to after the first look-up"
        main, sub = self._encode(key)
        keys, subkeys, marks = self._columns
        keys.append(_int64(main))
        subkeys.append(_int64(sub))
        marks.append(_int64(value))

    def _sorted(self) -> None:
        if self._columns is None:
            return
        keys, subkeys, marks = (np.frombuffer(column, dtype=np.int64) if len(column) else np.empty(0, dtype=np.int64)
                                for column in self._columns)
        order = np.lexsort((marks, subkeys, keys))
        self._keys, self._subkeys, self._marks = keys[order], subkeys[order], marks[order]
        self._taken = np.zeros(len(order), dtype=bool)
        self._columns = None  # the unsorted arrays go

    def _span(self, key: Key) -> tuple[int, int]:
        self._sorted()
        main, sub = self._encode(key)
        low, high = np.searchsorted(self._keys, main, "left"), np.searchsorted(self._keys, main, "right")
        if high - low > 1:
            subkeys = self._subkeys[low:high]
            low, high = low + np.searchsorted(subkeys, sub, "left"), low + np.searchsorted(subkeys, sub, "right")
        elif high > low and self._subkeys[low] != sub:
            return 0, 0
        return int(low), int(high)

    def get(self, key: Key) -> Marks | None:
        low, high = self._span(key)
        found: Marks | None = None
        if high > low and not self._taken[low]:
            values = self._marks[low:high].tolist()
            found = values[0] if len(values) == 1 else tuple(dict.fromkeys(values))
        return _merge(found, self._extra.get(key))

    def pop(self, key: Key, default: None = None) -> Marks | None:
        found = self.get(key)
        low, high = self._span(key)
        self._taken[low:high] = True
        self._extra.pop(key, None)
        return found if found is not None else default

    def merge(self, key: Key, marks: Marks | None) -> None:
        merged = _merge(self._extra.get(key), marks)
        if merged is not None:
            self._extra[key] = merged

    def items(self) -> Iterator[tuple[Key, Marks]]:
        """What is left (not popped), by key: sorted, then the merged-in ones."""
        self._sorted()
        left = np.flatnonzero(~self._taken)
        start = 0
        while start < len(left):
            first = int(left[start])
            key = self._decode(int(self._keys[first]), int(self._subkeys[first]))
            low, high = self._span(key)
            marks = self.get(key)
            if marks is not None:
                yield key, marks
            start += high - low
        for key, marks in self._extra.items():
            low, high = self._span(key)
            if low == high or self._taken[low]:
                yield key, marks

    def __bool__(self) -> bool:
        return next(self.items(), None) is not None


def _int64(value: int) -> int:
    """`value` within a 64-bit int: one beyond it (an event's data is JSON: any size) becomes the
    nearest bound, which no row (32-bit ids and revisions, microsecond times) has either."""
    return min(max(value, -(1 << 63)), (1 << 63) - 1)


def _by_id() -> _MarkTable:
    return _MarkTable(lambda key: (key, 0), lambda main, _: main)


def _by_notice_member(third: Callable[[Any], int] = int, back: Callable[[int], Any] = int) -> _MarkTable:
    """Keys (notice, member, third): notice and member packed in one int, `third` as the sub-key."""
    return _MarkTable(lambda key: ((key[0] << _ID_BITS) | key[1], third(key[2])),
                      lambda main, sub: (main >> _ID_BITS, main & _ID_MASK, back(sub)))


class _Codes:
    """Small ints for the few strings a key holds (platforms), and back."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []

    def code(self, name: str) -> int:
        if name not in self.codes:
            self.codes[name] = len(self.names)
            self.names.append(name)
        return self.codes[name]

    def name(self, code: int) -> str:
        return self.names[code]


_UNRECORDED = -1  # NoticeFacts.deadline when no event recorded one (trails from before it was)


@dataclass(slots=True)
class NoticeFacts:
    """What the chain records of a notice's row beyond its text (None: not sent, not retracted,
    no deadline; `audience` None and `deadline` _UNRECORDED: not recorded, not compared)."""

    audience: str | None = None
    deadline: int | None = _UNRECORDED
    sent_at: int | None = None
    retracted_at: int | None = None
    # The partners matched that got no copy, by reason (directory ids), as notice.sent records them
    # (None: not recorded, trails from before it was).
    unreached: dict[str, list[str]] | None = None

    def update(self, other: NoticeFacts) -> None:
        """Add what later events record (appended while the check ran)."""
        if other.audience is not None:
            self.audience = other.audience
        if other.unreached is not None:
            self.unreached = other.unreached
        if other.deadline != _UNRECORDED:
            self.deadline = other.deadline
        self.sent_at = other.sent_at if other.sent_at is not None else self.sent_at
        self.retracted_at = other.retracted_at if other.retracted_at is not None else self.retracted_at


def _recorded_time(value: Any) -> int | None:
    """A time an event's data records (ISO 8601, see audit.json_safe), in microseconds."""
    return micros(datetime.fromisoformat(value)) if isinstance(value, str) else None


class Ledger:
    """What the chain records about the rows reports read, noted event by event (`note`)."""

    def __init__(self) -> None:
        self.acknowledged = _by_notice_member()  # (notice, member, revision) -> time
        self.delivered = _by_id()  # delivery id -> time
        self.failed = _by_id()  # delivery id -> reason
        self.unplaced: dict[tuple[int, int], Marks] = {}  # (notice, member) -> reason: failed with no row id (rare)
        platforms = _Codes()
        self.digests = _by_notice_member(platforms.code, platforms.name)  # (notice, member, platform) -> time
        self.escalated: dict[tuple[int, str], tuple[int, int, str | None]] = {}  # -> (time, members, digest)
        self.escalation_sent: dict[tuple[int, str], Marks] = {}  # (notice, organisation) -> time
        self.texts: dict[int, tuple[int, str]] = {}  # notice -> (revision, text digest), as last recorded
        self.revision_texts: dict[tuple[int, int], str] = {}  # (notice, revision) -> text digest
        self.variant_texts: dict[tuple[int, str], str] = {}  # (notice, label) -> text digest
        self.notices: dict[int, NoticeFacts] = {}  # notice -> its audience, deadline, sent and retracted times

    def note(self, event: AuditEvent) -> None:
        for noter in _NOTERS.get(event.kind, ()):
            noter(self, event, event.data or {})

    def _acknowledgement(self, event: AuditEvent, data: dict[str, Any]) -> None:
        revision = data.get("revision")
        if event.notice_id is not None and event.member_id is not None and isinstance(revision, int):
            self.acknowledged.add((event.notice_id, event.member_id, revision), micros(event.occurred_at))

    def _delivered(self, event: AuditEvent, data: dict[str, Any]) -> None:
        if isinstance(data.get("delivery_id"), int):
            self.delivered.add(data["delivery_id"], micros(event.occurred_at))

    def _failed(self, event: AuditEvent, data: dict[str, Any]) -> None:
        if isinstance(data.get("delivery_id"), int):
            self.failed.add(data["delivery_id"], _reason(data.get("reason")))
        elif event.notice_id is not None and event.member_id is not None:  # no account: failed as written
            _add(self.unplaced, (event.notice_id, event.member_id), _reason(data.get("reason")))

    def _digest(self, event: AuditEvent, data: dict[str, Any]) -> None:
        notices, platform = data.get("notices"), data.get("platform")
        if event.member_id is None or not isinstance(notices, list) or not isinstance(platform, str):
            return
        at = micros(event.occurred_at)
        for notice_id in notices:
            if isinstance(notice_id, int):
                self.digests.add((notice_id, event.member_id, platform), at)

    def _escalated(self, event: AuditEvent, data: dict[str, Any]) -> None:
        if event.notice_id is not None and isinstance(data.get("organisation"), str):
            self.escalated[(event.notice_id, data["organisation"])] = (
                micros(event.occurred_at), data.get("unacknowledged"), data.get("members_sha256"))

    def _escalation_sent(self, event: AuditEvent, data: dict[str, Any]) -> None:
        if event.notice_id is not None and isinstance(data.get("organisation"), str):
            _add(self.escalation_sent, (event.notice_id, data["organisation"]), micros(event.occurred_at))

    def _text(self, event: AuditEvent, data: dict[str, Any]) -> None:
        """What the notice said at creation, at sending (revision 1, a correction before sending
        included) or at an edit (its new revision). Events from before the digests were recorded
        have none: nothing is noted, nothing compared."""
        digest = data.get("text_sha256")
        if event.notice_id is None or not isinstance(digest, str):
            return
        revision = data.get("revision") if event.kind == _EDITED and not data.get("before_send") else 1
        if not isinstance(revision, int):
            return
        self.texts[event.notice_id] = (revision, digest)
        self.revision_texts[(event.notice_id, revision)] = digest
        for label, variant in (data.get("variants_sha256") or {}).items():
            if isinstance(variant, str):
                self.variant_texts[(event.notice_id, label)] = variant

    def _facts(self, event: AuditEvent, data: dict[str, Any]) -> None:
        """A notice's audience and deadline (as created, as sent), when it was sent (notice.sent; a
        journey step's survey is sent as it is created) and retracted."""
        if event.notice_id is None:
            return
        facts = self.notices.setdefault(event.notice_id, NoticeFacts())
        at = micros(event.occurred_at)
        if isinstance(data.get("audience"), str):
            facts.audience = data["audience"]
        if "deadline" in data:
            facts.deadline = _recorded_time(data["deadline"])
        if event.kind == _SENT and "organisations_matched" in data:
            facts.unreached = _unreached(data.get("organisations_unreached"))
        if event.kind == _SENT or (event.kind == _CREATED and data.get("journey_step")):
            facts.sent_at = at
        elif event.kind == _RETRACTED:
            facts.retracted_at = at

    # ---- the tables ------------------------------------------------------------------------------

    async def first_mismatch(self, head_seq: int, chunk: int) -> str | None:
        """The first row (or recorded event) on which the tables and the chain disagree, in
        words; None when they agree. Consumes the ledger."""
        for check in (self._acknowledgements, self._deliveries, self._escalations, self._notice_texts,
                      self._notice_facts):
            found = await check(head_seq, chunk)
            if found is not None:
                return found
        return None

    async def _acknowledgements(self, head_seq: int, chunk: int) -> str | None:
        cursor = 0
        while True:
            rows = await Acknowledgement.filter(id__gt=cursor).order_by("id").limit(chunk).values(
                "id", "notice_id", "member_id", "revision", "acknowledged_at")
            for row in rows:
                key = (row["notice_id"], row["member_id"], row["revision"])
                at = micros(row["acknowledged_at"])
                if _has(self.acknowledged.pop(key, None), at):
                    continue
                later = await _later(head_seq, row["notice_id"], row["member_id"], (ACKNOWLEDGED,))
                if _has(later.acknowledged.get(key), at):
                    continue
                return (f"the acknowledgement of notice {key[0]} by member {key[1]} (revision {key[2]}, "
                        f"{_iso(at)}) is not in the chain: no {ACKNOWLEDGED} event records it "
                        "(added or altered outside Herald)")
            if len(rows) < chunk:
                break
            cursor = rows[-1]["id"]
        for (notice_id, member_id, revision), marks in self.acknowledged.items():
            return (f"the acknowledgement of notice {notice_id} by member {member_id} (revision {revision}, "
                    f"{_iso(_first(marks))}) recorded in the chain has no row: deleted outside Herald, so "
                    "reports say the member never acknowledged")
        return None

    async def _deliveries(self, head_seq: int, chunk: int) -> str | None:
        cursor = 0
        while True:
            rows = await Delivery.filter(id__gt=cursor).order_by("id").limit(chunk).values(
                "id", "notice_id", "member_id", "kind", "platform", "status", "delivered_at", "error")
            for row in rows:
                delivered, failed = self.delivered.pop(row["id"], None), self.failed.pop(row["id"], None)
                if self._copy_mismatch(row, delivered, failed) is None:
                    continue
                later = await _later(head_seq, row["notice_id"], row["member_id"],
                                     (*_DELIVERED_KINDS, *_FAILED_KINDS), digests=True)
                for key, marks in later.unplaced.items():  # looked up by notice and member, never counted
                    self.unplaced[key] = _merge(self.unplaced.get(key), marks)
                for key, marks in later.digests.items():
                    self.digests.merge(key, marks)
                found = self._copy_mismatch(row, _merge(delivered, later.delivered.get(row["id"])),
                                            _merge(failed, later.failed.get(row["id"])))
                if found is not None:
                    return found
            if len(rows) < chunk:
                break
            cursor = rows[-1]["id"]
        for delivery_id, marks in self.delivered.items():
            return (f"delivery {delivery_id}, recorded in the chain as delivered at {_iso(_first(marks))}, has "
                    "no row: deleted outside Herald")
        for delivery_id, _ in self.failed.items():
            return (f"delivery {delivery_id}, recorded in the chain as failed, has no row: deleted "
                    "outside Herald")
        return None

    def _copy_mismatch(self, row: dict[str, Any], delivered: Marks | None, failed: Marks | None) -> str | None:
        status, kind = row["status"], row["kind"]
        what = (f"delivery {row['id']} ({'reminder' if kind == DeliveryKind.REMINDER.value else 'copy'} of notice "
                f"{row['notice_id']} to member {row['member_id']} on {row['platform']})")
        if status == DeliveryStatus.DELIVERED.value:
            at = micros(row["delivered_at"]) if row["delivered_at"] is not None else None
            if at is not None and (_has(delivered, at) or (
                    kind == DeliveryKind.NOTICE.value
                    and _has(self.digests.get((row["notice_id"], row["member_id"], row["platform"])), at))):
                return None
            when = _iso(at) if at is not None else "no time"
            return (f"{what} says delivered at {when}: no {_DELIVERED_EVENT.get(kind, 'delivery')} event records "
                    "that (altered outside Herald)")
        if status == DeliveryStatus.FAILED.value:
            reason = _reason(row["error"])
            if _has(failed, reason) or _has(self.unplaced.get((row["notice_id"], row["member_id"])), reason):
                return None
            return (f"{what} says failed ({(row['error'] or '')[:80]!r}): no {_FAILED_EVENT.get(kind, 'delivery')} "
                    "event records that (altered outside Herald)")
        if delivered is not None and status != DeliveryStatus.SENDING.value:
            return (f"the chain records {what} as delivered at {_iso(_first(delivered))}, but its row says "
                    f"{status} (altered outside Herald)")
        if failed is not None and status not in (DeliveryStatus.SENDING.value, DeliveryStatus.PENDING.value):
            return f"the chain records {what} as failed, but its row says {status} (altered outside Herald)"
        return None

    async def _escalations(self, head_seq: int, chunk: int) -> str | None:
        cursor = 0
        while True:
            rows = await Escalation.filter(id__gt=cursor).order_by("id").limit(chunk).values(
                "id", "notice_id", "organisation__external_id", "member_ids", "created_at", "sent_at")
            for row in rows:
                key = (row["notice_id"], row["organisation__external_id"])
                recorded, sent = self.escalated.pop(key, None), self.escalation_sent.pop(key, None)
                if _escalation_mismatch(row, recorded, sent) is None:
                    continue
                later = await _later(head_seq, row["notice_id"], None, (_ESCALATED, _ESCALATION_DELIVERED))
                found = _escalation_mismatch(row, later.escalated.get(key, recorded),
                                             _merge(sent, later.escalation_sent.get(key)))
                if found is not None:
                    return found
            if len(rows) < chunk:
                break
            cursor = rows[-1]["id"]
        if self.escalated:
            notice_id, organisation = next(iter(self.escalated))
            return (f"the escalation of notice {notice_id} to organisation {organisation}'s CAM, recorded in the "
                    "chain, has no row: deleted outside Herald")
        return None


    async def _notice_texts(self, head_seq: int, chunk: int) -> str | None:
        """Each notice's title, body and link (and revision number), each kept revision's and each
        A/B variant's, against the digests the chain records: what reports print as sent and
        acknowledged. An edit committed while the check ran is looked for beyond the head."""
        for model, recorded, key_of, what in (
                (Notice, self.texts, lambda r: r["id"], "notice {0}"),
                (NoticeRevision, self.revision_texts, lambda r: (r["notice_id"], r["revision"]),
                 "revision {0[1]} of notice {0[0]}"),
                (NoticeVariant, self.variant_texts, lambda r: (r["notice_id"], r["label"]),
                 "variant {0[1]} of notice {0[0]}")):
            cursor = 0
            while True:
                rows = await model.filter(id__gt=cursor).order_by("id").limit(chunk).values(
                    *_TEXT_COLUMNS[model])
                for row in rows:
                    key = key_of(row)
                    expected = recorded.pop(key, None)
                    if expected is None or _text_matches(row, expected):
                        continue
                    notice_id = key if isinstance(key, int) else key[0]
                    later = await _later(head_seq, notice_id, None, _TEXT_KINDS)
                    now_expected = {Notice: later.texts, NoticeRevision: later.revision_texts,
                                    NoticeVariant: later.variant_texts}[model].get(key)
                    if now_expected is not None and _text_matches(row, now_expected):
                        continue
                    return (f"the text of {what.format(key)} (title, body or link) is not what the chain records "
                            "it said (notice.created, notice.sent, notice.edited): altered outside Herald, so "
                            "reports show other wording than was sent and acknowledged")
                if len(rows) < chunk:
                    break
                cursor = rows[-1]["id"]
        if self.texts:
            return f"notice {next(iter(self.texts))}, recorded in the chain, has no row: deleted outside Herald"
        for (notice_id, revision), _ in self.revision_texts.items():
            if revision > 1:  # revision 1 is kept as a row only once the notice is edited
                return (f"revision {revision} of notice {notice_id}, recorded in the chain (notice.edited), has no "
                        "row: deleted outside Herald")
        if self.variant_texts:
            notice_id, label = next(iter(self.variant_texts))
            return f"variant {label} of notice {notice_id}, recorded in the chain, has no row: deleted outside Herald"
        return None

    async def _notice_facts(self, head_seq: int, chunk: int) -> str | None:
        """Each notice's audience, deadline, sent and retracted times against what the chain
        records (notices it has no event of are not compared, as with their text)."""
        cursor = 0
        directory_ids = {o["id"]: o["external_id"] for o in await Organisation.all().values("id", "external_id")}
        while True:
            rows = await Notice.filter(id__gt=cursor).order_by("id").limit(chunk).values(
                "id", "audience", "deadline", "sent_at", "retracted_at", "unreached_organisations")
            for row in rows:
                facts = self.notices.pop(row["id"], None)
                if facts is None or _facts_mismatch(row, facts, directory_ids) is None:
                    continue
                later = await _later(head_seq, row["id"], None, _FACT_KINDS)
                facts.update(later.notices.get(row["id"], NoticeFacts()))
                found = _facts_mismatch(row, facts, directory_ids)
                if found is not None:
                    return found
            if len(rows) < chunk:
                break
            cursor = rows[-1]["id"]
        return None


def _unreached(recorded: Any) -> dict[str, list[str]]:
    """Partners without a copy by reason, as an event or a row holds them, without empty reasons."""
    if not isinstance(recorded, dict):
        return {}
    return {str(reason): sorted(str(i) for i in ids) for reason, ids in recorded.items() if ids}


def _facts_mismatch(row: dict[str, Any], facts: NoticeFacts, directory_ids: dict[int, str]) -> str | None:
    notice = f"notice {row['id']}"
    if facts.unreached is not None:
        stored = _unreached({reason: [directory_ids.get(i, f"#{i}") for i in ids]
                             for reason, ids in (row["unreached_organisations"] or {}).items()})
        if stored != facts.unreached:
            return (f"the partners {notice} reached nobody at are {stored or 'none'} in its row, the chain records "
                    f"{facts.unreached or 'none'} (notice.sent): altered outside Herald, so the report's roll-up "
                    "is not the one the send made")
    if facts.audience is not None and row["audience"] != facts.audience:
        return (f"the audience of {notice} is {row['audience']!r}, the chain records {facts.audience!r} "
                "(notice.created, notice.sent): altered outside Herald")
    deadline = micros(row["deadline"]) if row["deadline"] is not None else None
    if facts.deadline != _UNRECORDED and deadline != facts.deadline:
        return (f"the deadline of {notice} is {_iso_or_none(deadline)}, the chain records "
                f"{_iso_or_none(facts.deadline)} (notice.created, notice.sent): altered outside Herald, so the "
                "report counts other members as late")
    for column, kind, verb in (("sent_at", _SENT, "sent"), ("retracted_at", _RETRACTED, "retracted")):
        at, recorded = (micros(row[column]) if row[column] is not None else None), getattr(facts, column)
        if at == recorded:
            continue
        if at is not None:
            return f"{notice} says it was {verb} at {_iso(at)}: no {kind} event records that (altered outside Herald)"
        return (f"the chain records {notice} as {verb} at {_iso(recorded)} ({kind}), but its row says it was not "
                "(altered outside Herald)")
    return None


def _iso_or_none(value: int | None) -> str:
    return _iso(value) if value is not None else "none"


_CREATED, _SENT, _EDITED, _RETRACTED = "notice.created", "notice.sent", "notice.edited", "notice.retracted"
_TEXT_KINDS = (_CREATED, _SENT, _EDITED)
_FACT_KINDS = (_CREATED, _SENT, _RETRACTED)
_TEXT_COLUMNS: dict[Any, tuple[str, ...]] = {
    Notice: ("id", "title", "body", "link", "revision"),
    NoticeRevision: ("id", "notice_id", "revision", "title", "body", "link"),
    NoticeVariant: ("id", "notice_id", "label", "title", "body"),
}


def _text_matches(row: dict[str, Any], expected: str | tuple[int, str]) -> bool:
    """A row's text against its recorded digest; a notice's revision number against the last
    recorded one too (an edit bumps it in the same transaction as its event)."""
    digest = text_digest(row["title"], row["body"], row.get("link") or "")
    if isinstance(expected, tuple):
        revision, recorded = expected
        return digest == recorded and row["revision"] == revision
    return digest == expected


def _escalation_mismatch(row: dict[str, Any], recorded: tuple[int, int, str | None] | None,
                         sent: Marks | None) -> str | None:
    what = f"the escalation of notice {row['notice_id']} to organisation {row['organisation__external_id']}'s CAM"
    members = row["member_ids"] or []
    if isinstance(members, str):
        members = json.loads(members)
    if recorded is None:
        return f"{what} is not in the chain: no {_ESCALATED} event records it (added outside Herald)"
    at, count, digest = recorded
    if micros(row["created_at"]) != at:
        return f"{what} says it was made at {row['created_at']}, the chain at {_iso(at)} (altered outside Herald)"
    if (isinstance(count, int) and count != len(members)) or (digest is not None and digest != members_digest(
            m for m in members if isinstance(m, int))):
        return (f"{what} names other members than its {_ESCALATED} event records (altered outside Herald): "
                "the report's escalated-at column would be wrong")
    if row["sent_at"] is not None and not _has(sent, micros(row["sent_at"])):
        return (f"{what} says it was sent at {row['sent_at']}: no {_ESCALATION_DELIVERED} event records that "
                "(altered outside Herald)")
    return None


async def _later(head_seq: int, notice_id: int, member_id: int | None, kinds: tuple[str, ...], *,
                 digests: bool = False) -> Ledger:
    """The events of a notice (and member) appended beyond the chain head, while the check ran."""
    later = Ledger()
    query = AuditEvent.filter(seq__gt=head_seq, notice_id=notice_id, kind__in=kinds)
    if member_id is not None:
        query = query.filter(member_id=member_id)
    for event in await query.order_by("seq"):
        later.note(event)
    if digests and member_id is not None:
        for event in await AuditEvent.filter(seq__gt=head_seq, kind=_DIGEST_SENT, member_id=member_id).order_by("seq"):
            later.note(event)
    return later


_NOTERS = {
    ACKNOWLEDGED: (Ledger._acknowledgement,),
    **{kind: (Ledger._delivered,) for kind in _DELIVERED_KINDS},
    **{kind: (Ledger._failed,) for kind in _FAILED_KINDS},
    _DIGEST_SENT: (Ledger._digest,),
    _ESCALATED: (Ledger._escalated,),
    _ESCALATION_DELIVERED: (Ledger._escalation_sent,),
    _CREATED: (Ledger._text, Ledger._facts),
    _SENT: (Ledger._text, Ledger._facts),
    _EDITED: (Ledger._text,),
    _RETRACTED: (Ledger._facts,),
}
