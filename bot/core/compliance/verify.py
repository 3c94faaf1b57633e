"""Check the audit chain: recompute every hash and say where, and how, it was broken.

The check reads the events in order of `seq`, `chunk` at a time (keyset pagination, so memory
stays constant however long the trail is), and stops at the first problem:

- an event whose content no longer matches its hash            -> "event 41 (kind) was altered"
- a position with no event                                       -> "event 42 is missing (deleted)"
- an event that no longer links to the one before it (the one before was rewritten and re-hashed)
- fewer events than the chain head records                       -> "the last 3 events were deleted"
- the newest event differs from the one the head records, or events beyond the head
- events with no position at all (written around `record`)
- with an anchor (`anchor=(seq, hash)`: a report's stated chain head, or `herald audit head` kept
  outside the database) event `seq` missing or with another hash: the newest events deleted and
  the head row rewound, or the trail re-hashed, by someone who can write to the database, which
  the head row (in that same database) cannot show
- a row of a table reports read (acknowledgements, deliveries and reminders, escalations, the
  notices' text, revisions and variants) that disagrees with the events the chain records about
  it, either way: a row inserted, altered or deleted there would show in a report naming an
  intact chain (`crosscheck.Ledger`)

The head is read before the events (and again after), so appends running during the check are
never mistaken for tampering: every event up to the head's seq had committed when it was read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bot.common.errors import UserError
from bot.common.progress import Progress, no_progress
from bot.core.compliance.audit import GENESIS_HASH, HEAD_ID, chain_hash
from bot.core.compliance.crosscheck import Ledger
from storage.models import AuditChainHead, AuditEvent


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int  # events checked (positions 1..head_seq)
    head_seq: int
    head_hash: str
    first_broken_seq: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe(event: AuditEvent) -> str:
    return f"event {event.seq} ({event.kind})"


Anchor = tuple[int, str]  # (seq, hash) of an event, as a report or `herald audit head` stated it
HEX = frozenset("0123456789abcdef")


def parse_anchor(text: str) -> Anchor:
    """`SEQ:HASH` (as `herald audit head` prints it) as an Anchor; UserError when malformed."""
    seq, _, digest = (text or "").strip().partition(":")
    digest = digest.strip().lower()
    if not seq.strip().isdigit() or int(seq) < 1 or len(digest) != 64 or any(c not in HEX for c in digest):
        raise UserError(f"'{text[:100]}' is not a chain head: give SEQ:HASH, e.g. 1042:{'0' * 8}... "
                        "(the seq and the 64 hex digits a report or `herald audit head` states)")
    return int(seq), digest


async def verify_chain(*, chunk: int = 5000, progress: Progress = no_progress,
                       anchor: Anchor | None = None) -> VerifyResult:
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    head = await AuditChainHead.get_or_none(id=HEAD_ID)
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, "")
    checked = 0

    def broken(seq: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, checked, head_seq, head_hash, seq, reason)

    if head is None:
        first = await AuditEvent.filter(seq__not_isnull=True).order_by("seq").first()
        if first is not None:
            return broken(first.seq, "the audit chain head is missing (deleted), "
                                     "so deleted recent events could not be noticed")

    expected, prev_hash, last = 1, GENESIS_HASH, None
    cursor: int | None = None
    ledger = Ledger()  # what the chain records about the rows reports read
    while True:
        query = AuditEvent.filter(seq__lte=head_seq)
        if cursor is not None:
            query = query.filter(seq__gt=cursor)
        rows = await query.order_by("seq").limit(chunk)
        for event in rows:
            if event.seq < expected:
                return broken(event.seq, f"an event numbered {event.seq} is not part of the chain "
                                         "(positions start at 1)")
            if event.seq > expected:
                return broken(expected, _missing(expected, event.seq - 1))
            if not event.hash or event.prev_hash is None or chain_hash(event.prev_hash, event) != event.hash:
                return broken(event.seq, f"{_describe(event)} was altered")
            if event.prev_hash != prev_hash:
                if last is None:
                    return broken(event.seq, f"{_describe(event)} does not start the chain "
                                             "(earlier events were deleted and the rest re-hashed)")
                return broken(last.seq, f"{_describe(last)} was altered or replaced: "
                                        f"event {event.seq} no longer links to it")
            if anchor is not None and event.seq == anchor[0] and event.hash != anchor[1]:
                return broken(event.seq, _not_the_anchor(event, anchor))
            checked += 1
            expected, prev_hash, last = event.seq + 1, event.hash, event
            ledger.note(event)
        progress("verifying", checked, head_seq)
        if len(rows) < chunk:
            break
        cursor = rows[-1].seq

    last_seq = last.seq if last is not None else 0
    if anchor is not None and anchor[0] > head_seq:
        anchored = await _beyond_the_head(anchor, last_seq)
        if anchored is not None:
            return broken(*anchored)
    if last_seq < head_seq:
        count = head_seq - last_seq
        what = "event was" if count == 1 else f"{count} events were"
        return broken(last_seq + 1, f"the last {what} deleted (the chain head is at event {head_seq}, "
                                    f"the trail ends at event {last_seq})")
    if last is not None and last.hash != head_hash:
        return broken(last.seq, f"{_describe(last)} was replaced: the chain head records another hash")
    if last is None and head_hash not in ("", GENESIS_HASH):
        return broken(None, "the chain head was altered (it records a hash but no events)")

    # Events beyond the head. Every append moves the head in the same transaction as its events,
    # so reading the highest seq first and the head second cannot catch an append half-done.
    beyond = await AuditEvent.filter(seq__gt=head_seq).order_by("-seq").first()
    if beyond is not None:
        now_head = await AuditChainHead.get_or_none(id=HEAD_ID)
        now_seq = now_head.seq if now_head is not None else head_seq
        if beyond.seq > now_seq:
            first = await AuditEvent.filter(seq__gt=now_seq).order_by("seq").first() or beyond
            return broken(first.seq, f"{_describe(first)} was added outside the chain "
                                     f"(the chain head is at event {now_seq})")

    outside = await AuditEvent.filter(seq__isnull=True).order_by("id").first()
    if outside is not None:
        more = await AuditEvent.filter(seq__isnull=True).count() - 1
        others = f" and {more} more" if more else ""
        return broken(None, f"an event with no seq (id {outside.id}, {outside.kind}){others} was written "
                            "outside the chain")
    mismatch = await ledger.first_mismatch(head_seq, chunk)
    if mismatch is not None:
        return broken(None, mismatch)
    return VerifyResult(True, checked, head_seq, head_hash, None, "")


def _not_the_anchor(event: AuditEvent, anchor: Anchor) -> str:
    return (f"{_describe(event)} is not the event the anchor names (seq {anchor[0]}, hash {anchor[1][:16]}...): "
            "the trail was rewritten and re-hashed at or before it")


async def _beyond_the_head(anchor: Anchor, last_seq: int) -> tuple[int, str] | None:
    """The anchor names an event beyond the chain head: it must still be there (appended while
    the check ran), with the anchor's hash. (first broken seq, reason), or None when it is."""
    event = await AuditEvent.get_or_none(seq=anchor[0])
    if event is None:
        return last_seq + 1, (f"the anchor names event {anchor[0]}, but the trail ends at event {last_seq}: "
                              "the events after it were deleted (and the chain head rewound to hide it)")
    if event.hash != anchor[1]:
        return event.seq, _not_the_anchor(event, anchor)
    return None


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"event {first} is missing (deleted)"
    return f"events {first} to {last} are missing (deleted)"
