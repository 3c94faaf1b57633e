"""The outbox's hot path in plain SQL: claiming notice delivery rows and writing their outcomes.

A claim is one statement on PostgreSQL (`FOR UPDATE SKIP LOCKED` in a CTE feeding an
`UPDATE ... RETURNING`) and two on SQLite (read the due rows, then a conditional
`UPDATE ... RETURNING id`, which keeps only the rows still as they were read). The rows come
back as plain values with what sending needs (the member's platform account and name), not as
ORM models: building models, parsing their datetimes and compiling ORM queries cost more than
the sends themselves (bench/fanout.py).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from bot.common.schedule import next_working_moment
from bot.core.delivery.lanes import DUE, OPEN
from bot.core.ports import Recipient
from bot.topics.importance import IMPORTANCE
from storage import db as storage_db
from storage.db import as_datetime
from storage.models import Delivery, DeliveryKind, DeliveryStatus, Notice, NoticeStatus, Survey

SENDING = DeliveryStatus.SENDING.value
PENDING = DeliveryStatus.PENDING.value
DELIVERED = DeliveryStatus.DELIVERED.value

_COLUMNS = ("d.id AS id, d.notice_id AS notice_id, d.member_id AS member_id, d.kind AS kind, "
            "d.sequence AS sequence, d.platform AS platform, d.workspace_external_id AS workspace_id, "
            "d.variant AS variant, d.attempts AS attempts, d.channel_id AS channel_id, "
            "d.message_id AS message_id, d.rendered_revision AS rendered_revision, d.update_seq AS update_seq, "
            "d.send_started_at AS send_started_at, d.history_read_to AS history_read_to, "
            "a.id AS account_id, a.workspace_external_id AS account_workspace, a.user_id AS user_id, "
            "a.dm_channel AS dm_channel, a.service_url AS service_url, a.app_removed_at AS app_removed_at, "
            "m.name AS member_name, "
            "m.email AS member_email, n.revision AS n_revision, n.ack_revision AS n_ack_revision, "
            "n.status AS n_status, s.id AS s_id, s.closes_at AS s_closes_at, s.closed_at AS s_closed_at, "
            "k.acknowledged_at AS acknowledged_at, n.importance AS n_importance, m.timezone AS member_timezone, "
            "m.quiet_start_hour AS quiet_start, m.quiet_end_hour AS quiet_end, n.topic AS n_topic, "
            "m.topic_opt_outs AS topic_opt_outs")


def _joins(row: str) -> str:
    """The joins of _COLUMNS' notice (as of the claim: what its view depends on that an edit, a
    retraction or a survey's closing changes), its survey and the member's acknowledgement of the
    revision that counts, to the delivery row `row`."""
    return (f"JOIN notice n ON n.id={row}.notice_id LEFT JOIN survey s ON s.notice_id={row}.notice_id "
            f"LEFT JOIN acknowledgement k ON k.notice_id={row}.notice_id AND k.member_id={row}.member_id "
            f"AND k.revision=n.ack_revision")

_COMPLETE_SQL = (f"UPDATE notice SET status=?, completed_at=? WHERE {{which}} "
                 f"status='{NoticeStatus.SENDING.value}' AND NOT EXISTS (SELECT 1 FROM delivery d "
                 f"WHERE d.notice_id=notice.id AND d.kind='{DeliveryKind.NOTICE.value}' "
                 f"AND d.status IN ('{DeliveryStatus.PENDING.value}', '{DeliveryStatus.SENDING.value}'))")

# What is due, with the parameters each predicate takes (all `now`).
UPDATE_FAILED = "update failed: "  # the error of a delivered copy whose in-place update was refused for good
SEND_DUE = (f"{OPEN} AND {DUE}", 2)
UPDATE_DUE = (f"(d.status='{DELIVERED}' AND d.update_pending=TRUE AND (d.claimed_until IS NULL OR d.claimed_until<?))", 1)

# The claim of a pending send starts the window an earlier copy could have landed in (see
# ClaimedRow.send_started_at); a row claimed back in doubt, or an update's, keeps its start.
# `{prior}` is the row's status before the claim; one parameter (`now`).
_SEND_STARTED = f"send_started_at=CASE WHEN {{prior}}='{PENDING}' THEN ? ELSE d.send_started_at END"


@dataclass(slots=True)
class ClaimedRow:
    """A delivery row this worker has just claimed, as plain values."""

    id: int
    notice_id: int
    member_id: int
    kind: str
    sequence: int
    platform: str
    workspace_id: str
    variant: str
    attempts: int
    channel_id: str
    message_id: str
    rendered_revision: int
    update_seq: int  # the flags raised for its in-place update so far (see Delivery.update_seq)
    maybe_sent: bool  # claimed back from an expired claim: an earlier send may have landed
    # When the first attempt that may have posted this copy was claimed (the claim of the row
    # while pending; kept while it is in doubt): an earlier copy can only be newer. None: unknown
    # (claimed before migration 0027).
    send_started_at: datetime | None
    history_read_to: str  # where the look for it in doubt goes on (Delivery.history_read_to)
    account_id: int | None  # None: the member's platform account was removed
    recipient: Recipient | None
    app_removed: bool  # the member removed Herald on the account's platform (Teams: app_installs)
    member_label: str  # the member's name, or their email when the directory has no name
    notice_stamp: NoticeStamp  # the notice as the claim saw it
    acknowledged_at: datetime | None  # the member's acknowledgement of the notice's current ack revision
    importance: str  # the notice's
    member_hours: MemberHours  # the member's, as the claim read them
    topic: str  # the notice's
    topic_opt_outs: frozenset[str]  # the topics the member has left, as the claim read them


@dataclass(frozen=True, slots=True)
class MemberHours:
    """A member's time zone and quiet hours (None: the defaults), as stored."""

    timezone: str
    quiet_start: int | None
    quiet_end: int | None


# Notice copies held for the end of the member's quiet hours (need-to-know).
_QUIET_HOURS_LEVELS = frozenset(p.level.value for p in IMPORTANCE.values() if p.dm_now and p.respects_quiet_hours)


def not_before(row: ClaimedRow, now: datetime) -> datetime | None:
    """When a claimed send may reach the member, if not now: a need-to-know copy at the end of
    their quiet hours (weekends do not count), a reminder in their working hours (weekdays). The
    time was also checked when the row was written, but a row can be sent much later (Herald was
    down, the lane paused by a rate limit, a backlog) and the member may have changed their zone
    or hours since. None: now (must-know copies are not looked at)."""
    reminder = row.kind == DeliveryKind.REMINDER.value
    if not reminder and row.importance not in _QUIET_HOURS_LEVELS:
        return None
    hours = row.member_hours
    moment = next_working_moment(now, hours.timezone, quiet_start=hours.quiet_start, quiet_end=hours.quiet_end,
                                 skip_weekends=reminder)
    return moment if moment > now else None


async def retime_held_copies(member_id: int, hours: MemberHours, now: datetime,
                             using_db: BaseDBAsyncClient) -> int:
    """The member's need-to-know copies held for their quiet hours (pending, unclaimed, never
    tried, due later: held when written or by `hold_rows`, both of which set due_since with
    next_attempt_at; a retry moves only next_attempt_at) become due when the quiet hours of
    `hours` end, or now if those do not hold them: earlier or later than the hours they were held
    for (the member has just chosen a zone or quiet hours). Returns how many moved."""
    rows = await Delivery.filter(
        member_id=member_id, kind=DeliveryKind.NOTICE.value, status=DeliveryStatus.PENDING.value, claimed_by="",
        attempts=0, next_attempt_at__gt=now, notice__importance__in=sorted(_QUIET_HOURS_LEVELS),
    ).using_db(using_db).values_list("id", "next_attempt_at", "due_since")
    held = [row_id for row_id, due, since in rows if since is not None and as_datetime(since) == as_datetime(due)]
    if not held:
        return 0
    moment = max(now, next_working_moment(now, hours.timezone, quiet_start=hours.quiet_start,
                                          quiet_end=hours.quiet_end, skip_weekends=False))
    return await Delivery.filter(id__in=held, status=DeliveryStatus.PENDING.value, claimed_by="").using_db(
        using_db).update(next_attempt_at=moment, due_since=moment, updated_at=now)


@dataclass(frozen=True, slots=True)
class NoticeStamp:
    """What a notice's rendered view depends on that changes after it is sent: equal stamps, equal
    views (its text changes only with its revision; a retraction changes its status)."""

    revision: int
    ack_revision: int
    status: str
    survey_id: int | None
    survey_closes_at: datetime | None
    survey_closed_at: datetime | None

    @classmethod
    def of(cls, notice: Notice, survey: Survey | None) -> NoticeStamp:
        """The stamp of a notice (and its survey) as loaded, to compare with a claim's."""
        return cls(notice.revision, notice.ack_revision, notice.status, survey.id if survey else None,
                   survey.closes_at if survey else None, survey.closed_at if survey else None)


async def claim_rows(lane: tuple[str, str], due: tuple[str, int], new_status: str, limit: int, token: str,
                     now: datetime, lease_until: datetime, *, only_ids: Sequence[int] | None = None,
                     ) -> list[ClaimedRow]:
    """Claim up to `limit` rows of the lane matching `due` (SEND_DUE or UPDATE_DUE), oldest first:
    set `new_status`, claimed by `token` until `lease_until`. Returns them in id order."""
    predicate, nparams = due
    where = f"d.platform=? AND d.workspace_external_id=? AND {predicate}"
    params: list[Any] = [lane[0], lane[1], *([now] * nparams)]
    conn = connections.get("default")
    if storage_db.dialect() == "postgres":
        if only_ids is not None:
            where += " AND d.id = ANY(?::int[])"
            params.append(list(only_ids))
        query = (f"WITH c AS (SELECT d.id, d.status, d.account_id, d.member_id, d.notice_id FROM delivery d "
                 f"WHERE {where} ORDER BY d.id LIMIT ? FOR UPDATE SKIP LOCKED) "
                 f"UPDATE delivery d SET status=?, claimed_by=?, claimed_until=?, "
                 f"{_SEND_STARTED.format(prior='c.status')} "
                 f"FROM c LEFT JOIN platform_account a ON a.id=c.account_id JOIN member m ON m.id=c.member_id "
                 f"{_joins('c')} WHERE d.id=c.id RETURNING {_COLUMNS}, c.status AS prior_status")
        rows = await conn.execute_query_dict(storage_db.placeholders(query),
                                             [*params, limit, new_status, token, lease_until, now])
        return sorted((_row(r) for r in rows), key=lambda r: r.id)
    select_where, select_params = where, params
    if only_ids is not None:
        select_where += f" AND d.id IN ({','.join('?' * len(only_ids))})"
        select_params = [*params, *only_ids]
    candidates = await conn.execute_query_dict(
        f"SELECT {_COLUMNS}, d.status AS prior_status FROM delivery d "
        f"LEFT JOIN platform_account a ON a.id=d.account_id JOIN member m ON m.id=d.member_id {_joins('d')} "
        f"WHERE {select_where} ORDER BY d.id LIMIT ?", [*select_params, limit])
    if not candidates:
        return []
    # Claim only the rows still as they were read (status and due), so `maybe_sent` is exact. By id
    # (NOT INDEXED: rowid look-ups only): SQLite otherwise answers the repeated due predicate from
    # the status indexes, reading every due row of the lane for each window claimed.
    by_status: dict[str, list[int]] = {}
    for r in candidates:
        by_status.setdefault(r["prior_status"], []).append(r["id"])
    clauses, values = [], []
    for status, ids in by_status.items():
        clauses.append(f"(d.id IN ({','.join('?' * len(ids))}) AND d.status=?)")
        values.extend([*ids, status])
    claimed = await conn.execute_query_dict(
        f"UPDATE delivery AS d NOT INDEXED SET status=?, claimed_by=?, claimed_until=?, "
        f"{_SEND_STARTED.format(prior='d.status')} "
        f"WHERE ({' OR '.join(clauses)}) AND {where} RETURNING id",
        [new_status, token, lease_until, now, *values, *params])
    ids = {r["id"] for r in claimed}
    # as the UPDATE wrote it (PostgreSQL's RETURNING gives the written value)
    return [_row({**r, "send_started_at": now} if r["prior_status"] == PENDING else r)
            for r in candidates if r["id"] in ids]


def _row(r: Any) -> ClaimedRow:
    account_id = r["account_id"]
    recipient = None
    if account_id is not None:
        recipient = Recipient(workspace_id=r["account_workspace"], user_id=r["user_id"], dm_channel=r["dm_channel"],
                              service_url=r["service_url"], display_name=r["member_name"])
    return ClaimedRow(
        id=r["id"], notice_id=r["notice_id"], member_id=r["member_id"], kind=r["kind"], sequence=r["sequence"],
        platform=r["platform"], workspace_id=r["workspace_id"], variant=r["variant"], attempts=r["attempts"],
        channel_id=r["channel_id"], message_id=r["message_id"], rendered_revision=r["rendered_revision"],
        update_seq=r["update_seq"], maybe_sent=r["prior_status"] == SENDING,
        send_started_at=as_datetime(r["send_started_at"]), history_read_to=r["history_read_to"] or "",
        account_id=account_id, recipient=recipient,
        app_removed=r["app_removed_at"] is not None,
        member_label=r["member_name"] or r["member_email"],
        notice_stamp=NoticeStamp(r["n_revision"], r["n_ack_revision"], r["n_status"], r["s_id"],
                                 as_datetime(r["s_closes_at"]), as_datetime(r["s_closed_at"])),
        acknowledged_at=as_datetime(r["acknowledged_at"]), importance=r["n_importance"],
        member_hours=MemberHours(r["member_timezone"], r["quiet_start"], r["quiet_end"]),
        topic=r["n_topic"], topic_opt_outs=_opt_outs(r["topic_opt_outs"]))


def _opt_outs(stored: Any) -> frozenset[str]:
    """Member.topic_opt_outs as a raw query returns it: JSON text (SQLite, and PostgreSQL's jsonb
    without a codec) or already a list."""
    if isinstance(stored, (str, bytes)):
        stored = json.loads(stored)
    return frozenset(stored or ())


# Sends put back unsent until their member's working moment (see `not_before`): due then, as if
# never claimed; one claimed back in doubt (an earlier attempt may have landed) stays in doubt
# until then, when the channel looks for the earlier message first (as the outbox's _IN_DOUBT_UNTIL).
_HOLD_SQL = ("UPDATE delivery SET status=?, next_attempt_at=?, due_since=?, claimed_until=?, claimed_by='', "
             "updated_at=? WHERE id=? AND claimed_by=? RETURNING id")
_HOLD_PG = ("UPDATE delivery d SET status=v.status, next_attempt_at=v.until, due_since=v.until, "
            "claimed_until=v.in_doubt_until, claimed_by='', updated_at=$5 "
            "FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::timestamptz[]) "
            "AS v(id, status, until, in_doubt_until) WHERE d.id=v.id AND d.claimed_by=$6 RETURNING d.id")


async def hold_rows(held: Sequence[tuple[ClaimedRow, datetime]], token: str, now: datetime,
                    using_db: BaseDBAsyncClient) -> set[int]:
    """Put claimed sends back, each due at its time, without an attempt; returns the ids of those
    still claimed by `token` (the others are no longer ours to change)."""
    values = [(row.id, SENDING if row.maybe_sent else PENDING, until, until if row.maybe_sent else None)
              for row, until in held]
    if using_db.capabilities.dialect == "postgres":
        rows = await using_db.execute_query_dict(_HOLD_PG, [*storage_db.columns(values), now, token])
        return {r["id"] for r in rows}
    done: set[int] = set()
    for row_id, status, until, in_doubt_until in values:
        rows = await using_db.execute_query_dict(_HOLD_SQL, [status, until, until, in_doubt_until, now, row_id, token])
        done.update(r["id"] for r in rows)
    return done


async def complete_sent_notices(now: datetime, notice_ids: Collection[int] | None = None, *,
                                using_db: BaseDBAsyncClient | None = None) -> int:
    """Mark sent the notices (these, or every one being sent) none of whose copies is still to be
    sent, in one statement; returns how many. The outbox runs it with a group's outcomes, a
    workspace's removal with the copies it fails, and the clock's tick for all (a replica may die
    between storing a notice's last copies and marking it sent)."""
    which, params = "", []
    if notice_ids is not None:
        if not notice_ids:
            return 0
        predicate, ids = storage_db.in_ids("id", sorted(notice_ids))
        which, params = f"{predicate} AND", [ids]
    conn = using_db or connections.get("default")
    changed, _ = await conn.execute_query(storage_db.placeholders(_COMPLETE_SQL.format(which=which)),
                                          [NoticeStatus.SENT.value, now, *params])
    return changed


async def defer_updates(lane: tuple[str, str], until: datetime, now: datetime) -> None:
    """The lane's due in-place updates become due at `until` (its update budget is spent): the
    scheduler sleeps until then instead of taking the lane again and again for nothing."""
    predicate, nparams = UPDATE_DUE
    await connections.get("default").execute_query(storage_db.placeholders(
        f"UPDATE delivery AS d SET claimed_until=? WHERE d.platform=? AND d.workspace_external_id=? AND {predicate}"),
        [until, lane[0], lane[1], *([now] * nparams)])
