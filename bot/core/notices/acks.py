"""Acknowledgements: one per recipient per notice revision, however many times the click arrives.

Clicks are recorded by group commit: while one transaction is being written, the clicks that
arrive meanwhile queue up and are then written together in the next one (a few reads, a few
writes and one audit-chain append for the whole group). An idle server writes a lone click at
once; a busy one spends far fewer round trips, and far less time holding the audit chain's head
lock, per click. Each caller still gets its own answer (or its own error) only after the
transaction holding its acknowledgement has committed.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot.common import metrics
from bot.common.group_commit import GroupCommit
from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.compliance.audit import audit_event, record
from bot.core.notices.interactions import LinkTracker
from bot.core.notices.row_views import FixedExtras, RowExtras, copy_view
from bot.core.notices.views import Acknowledged, NoticeView, notice_view
from bot.topics import TopicCatalog
from storage import db as storage_db
from storage.models import (
    Acknowledgement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Member,
    Notice,
    NoticeStatus,
    PlatformAccount,
)

log = logging.getLogger(__name__)

_First = TypeVar("_First")
_Second = TypeVar("_Second")

NOT_YOURS = "This notice was not sent to you, so you cannot acknowledge it."
CHANGED_SINCE = ("Notice #{id} was changed after this copy was sent, and the new version needs acknowledging. "
                 "Your message is being updated to show it: please read it and press Acknowledge there.")
RETRACTED = "Notice #{id} was retracted, so there is nothing to acknowledge."
MAX_GROUP = 250  # clicks written in one transaction at most


@dataclass(frozen=True, slots=True)
class SettledCopy:
    """One of the presser's copies as the statement that recorded the acknowledgement left it
    (flagged for its update: `update_seq`), with the notice as that statement saw it."""

    delivery_id: int
    platform: str
    message_id: str
    delivered: bool
    update_seq: int
    notice_state: tuple[int, int, str]  # the notice's revision, ack_revision and status


@dataclass(frozen=True)
class AckResult:
    notice: Notice
    member: Member
    acknowledgement: Acknowledgement
    newly_recorded: bool
    variant: str = ""  # the A/B variant of the presser's copy ("" = none)
    in_doubt: bool = False  # a copy of the presser's is still in doubt (`sending`): see _delivered_to
    settled: tuple[SettledCopy, ...] = ()  # newly recorded: the copies its write flagged (`pressed_copy`)


async def acknowledge(notice_id: int, *, platform: str, workspace_id: str, user_id: str, now: datetime,
                      seen_revision: int | None = None) -> AckResult:
    """Record that the platform user acknowledged the notice delivered to them (any copy).

    `seen_revision`: the notice revision the pressed copy shows (its button carries it). A copy
    older than the revision that asked for acknowledgement again (a material edit whose in-place
    update has not reached it, or never will) does not acknowledge wording its reader was never
    shown: UserError. None (buttons drawn before revisions were carried) takes the click as is."""
    click = _Click(notice_id, platform, workspace_id, user_id, now, contextvars.copy_context(), seen_revision)
    if _in_caller_transaction():  # the caller's transaction must hold it: no group commit
        outcome = await _write_alone(click)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    return await _CLICKS.submit(click)


async def written() -> None:
    """Wait until every click submitted on this loop is written. On shutdown, before the database
    closes: Slack heard its 200 before its click was written (Bolt answers at ack(), and the
    listener records the click after it), and Slack does not send an answered click again."""
    await _CLICKS.written()


def _in_caller_transaction() -> bool:
    try:
        return isinstance(connections.get("default"), TransactionalDBClient)
    except Exception:  # noqa: BLE001 - not initialised: let the query raise the usual error
        return False


@dataclass
class _Click:
    notice_id: int
    platform: str
    workspace_id: str
    user_id: str
    now: datetime
    context: contextvars.Context  # the caller's (audit origin, log fields), for its audit event
    seen_revision: int | None = None  # the revision the pressed copy shows, if its button says


# ---- writing a group ---------------------------------------------------------------------------


async def _write_group(group: list[_Click]) -> list[AckResult | BaseException]:
    """Each click's result, or the error to raise to its caller. Falls back to one transaction per
    click when another process recorded one of the group's acknowledgements first (the unique
    constraint refused the group's insert, so the group's transaction wrote nothing)."""
    try:
        return await _write_together(group)
    except IntegrityError:
        log.info("a concurrent acknowledgement won a race; recording %d clicks one by one", len(group))
        return [await _write_alone(click) for click in group]


_CLICKS: GroupCommit[_Click, AckResult] = GroupCommit(_write_group, max_group=MAX_GROUP, name="herald-ack-group-commit")


async def _write_alone(click: _Click) -> AckResult | BaseException:
    try:
        (outcome,) = await _write_together([click])
    except IntegrityError:  # lost the race for this very click: the winner's row is there now
        (outcome,) = await _write_together([click])
    return outcome


@dataclass
class _Pending:
    """A click that will record a new acknowledgement in this group."""

    click: _Click
    notice: Notice
    member: Member
    delivery: dict
    ack: Acknowledgement


async def _write_together(group: list[_Click]) -> list[AckResult | BaseException]:
    notices, accounts = await _together(_notices(group), _accounts(group))
    pressers = {a.member.id for a in accounts.values()}
    (deliveries, members), recorded = await _together(_delivered_to(group, accounts),
                                                      _existing(notices.values(), pressers))
    if strays := members.keys() - pressers:
        recorded.update(await _existing(notices.values(), strays))

    outcomes: list[AckResult | BaseException | _Pending] = []
    for click in group:
        notice = notices.get(click.notice_id)
        delivery = deliveries.get((click.notice_id, click.platform, click.workspace_id, click.user_id))
        if notice is None:
            outcomes.append(NotFound(f"notice {click.notice_id} does not exist"))
        elif delivery is None:
            outcomes.append(PermissionDenied(NOT_YOURS))
        elif notice.status == NoticeStatus.RETRACTED.value:
            outcomes.append(UserError(RETRACTED.format(id=notice.id)))
        else:
            outcomes.append(_claim_once(click, notice, members[delivery["member_id"]], delivery, recorded))
    refused, settled = await _store_unless_retracted([o for o in outcomes if isinstance(o, _Pending)])
    # a later click of the group that found one of these acknowledgements "already recorded" (the
    # same member's double click, or Slack and Teams at once) is refused with it: it was never stored
    unstored = {id(o.ack) for o in outcomes if isinstance(o, _Pending) and o.notice.id in refused}
    results: list[AckResult | BaseException] = []
    for o in outcomes:
        if isinstance(o, AckResult) and id(o.acknowledgement) in unstored:
            results.append(UserError(RETRACTED.format(id=o.notice.id)))
        elif not isinstance(o, _Pending):
            results.append(o)
        elif o.notice.id in refused:
            results.append(UserError(RETRACTED.format(id=o.notice.id)))
        else:
            metrics.acknowledged(o.click.platform, (o.click.now - (o.delivery["delivered_at"] or o.click.now))
                                 .total_seconds())
            results.append(AckResult(o.notice, o.member, o.ack, True, o.delivery["variant"], o.delivery["in_doubt"],
                                     tuple(settled.get((o.notice.id, o.member.id), ()))))
    return results


def _claim_once(click: _Click, notice: Notice, member: Member, delivery: dict,
                recorded: dict[tuple[int, int, int], Acknowledgement]) -> AckResult | _Pending | UserError:
    """A new acknowledgement, or the one already recorded (earlier, or by this group's first click),
    or the refusal of a press on a copy older than the wording to acknowledge."""
    key = (notice.id, member.id, notice.ack_revision)
    existing = recorded.get(key)
    if existing is not None:
        return AckResult(notice, member, existing, False, delivery["variant"], delivery["in_doubt"])
    if click.seen_revision is not None and click.seen_revision < notice.ack_revision:
        return UserError(CHANGED_SINCE.format(id=notice.id))
    ack = Acknowledgement(notice_id=notice.id, member_id=member.id, delivery_id=delivery["id"],
                          organisation_id=member.organisation_id,  # type: ignore[attr-defined]
                          platform=click.platform, revision=notice.ack_revision, acknowledged_at=click.now)
    recorded[key] = ack
    return _Pending(click, notice, member, delivery, ack)


async def _together(first: Awaitable[_First], second: Awaitable[_Second]) -> tuple[_First, _Second]:
    """Two independent reads at once, on two of the pool's connections: a group waits for one
    round trip instead of two. One after the other inside a caller's transaction (one connection)."""
    if _in_caller_transaction():
        return await first, await second
    # both outcomes collected: an error of the second read must not go unretrieved (it would be
    # logged as a stray traceback) when the first one failed too, e.g. while the database closes
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]  # type: ignore[return-value]


async def _notices(group: list[_Click]) -> dict[int, Notice]:
    return {n.id: n for n in await Notice.filter(id__in={c.notice_id for c in group})}


async def _accounts(group: list[_Click]) -> dict[int, PlatformAccount]:
    """The pressers' accounts (with their members) by id, found by their unique key."""
    wanted = {(c.platform, c.workspace_id, c.user_id) for c in group}
    accounts = await PlatformAccount.filter(
        platform__in={p for p, _, _ in wanted}, workspace_external_id__in={w for _, w, _ in wanted},
        user_id__in={u for _, _, u in wanted}).select_related("member")
    return {a.id: a for a in accounts if _key(a) in wanted}


async def _delivered_to(group: list[_Click], accounts: dict[int, PlatformAccount],
                        ) -> tuple[dict[tuple[int, str, str, str], dict], dict[int, Member]]:
    """The delivered copy each click's presser received, by (notice, platform, workspace, user),
    the first copy (lowest id) when there are several (the notice and its reminders); and the
    members those copies were delivered to (an account a directory import has since moved to
    another member still finds the copy it was sent).

    A copy in doubt (`sending`: posted, but the platform's answer was lost) counts as delivered:
    its button only exists on a message that reached the presser, so the click proves it landed.
    The outbox still looks for that message before any second send (SlackChannel.deliver with
    `maybe_sent`, by the message's metadata) and records its id then; the acknowledgement flagged
    the copy for its update, which follows once it is recorded as delivered. Until then the
    message must be left as it is (`in_doubt`): the look finds it by what Herald posted.

    The copies are found by the pressers' accounts (``_accounts``) through the accounts' index
    (migration 0013): rows the size of the group. Filtering the notice's delivered copies by the
    account's user id read every delivered copy of the notice for each group instead (at 100,000
    recipients 41.8 ms a group instead of 8.8: bench/ack_groups.py). Single-table queries on
    purpose: joined to the accounts, the copies' query ran for minutes on PostgreSQL before the new
    rows had statistics (a nested loop over two full reads), where these stay bounded by one read
    of each table."""
    if not accounts:
        return {}, {}
    rows = await Delivery.filter(
        notice_id__in={c.notice_id for c in group}, account_id__in=set(accounts), status__in=_PRESSABLE,
    ).order_by("-id").values("id", "notice_id", "member_id", "kind", "delivered_at", "account_id", "variant",
                             "status")
    copies = {(r["notice_id"], *_key(accounts[r["account_id"]])): r for r in rows}  # the lowest id is kept
    for copy in copies.values():
        copy["in_doubt"] = False
    for r in rows:
        if r["status"] == DeliveryStatus.SENDING.value:
            copies[(r["notice_id"], *_key(accounts[r["account_id"]]))]["in_doubt"] = True
    members = {a.member.id: a.member for a in accounts.values()}
    strays = {r["member_id"] for r in copies.values()} - members.keys()  # copies of accounts moved since
    if strays:
        members.update({m.id: m for m in await Member.filter(id__in=strays)})
    return copies, members


_PRESSABLE = [DeliveryStatus.DELIVERED.value, DeliveryStatus.SENDING.value]  # copies a click can come from


def _key(account: PlatformAccount) -> tuple[str, str, str]:
    return account.platform, account.workspace_external_id, account.user_id


async def _existing(notices: Iterable[Notice], member_ids: set[int]) -> dict[tuple[int, int, int], Acknowledgement]:
    revisions = {n.id: n.ack_revision for n in notices}
    if not revisions or not member_ids:
        return {}
    rows = await Acknowledgement.filter(notice_id__in=set(revisions), member_id__in=member_ids)
    return {(a.notice_id, a.member_id, a.revision): a for a in rows  # type: ignore[attr-defined]
            if revisions.get(a.notice_id) == a.revision}  # type: ignore[attr-defined]


class _RetractedMeanwhile(Exception):
    """Raised inside `_store`'s transaction (which it rolls back): these notices were retracted
    after the group read them."""

    def __init__(self, notice_ids: set[int]) -> None:
        super().__init__(f"retracted meanwhile: {sorted(notice_ids)}")
        self.notice_ids = notice_ids


_Settled = dict[tuple[int, int], list[SettledCopy]]  # by (notice id, member id)


async def _store_unless_retracted(new: list[_Pending]) -> tuple[set[int], _Settled]:
    """Store the group's new acknowledgements but those of notices retracted since the group read
    them (the group's reads are not in its write's transaction); returns those notices' ids, and
    the stored ones' copies as the write settled them."""
    refused: set[int] = set()
    while new:
        try:
            return refused, await _store(new)
        except _RetractedMeanwhile as exc:
            refused |= exc.notice_ids
            new = [p for p in new if p.notice.id not in refused]
    return refused, {}


async def _store(new: list[_Pending]) -> _Settled:
    """One transaction: the acknowledgements, their copies flagged for update (and their reminders'
    schedule cleared), reminders not yet sent cancelled, and the audit events: appended last, so
    the chain head is locked only for the end of the transaction.

    Then, holding the head, the notices are read again: a retraction whose event is already in the
    chain has committed and is seen; the transaction is rolled back (`_RetractedMeanwhile`) rather
    than record an acknowledgement after it. A retraction not yet appended waits for the head and
    comes after these acknowledgements in the chain, as it does in time."""
    events = [p.click.context.run(
        audit_event, "notice.acknowledged", now=p.click.now, actor=p.member.email, notice_id=p.notice.id,
        member_id=p.member.id, platform=p.click.platform, revision=p.notice.ack_revision,
        delivery_id=p.delivery["id"], via=p.delivery["kind"]) for p in new]
    async with in_transaction() as conn:
        if conn.capabilities.dialect == "postgres":
            rows = await _store_and_settle_pg(conn, new)
        else:
            await Acknowledgement.bulk_create([p.ack for p in new], using_db=conn)
            by_notice: dict[tuple[int, int], set[int]] = {}
            for p in new:
                by_notice.setdefault((p.notice.id, p.notice.ack_revision), set()).add(p.member.id)
            rows = []
            for (notice_id, revision), member_ids in by_notice.items():
                rows += await _settle_copies(conn, notice_id, revision, member_ids)
        await record(events, using_db=conn)
        retracted = await _retracted(conn, {p.notice.id for p in new})
        if retracted:
            raise _RetractedMeanwhile(retracted)
    return _settled(rows)


def _settled(rows: list[dict]) -> _Settled:
    settled: _Settled = {}
    for r in rows:
        settled.setdefault((r["notice_id"], r["member_id"]), []).append(SettledCopy(
            r["id"], r["platform"], r["message_id"] or "", r["status"] == DeliveryStatus.DELIVERED.value,
            r["update_seq"], (r["notice_revision"], r["notice_ack_revision"], r["notice_status"])))
    return settled


async def _retracted(conn: BaseDBAsyncClient, notice_ids: set[int]) -> set[int]:
    predicate, ids = storage_db.in_ids("id", sorted(notice_ids))
    rows = await conn.execute_query_dict(storage_db.placeholders(
        f"SELECT id FROM notice WHERE {predicate} AND status = '{NoticeStatus.RETRACTED.value}'"), [ids])
    return {row["id"] for row in rows}


# The acknowledged members' copies are flagged for their in-place update (delivered ones, and those
# in flight: a reminder on the wire when the member clicks is updated once it is delivered), their
# reminders' schedule cleared, and their reminders not sent yet cancelled: one statement (a round
# trip fewer per group, in the transaction that ends holding the audit chain's head).
_LIVE = f"status IN ('{DeliveryStatus.DELIVERED.value}', '{DeliveryStatus.SENDING.value}')"
_SETTLE_SET = f"""
UPDATE delivery SET
    update_pending = CASE WHEN {_LIVE} THEN TRUE ELSE update_pending END,
    update_seq = CASE WHEN {_LIVE} THEN update_seq + 1 ELSE update_seq END,
    next_reminder_at = CASE WHEN status = '{DeliveryStatus.DELIVERED.value}' THEN NULL ELSE next_reminder_at END,
    error = CASE WHEN status = '{DeliveryStatus.PENDING.value}' THEN 'acknowledged before it was sent' ELSE error END,
    status = CASE WHEN status = '{DeliveryStatus.PENDING.value}' THEN '{DeliveryStatus.CANCELLED.value}' ELSE status END"""
_SETTLE_WHERE = f"""
  AND ({_LIVE}
       OR (kind = '{DeliveryKind.REMINDER.value}' AND status = '{DeliveryStatus.PENDING.value}'))"""
# Only while the acknowledged revision is still the notice's: a material edit that commits between
# the click's read and its write already flagged the copies and planned reminders for the new
# revision, which the member still owes (their click counts for the revision they saw).
_CURRENT_REVISION = "notice_id IN (SELECT id FROM notice WHERE id = {notice} AND ack_revision = {revision})"
# What the click's own answer needs of the copies it settled (`pressed_copy`), the notice as this
# statement sees it included: a round trip fewer per Slack click than reading them again.
_SETTLED_RETURNING = (
    "\nRETURNING id, notice_id, member_id, platform, message_id, status, update_seq, "
    + ", ".join(f"(SELECT n.{column} FROM notice n WHERE n.id = delivery.notice_id) AS notice_{column}"
                for column in ("revision", "ack_revision", "status")))
_SETTLE_COPIES = (_SETTLE_SET + "\nWHERE notice_id = ? AND {members} AND "
                  + _CURRENT_REVISION.format(notice="?", revision="?") + _SETTLE_WHERE + _SETTLED_RETURNING)
# PostgreSQL: the group's acknowledgements inserted and their copies settled in one statement.
_ACK_COLUMNS = ("notice_id", "member_id", "delivery_id", "organisation_id", "platform", "revision", "acknowledged_at")
_STORE_AND_SETTLE_PG = (
    f"WITH acks AS (INSERT INTO acknowledgement ({', '.join(_ACK_COLUMNS)}) "
    "SELECT * FROM unnest($1::int[], $2::int[], $3::int[], $4::int[], $5::text[], $6::int[], $7::timestamptz[]))"
    + _SETTLE_SET + "\nWHERE (notice_id, member_id) IN (SELECT * FROM unnest($8::int[], $9::int[])) AND "
    "(notice_id, (SELECT ack_revision FROM notice n WHERE n.id = delivery.notice_id)) IN "
    "(SELECT * FROM unnest($10::int[], $11::int[]))" + _SETTLE_WHERE + _SETTLED_RETURNING)


async def _settle_copies(conn: BaseDBAsyncClient, notice_id: int, revision: int, member_ids: set[int]) -> list[dict]:
    members, ids = storage_db.in_ids("member_id", sorted(member_ids))
    return await conn.execute_query_dict(storage_db.placeholders(_SETTLE_COPIES.format(members=members)),
                                         [notice_id, ids, notice_id, revision])


async def _store_and_settle_pg(conn: BaseDBAsyncClient, new: list[_Pending]) -> list[dict]:
    acks = [p.ack for p in new]
    rows = [(a.notice_id, a.member_id, a.delivery_id, a.organisation_id, a.platform,  # type: ignore[attr-defined]
             a.revision, a.acknowledged_at) for a in acks]
    pairs = sorted({(a.notice_id, a.member_id) for a in acks})  # type: ignore[attr-defined]
    revisions = sorted({(a.notice_id, a.revision) for a in acks})  # type: ignore[attr-defined]
    return await conn.execute_query_dict(_STORE_AND_SETTLE_PG, [*storage_db.columns(rows), *storage_db.columns(pairs),
                                                                *storage_db.columns(revisions)])


async def copies_of(result: AckResult) -> list[int]:
    """Every delivered copy (original and reminders) of the acknowledged notice to the member, to
    update in place. Asked for only when no outbox worker runs (the CLI, tests): a worker finds them
    by their ``update_pending`` flag, so a click does not pay for this query."""
    return await Delivery.filter(notice_id=result.notice.id, member_id=result.member.id,
                                 status=DeliveryStatus.DELIVERED.value).order_by("id").values_list("id", flat=True)


@dataclass(frozen=True, slots=True)
class PressedCopy:
    """The delivered copy whose button was pressed, as it stood before its acknowledged form was
    drawn (see `pressed_copy`)."""

    delivery_id: int
    update_seq: int
    revision: int  # the notice's, which the acknowledged form shows


_PRESSED_SQL = (
    "SELECT d.id AS id, d.update_seq AS update_seq, n.revision AS revision, n.ack_revision AS ack_revision, "
    "n.status AS status FROM delivery d JOIN notice n ON n.id=d.notice_id "
    f"WHERE d.notice_id=? AND d.member_id=? AND d.platform=? AND d.message_id=? AND d.status='{DeliveryStatus.DELIVERED.value}'")


async def pressed_copy(result: AckResult, platform: str, message_id: str) -> PressedCopy | None:
    """The pressed copy (by the platform's id of the message that carried the button), as it stood
    before its acknowledged form is drawn: every flag of that copy up to its `update_seq` is for a
    change the form shows, provided the notice is as the click read it (None otherwise, or when the
    copy is not known: its update is left to the outbox). A new acknowledgement's write returned it
    (`AckResult.settled`); only a repeated click reads it."""
    if not message_id:
        return None
    if result.newly_recorded:
        pressed = [c for c in result.settled if c.delivered and (c.platform, c.message_id) == (platform, message_id)]
        return _as_drawn(result.notice, pressed[0].delivery_id, pressed[0].update_seq,
                         pressed[0].notice_state) if pressed else None
    rows = await connections.get("default").execute_query_dict(storage_db.placeholders(_PRESSED_SQL), [
        result.notice.id, result.member.id, platform, message_id])
    for row in rows:
        return _as_drawn(result.notice, row["id"], row["update_seq"], (row["revision"], row["ack_revision"], row["status"]))
    return None


def _as_drawn(notice: Notice, delivery_id: int, update_seq: int, state: tuple[int, int, str]) -> PressedCopy | None:
    if state != (notice.revision, notice.ack_revision, notice.status):
        return None  # edited or retracted since the click read it: the drawn form would be stale
    return PressedCopy(delivery_id, update_seq, notice.revision)


async def shown_acknowledged(copy: PressedCopy, now: datetime) -> bool:
    """The pressed copy now shows its acknowledged form (the platform replaced the message in
    place: Slack's response_url): its pending in-place update is done, so the outbox does not send
    the same update again, spending the workspace's update budget that edits and retractions need.
    Only if no flag came since `pressed_copy` read it (an edit or a retraction racing the click
    still reaches the copy); the member's other copies keep theirs. True if it was marked.
    Written by group commit: the clicks shown while one mark is written are marked by the next."""
    if _in_caller_transaction():
        return (await _mark_shown([(copy, now)]))[0]
    return await _SHOWN.submit((copy, now))


_SHOWN_SQL = ("UPDATE delivery SET update_pending=FALSE, rendered_revision=?, updated_at=? "
              f"WHERE id=? AND update_seq=? AND status='{DeliveryStatus.DELIVERED.value}'")
_SHOWN_PG = ("UPDATE delivery d SET update_pending=FALSE, rendered_revision=v.revision, updated_at=v.at "
             "FROM unnest($1::int[], $2::int[], $3::int[], $4::timestamptz[]) AS v(id, seq, revision, at) "
             f"WHERE d.id=v.id AND d.update_seq=v.seq AND d.status='{DeliveryStatus.DELIVERED.value}' RETURNING d.id")


async def _mark_shown(group: list[tuple[PressedCopy, datetime]]) -> list[bool]:
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        rows = await conn.execute_query_dict(_SHOWN_PG, storage_db.columns(
            [(c.delivery_id, c.update_seq, c.revision, now) for c, now in group]))
        marked = {r["id"] for r in rows}
        return [c.delivery_id in marked for c, _ in group]
    out = []
    for copy, now in group:
        changed, _ = await conn.execute_query(_SHOWN_SQL, [copy.revision, now, copy.delivery_id, copy.update_seq])
        out.append(bool(changed))
    return out


_SHOWN: GroupCommit[tuple[PressedCopy, datetime], bool] = GroupCommit(
    _mark_shown, max_group=MAX_GROUP, name="herald-shown-group-commit")


async def acknowledged_view(result: AckResult, catalog: TopicCatalog, *, tracker: LinkTracker | None,
                            extras: FixedExtras, now: datetime) -> NoticeView:
    """The pressed copy as it reads once acknowledged, drawn as the outbox draws the presser's
    copies (row_views.copy_view): their A/B variant, tracked link and survey part, not the
    notice's own text. The platforms show it at once in place of the pressed message (Teams'
    invoke answer, Slack's response_url); an acknowledged reminder reads like the notice."""
    row_extras = RowExtras.of({result.notice.id: await extras.of(result.notice.id)}, now=now)
    member = result.member
    return copy_view(notice_view(result.notice, catalog), row_extras, notice_id=result.notice.id, member_id=member.id,
                     variant=result.variant, tracker=tracker,
                     acknowledged=Acknowledged(member.name or member.email, result.acknowledgement.acknowledged_at))
