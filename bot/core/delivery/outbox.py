"""The delivery engine: a lane scheduler (bot.core.delivery.lanes) that sends every outbound
request of Herald's sources, paced per workspace/tenant, and records each outcome as it returns.

Correctness lives in the database:
- a lane (platform, workspace/tenant) is worked by one replica at a time, under a short lease
  renewed by a heartbeat; a 429's Retry-After pauses the lane in the database for every replica;
- a row is claimed by a conditional UPDATE (and, on PostgreSQL, `FOR UPDATE SKIP LOCKED`) a few
  at a time (no more than the lane's in-flight cap), its claim tied to the lane's lease;
- outcomes are written as they return, grouped a few milliseconds at a time, so after a crash
  only the rows that were in flight are in doubt: they come back when the lease runs out and are
  re-sent only after the channel has checked that the earlier attempt did not land.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.common import metrics
from bot.common.clock import Clock
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.lanes import (
    Lane,
    LaneBudgets,
    LaneSettings,
    LaneSource,
    LaneStore,
    Lease,
    PriorityGate,
    lanes_with_due_rows,
    renew_claims,
)
from bot.core.delivery.notice_rows import (
    SEND_DUE,
    UPDATE_DUE,
    UPDATE_FAILED,
    ClaimedRow,
    NoticeStamp,
    claim_rows,
    complete_sent_notices,
    defer_updates,
    hold_rows,
    not_before,
)
from bot.core.delivery.retry import RetryPolicy
from bot.core.directory.app_installs import APP_REMOVED, app_removed
from bot.core.directory.preferences import opt_outs_apply
from bot.core.directory.workspaces import deactivate_refused, removed_reason, tenant_blocked
from bot.core.notices.reminders import schedule_for
from bot.core.notices.row_views import FixedExtras, NoticeExtras, RowExtras, copy_view, load_extras
from bot.core.notices.views import Acknowledged, NoticeView, notice_view
from bot.core.ports import (
    CREDENTIALS_REFUSED,
    Channel,
    CredentialsRefused,
    MessageRef,
    Outcome,
    OutcomeKind,
    RateLimited,
    UpdateRefused,
)
from bot.topics import TopicCatalog, parse_importance
from storage import db as storage_db
from storage.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Notice,
    NoticeStatus,
    Platform,
)

log = logging.getLogger(__name__)

LANE_WORKER = "herald-lane-"  # a lane worker's task is named so, then its lane: "herald-lane-slack-T0123"

# One parameterised statement per group of outcomes (storage.db.write_rows) instead of an ORM bulk update:
# the ORM builds a CASE expression per column per row, which cost more than the sends
# (bench/fanout.py). `claimed_by` in the WHERE clause: a row whose claim was taken over is no
# longer ours to write.
# Columns a send's outcome leaves unchanged are passed as NULL and kept (COALESCE), so the claim need
# not read them; next_reminder_at may be set to NULL, hence its flag.
# A copy sent while its notice changed (edited, retracted, its survey closed) after the claim read
# it shows the notice as it was: it is flagged for an in-place update as it is stored. (The change
# flags copies in flight, but one whose claim read it before the change and marked it in flight
# after, unseen by the change, would otherwise keep the old text.)
# A retry in doubt (Outcome.in_doubt) stays `sending`, unclaimed, until its retry is due: it is
# then claimed back as after a crash, and the channel looks for the earlier message first.
_IN_DOUBT_UNTIL = "CASE WHEN {status}='" + DeliveryStatus.SENDING.value + "' THEN {at} ELSE NULL END"
_CHANGED = ("EXISTS (SELECT 1 FROM notice n WHERE n.id={row}.notice_id AND (n.revision<>{revision} "
            "OR (n.status='" + NoticeStatus.RETRACTED.value + "')<>{retracted} "
            "OR EXISTS (SELECT 1 FROM survey s WHERE s.notice_id=n.id AND s.closed_at IS NOT NULL)<>{closed}))")
_STORE_SQL = ("UPDATE delivery SET status=?, attempts=?, next_attempt_at=COALESCE(?, next_attempt_at), claimed_by='', "
              "channel_id=?, message_id=?, error=COALESCE(?, error), delivered_at=COALESCE(?, delivered_at), "
              "rendered_revision=?, next_reminder_at=CASE WHEN ?=1 THEN ? ELSE next_reminder_at END, updated_at=?, "
              "update_pending=CASE WHEN ?='" + DeliveryStatus.DELIVERED.value + "' AND "
              + _CHANGED.format(row="delivery", revision="?", retracted="?", closed="?")
              + " THEN TRUE ELSE update_pending END, claimed_until=" + _IN_DOUBT_UNTIL.format(status="?", at="?")
              + " WHERE id=? AND claimed_by=?")
# An update clears its flag only if no new flag was raised while it was in flight (`update_seq`).
_UPDATE_SQL = ("UPDATE delivery SET update_pending=CASE WHEN update_seq=? THEN ? ELSE TRUE END, rendered_revision=?, "
               "claimed_by='', claimed_until=?, error=?, updated_at=? WHERE id=? AND claimed_by=?")
# A newly opened DM conversation, with the service URL it was opened on (Teams; Slack has none and
# keeps the column as it is).
_DM_CACHE_SQL = ("UPDATE platform_account SET dm_channel=?, service_url=COALESCE(NULLIF(?, ''), service_url), "
                 "updated_at=? WHERE id=?")
# A copy that goes back to pending (a retry, a deferral) is never sent if, meanwhile, its notice was
# retracted, its survey closed (or its close date passed; parameter: now) or (a reminder) the
# member acknowledged: those cancelled the pending copies, but this one was in flight then.
_RETRACTED = f"notice_id IN (SELECT id FROM notice WHERE status='{NoticeStatus.RETRACTED.value}')"
_SURVEY_CLOSED = "notice_id IN (SELECT notice_id FROM survey WHERE closed_at IS NOT NULL OR closes_at<=?)"
_CANCEL_UNWANTED_SQL = (
    f"UPDATE delivery SET status='{DeliveryStatus.CANCELLED.value}', next_reminder_at=NULL, "
    f"error=CASE WHEN {_RETRACTED} THEN 'retracted before it was sent' "
    f"WHEN {_SURVEY_CLOSED} THEN 'the survey closed before it was sent' ELSE 'acknowledged before it was sent' END "
    f"WHERE {{ids}} AND status='{DeliveryStatus.PENDING.value}' AND ({_RETRACTED} OR {_SURVEY_CLOSED} "
    f"OR (kind='{DeliveryKind.REMINDER.value}' AND EXISTS (SELECT 1 FROM acknowledgement k JOIN notice n "
    f"ON n.id=k.notice_id WHERE k.notice_id=delivery.notice_id AND k.member_id=delivery.member_id "
    f"AND k.revision=n.ack_revision))) RETURNING id, notice_id, member_id, platform, kind, error")
# A copy whose member has left its topic since it was written (`_left_topic`), cancelled as it is
# claimed: parameters error, now, the ids (storage_db.in_ids), the claim's token.
LEFT_TOPIC = "left the topic before it was sent"
_CANCEL_LEFT_TOPIC_SQL = (f"UPDATE delivery SET status='{DeliveryStatus.CANCELLED.value}', error=?, next_reminder_at=NULL, "
                          "claimed_by='', claimed_until=NULL, updated_at=? WHERE {ids} AND claimed_by=? "
                          "RETURNING id, notice_id, member_id, platform, kind")
# Where a look for a copy in doubt goes on (Delivery.history_read_to): rare, so a statement of its own.
_LOOK_SQL = "UPDATE delivery SET history_read_to=? WHERE id=? AND claimed_by=?"
_LOOK_PG = ("UPDATE delivery d SET history_read_to=v.read_to FROM unnest($1::text[], $2::int[], $3::text[]) "
            "AS v(read_to, id, token) WHERE d.id=v.id AND d.claimed_by=v.token")
# PostgreSQL: the same three, each one statement for the whole group (storage.db.write_rows)
_STORE_PG = (
    "UPDATE delivery d SET status=v.status, attempts=v.attempts, "
    "next_attempt_at=COALESCE(v.next_attempt_at, d.next_attempt_at), claimed_by='', "
    "claimed_until=" + _IN_DOUBT_UNTIL.format(status="v.status", at="v.next_attempt_at") + ", "
    "channel_id=v.channel_id, message_id=v.message_id, error=COALESCE(v.error, d.error), "
    "delivered_at=COALESCE(v.delivered_at, d.delivered_at), rendered_revision=v.rendered_revision, "
    "next_reminder_at=CASE WHEN v.set_reminder=1 THEN v.next_reminder_at ELSE d.next_reminder_at END, "
    "updated_at=v.updated_at, "
    "update_pending=CASE WHEN v.status='" + DeliveryStatus.DELIVERED.value + "' AND "
    + _CHANGED.format(row="d", revision="v.rendered_revision", retracted="v.retracted", closed="v.survey_closed")
    + " THEN TRUE ELSE d.update_pending END "
    "FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], "
    "$8::int[], $9::int[], $10::timestamptz[], $11::timestamptz[], $12::boolean[], $13::boolean[], $14::int[], "
    "$15::text[]) "
    "AS v(status, attempts, next_attempt_at, channel_id, message_id, error, delivered_at, rendered_revision, "
    "set_reminder, next_reminder_at, updated_at, retracted, survey_closed, id, token) "
    "WHERE d.id=v.id AND d.claimed_by=v.token")
_UPDATE_PG = (
    "UPDATE delivery d SET update_pending=CASE WHEN d.update_seq=v.seq THEN v.pending ELSE TRUE END, "
    "rendered_revision=v.revision, claimed_by='', claimed_until=v.until, error=v.error, updated_at=v.updated_at "
    "FROM unnest($1::int[], $2::boolean[], $3::int[], $4::timestamptz[], $5::text[], $6::timestamptz[], $7::int[], "
    "$8::text[]) AS v(seq, pending, revision, until, error, updated_at, id, token) "
    "WHERE d.id=v.id AND d.claimed_by=v.token")
_DM_CACHE_PG = ("UPDATE platform_account a SET dm_channel=v.dm_channel, "
                "service_url=COALESCE(NULLIF(v.service_url, ''), a.service_url), updated_at=v.updated_at "
                "FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) "
                "AS v(dm_channel, service_url, updated_at, id) WHERE a.id=v.id")
UPDATE_RETRY = timedelta(minutes=1)
UPDATE_LOOK_SECONDS = 0.5
# Claims one claim of sends may make while the rows it finds have to be held (a backlog found in
# the members' quiet hours); then it returns what it has, and the lane gets another turn.
HOLD_ROUNDS = 64
SHARED_PARTS_KEPT = 256  # notices whose shared view parts a source keeps (NoticeSource._shared_parts)


@dataclass(slots=True)
class Job:
    """One claimed row: a send (notice or reminder) or an in-place update of a delivered message."""

    row: ClaimedRow
    token: str
    view: NoticeView
    notice: Notice
    update: bool = False
    stored: bool = False  # its outcome is written (a retried record() must not audit it twice)
    unreachable: str = ""  # why nothing can go out in its lane (a Teams tenant whose admin blocked Herald)

    @property
    def maybe_sent(self) -> bool:  # claimed back from an expired claim: an earlier send may have landed
        return self.row.maybe_sent


@dataclass(slots=True)
class _Result:
    """A send's outcome as the row's new values (written by _STORE_SQL, audited, counted)."""

    status: str
    attempts: int
    error: str | None  # None: unchanged
    channel_id: str
    message_id: str
    rendered_revision: int
    next_attempt_at: datetime | None = None  # None: unchanged
    delivered_at: datetime | None = None  # None: unchanged
    set_reminder: bool = False
    next_reminder_at: datetime | None = None


def _update_due(now: datetime) -> Q:
    return Q(status=DeliveryStatus.DELIVERED.value, update_pending=True) & (
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def _still_wanted(row: ClaimedRow, now: datetime, catalog: TopicCatalog) -> bool:
    """The claimed send is still to be made: its notice was not retracted, its survey has not
    closed, (a reminder) the member has not acknowledged, and the member has not left its topic
    (`_left_topic`), since it was written."""
    stamp = row.notice_stamp
    return not (stamp.status == NoticeStatus.RETRACTED.value or stamp.survey_closed_at is not None or (
        stamp.survey_closes_at is not None and stamp.survey_closes_at <= now) or (
        row.kind == DeliveryKind.REMINDER.value and row.acknowledged_at is not None) or _left_topic(row, catalog))


def _left_topic(row: ClaimedRow, catalog: TopicCatalog) -> bool:
    """The member has left the copy's topic since it was written (held for their quiet hours, a
    backlog), and its importance and the topic let them (publish's rule, `opt_outs_apply`): as a
    digest not yet sent drops the topic. A topic no longer in the catalog cannot say: kept."""
    topic = catalog.topics.get(row.topic)
    return (row.topic in row.topic_opt_outs and topic is not None
            and opt_outs_apply(topic, parse_importance(row.importance)))


def _listed(lane: Lane, lanes: set[Lane] | None) -> bool:
    """The lane is among `lanes`, or nobody has looked yet."""
    return lanes is None or lane in lanes


@dataclass(frozen=True, slots=True)
class _SharedParts:
    """What every row of a notice shows alike, as of `stamp` (the notice as loaded)."""

    stamp: NoticeStamp
    notice: Notice
    view: NoticeView
    extras: NoticeExtras

    @classmethod
    def of(cls, notice: Notice, extras: NoticeExtras, catalog: TopicCatalog) -> _SharedParts:
        return cls(NoticeStamp.of(notice, extras.survey), notice, notice_view(notice, catalog), extras)


class NoticeSource:
    """Notice deliveries, reminders and in-place updates (edits, retractions, acknowledgements)."""

    name = "notices"
    priority = 10

    def __init__(self, outbox: "Outbox") -> None:
        self.outbox = outbox
        self._updates_looked: dict[str, float] = {}  # claim token (one lane turn) -> when updates were looked for
        self._shared: dict[int, _SharedParts] = {}  # notice id -> its rows' shared view parts, oldest first
        # Lanes with sends / in-place updates due, as due_lanes last saw them (None: not looked yet).
        # The scheduler looks on every wake, so a lane's claim asks only for the kind due in it: an
        # acknowledgement's update otherwise cost an empty claim of sends as well.
        self._due_sends: set[Lane] | None = None
        self._due_updates: set[Lane] | None = None
        self._sent_in_turn: dict[str, set[int]] = {}  # claim token -> notices with copies recorded in it

    async def turn_ended(self, token: str) -> None:
        """Mark sent the notices of this turn's copies that have none left to send, once per turn
        (at most `quantum` items) rather than after every group of outcomes (a statement and a
        round trip each, while the group's rows still held the lane's window). A replica that dies
        before this leaves them to the clock's tick, which completes every notice."""
        self._updates_looked.pop(token, None)
        notices = self._sent_in_turn.pop(token, None)
        if notices:
            await complete_sent_notices(self.outbox.clock.now(), notices)

    # ---- LaneSource -----------------------------------------------------------------------

    async def due_lanes(self, now: datetime) -> set[Lane]:
        sends = await lanes_with_due_rows("delivery", now)
        updates = {(p, w) for p, w in await Delivery.filter(_update_due(now)).distinct().limit(5000).values_list(
            "platform", "workspace_external_id")}
        self._due_sends, self._due_updates = sends, updates
        return sends | updates

    async def claim(self, lane: Lane, limit: int, token: str, now: datetime, lease_until: datetime,
                    *, only_ids: list[int] | None = None) -> list[Job]:
        """In-place updates first (few, and someone is looking at them), then sends. Updates are
        looked for at the start of a lane's turn and then at most every UPDATE_LOOK_SECONDS."""
        jobs: list[Job] = []
        looked = self._updates_looked.get(token)
        if only_ids is not None or (_listed(lane, self._due_updates) and (
                looked is None or time.monotonic() - looked >= UPDATE_LOOK_SECONDS)):
            self._updates_looked[token] = time.monotonic()
            budget = self.outbox.update_budgets
            allowed = budget.take(lane, limit)
            if allowed:
                rows = await claim_rows(lane, UPDATE_DUE, DeliveryStatus.DELIVERED.value, allowed, token, now,
                                        lease_until, only_ids=only_ids)
                budget.give_back(lane, allowed - len(rows))
                jobs = await self._jobs(rows, token, update=True)
            else:
                await defer_updates(lane, budget.next_token_at(lane), now)
        room = limit - len(jobs)
        if only_ids is None and room > 0 and _listed(lane, self._due_sends):
            rows = await self._claim_sends(lane, room, token, now, lease_until)
            jobs += await self._jobs(rows, token, update=False)
        if jobs and lane[0] == Platform.TEAMS.value and await tenant_blocked(lane[1]):
            # its admin blocked Herald: every request would be refused (Slack's channel knows a removed
            # workspace from its token); they fail without one, and are sent when it is allowed again
            for job in jobs:
                job.unreachable = removed_reason(*lane)
        return jobs

    async def _claim_sends(self, lane: Lane, limit: int, token: str, now: datetime,
                           lease_until: datetime) -> list[ClaimedRow]:
        """Claim up to `limit` due sends. One the member may not get now (`not_before`: a
        need-to-know copy in their quiet hours, a reminder outside their working hours) is put
        back until then instead, and its room is claimed again (one no longer wanted, e.g. of a
        retracted notice, goes on to be cancelled as `send` finds it): fewer rows than `limit` still
        means the lane has no more sends due (see Outbox._claim)."""
        sendable: list[ClaimedRow] = []
        for _ in range(HOLD_ROUNDS):
            room = limit - len(sendable)
            rows = await claim_rows(lane, SEND_DUE, DeliveryStatus.SENDING.value, room, token, now, lease_until)
            claimed = len(rows)
            # one in doubt is looked for first (`send`, not wanted): if it did not land, it is pending
            # again, and cancelled here when next claimed
            left = [row for row in rows if not row.maybe_sent and _left_topic(row, self.outbox.catalog)]
            if left:
                await self._cancel_left_topic(left, token, now)
                gone = {row.id for row in left}
                rows = [row for row in rows if row.id not in gone]
            held = [(row, until) for row in rows
                    if (until := not_before(row, now)) is not None and _still_wanted(row, now, self.outbox.catalog)]
            if held:
                await self._hold(held, token, now)
                kept = {row.id for row, _ in held}
                rows = [row for row in rows if row.id not in kept]
            sendable += rows
            if not (held or left) or claimed < room:
                break
        return sendable

    async def _cancel_left_topic(self, rows: list[ClaimedRow], token: str, now: datetime) -> None:
        """Cancel claimed copies whose members have left their topic (`LEFT_TOPIC`), each audited
        as `delivery.cancelled`, and mark sent the notices that leaves with nothing to send."""
        predicate, ids = storage_db.in_ids("id", [row.id for row in rows])
        async with in_transaction() as conn:
            cancelled = await conn.execute_query_dict(storage_db.placeholders(
                _CANCEL_LEFT_TOPIC_SQL.format(ids=predicate)), [LEFT_TOPIC, now, ids, token])
            await record([audit_event("delivery.cancelled", now=now, notice_id=c["notice_id"], member_id=c["member_id"],
                                      platform=c["platform"], delivery_id=c["id"], copy=c["kind"], reason=LEFT_TOPIC)
                          for c in cancelled], using_db=conn)
            await complete_sent_notices(now, {c["notice_id"] for c in cancelled}, using_db=conn)

    async def _hold(self, held: list[tuple[ClaimedRow, datetime]], token: str, now: datetime) -> None:
        """Put the rows back until their time, with a `delivery.held` audit event each."""
        async with in_transaction() as conn:
            ids = await hold_rows(held, token, now, conn)
            await record([audit_event("delivery.held", now=now, notice_id=row.notice_id, member_id=row.member_id,
                                      platform=row.platform, delivery_id=row.id, copy=row.kind, until=until,
                                      reason="outside working hours" if row.kind == DeliveryKind.REMINDER.value
                                      else "quiet hours")
                          for row, until in held if row.id in ids], using_db=conn)

    def cost(self, job: Job) -> int:
        """Requests the job makes against the lane's budget: a Teams member never messaged before
        needs a 1:1 conversation created first (Slack posts to the user id: one request)."""
        recipient = job.row.recipient
        if not job.update and job.row.platform == "teams" and recipient is not None and not recipient.dm_channel:
            return 2
        return 1

    async def send(self, job: Job, channel: Channel | None) -> Outcome:
        row = job.row
        if channel is None:
            return Outcome.failed(f"{row.platform.title()} is not configured in Herald")
        if job.unreachable:  # see claim
            return Outcome.failed(job.unreachable)
        if row.app_removed:  # the platform would refuse it (403); an install puts it back (app_installs)
            return Outcome.failed(APP_REMOVED)
        if job.update:
            ref = MessageRef(row.channel_id, row.message_id)
            try:
                await channel.update(row.workspace_id, ref, job.view)
            except RateLimited as exc:  # due again after its Retry-After; see _updates_throttled
                self._updates_throttled(job, exc)
                return Outcome.retry(str(exc), retry_after=exc.retry_after, throttled=True,
                                     method_only=exc.method_only)
            except CredentialsRefused as exc:  # Herald's credentials, not the update: pending, Outbox pauses
                return Outcome.refused_credentials(str(exc))
            except UpdateRefused as exc:  # no retry will change it: recorded, not tried again
                if exc.removed_cause:  # Herald's token is dead for the workspace: _send_one deactivates it
                    return Outcome.removed(exc.removed_cause, str(exc), token_fingerprint=exc.token_fingerprint)
                return Outcome.failed(str(exc))
            return Outcome.delivered(ref)
        if row.recipient is None:
            return Outcome.failed("the member's platform account was removed")
        wanted = _still_wanted(row, self.outbox.clock.now(), self.outbox.catalog)
        if not wanted and not row.maybe_sent:
            # back to pending, where _store cancels it. A copy in doubt is looked for first: if it
            # landed, it is recorded and updated to show the change; if not, it is cancelled too.
            return Outcome.deferred(0)
        return await channel.deliver(row.recipient, job.view, delivery_id=row.id, maybe_sent=row.maybe_sent,
                                     wanted=wanted, since=row.send_started_at,
                                     read_to=row.history_read_to if row.maybe_sent else "")

    def _updates_throttled(self, job: Job, exc: RateLimited) -> None:
        """A 429 on an update that limits the update method alone (Slack: chat.update, Tier 3)
        holds back the lane's updates until its Retry-After, through the lane's update budget
        (handed on with the lease); the lane's sends go on. Any other 429 pauses the whole lane
        (Outbox._send_one)."""
        if exc.method_only:
            lane = (job.row.platform, job.row.workspace_id)
            wait = timedelta(seconds=exc.retry_after) if exc.retry_after else UPDATE_RETRY
            self.outbox.update_budgets.pause(lane, self.outbox.clock.now() + wait)

    async def record(self, results: list[tuple[Job, Outcome]], now: datetime) -> None:
        """Two writes (outcomes with their audit events, in-place updates); safe to call again
        with the same results after either failed: what was stored is skipped. The notices are
        marked sent when the turn ends (`turn_ended`)."""
        updates = [(j, o) for j, o in results if j.update and not j.stored]
        if unstored := [(j, o) for j, o in results if not j.update and not j.stored]:
            await self._store(unstored, now)
            for job, _ in unstored:
                job.stored = True
                self._sent_in_turn.setdefault(job.token, set()).add(job.notice.id)
        if updates:
            await self._store_updates(updates, now)
            for job, _ in updates:
                job.stored = True

    async def renew(self, token_prefix: str, until: datetime, exclude: Collection[int] = ()) -> None:
        await renew_claims("delivery", token_prefix, until, exclude_ids=exclude)

    async def next_due(self, lanes: Iterable[Lane] | None, now: datetime) -> datetime | None:
        times = [
            await Delivery.filter(status=DeliveryStatus.PENDING.value, next_attempt_at__gt=now).order_by(
                "next_attempt_at").first().values_list("next_attempt_at", flat=True),
            await Delivery.filter(status=DeliveryStatus.SENDING.value, claimed_until__gte=now).order_by(
                "claimed_until").first().values_list("claimed_until", flat=True),
            await Delivery.filter(status=DeliveryStatus.DELIVERED.value, update_pending=True,
                                  claimed_until__gte=now).order_by("claimed_until").first().values_list(
                                      "claimed_until", flat=True),
        ]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    # ---- claiming ------------------------------------------------------------------------

    async def _jobs(self, rows: list[ClaimedRow], token: str, *, update: bool) -> list[Job]:
        if not rows:
            return []
        notices, views = await self._views(rows)
        return [Job(row, token=token, view=views[row.id], notice=notices[row.notice_id], update=update)
                for row in rows]

    # ---- rendering ------------------------------------------------------------------------

    async def _views(self, rows: list[ClaimedRow]) -> tuple[dict[int, Notice], dict[int, NoticeView]]:
        """The current view of each row's message: revision, retraction, the member's
        acknowledgement, and for reminders a pointer to the original."""
        now = self.outbox.clock.now()
        shared = await self._shared_parts(rows)
        extras = RowExtras.of({nid: p.extras for nid, p in shared.items()}, now=now)
        originals = {}
        if any(r.kind == DeliveryKind.REMINDER.value for r in rows):
            notice_ids, member_ids = list(shared), list({r.member_id for r in rows})
            for o in await Delivery.filter(notice_id__in=notice_ids, member_id__in=member_ids,
                                           kind=DeliveryKind.NOTICE.value).values(
                                               "notice_id", "member_id", "platform", "channel_id", "message_id"):
                originals[(o["notice_id"], o["member_id"], o["platform"])] = (o["channel_id"], o["message_id"])
        views = {}
        for r in rows:
            parts = shared[r.notice_id]
            acknowledged = None
            if r.acknowledged_at is not None and r.notice_stamp.ack_revision == parts.stamp.ack_revision:
                acknowledged = Acknowledged(r.member_label, r.acknowledged_at)
            reminder = r.kind == DeliveryKind.REMINDER.value
            views[r.id] = copy_view(parts.view, extras, notice_id=r.notice_id, member_id=r.member_id,
                                    variant=r.variant, tracker=self.outbox.link_tracker, acknowledged=acknowledged,
                                    reminder_number=r.sequence if reminder else 0,
                                    original_ref=originals.get((r.notice_id, r.member_id, r.platform)))
        return {nid: p.notice for nid, p in shared.items()}, views

    async def _shared_parts(self, rows: list[ClaimedRow]) -> dict[int, _SharedParts]:
        """Each notice's parts of its rows' views, loaded again only when the claim saw the notice
        changed since they were loaded (a claim of a few rows would otherwise cost three more
        queries than its own, for the same notice every time)."""
        claimed = {r.notice_id: r.notice_stamp for r in rows}
        stale = [nid for nid, stamp in claimed.items()
                 if (cached := self._shared.get(nid)) is None or cached.stamp != stamp]
        if stale:
            notices = {n.id: n for n in await Notice.filter(id__in=stale)}
            extras = await load_extras(stale)
            for nid, notice in notices.items():
                self._shared.pop(nid, None)  # re-inserted last: the oldest entries go first
                self._shared[nid] = _SharedParts.of(notice, extras[nid], self.outbox.catalog)
            while len(self._shared) > SHARED_PARTS_KEPT:
                del self._shared[next(iter(self._shared))]
        return {nid: self._shared[nid] for nid in claimed}

    # ---- recording ------------------------------------------------------------------------

    async def _store(self, results: list[tuple[Job, Outcome]], now: datetime) -> None:
        rows, events, dm_cache, back_to_pending, looks = [], [], {}, [], []
        postgres = storage_db.dialect() == "postgres"
        counted: Counter[tuple[str, str, str]] = Counter()  # for the metrics, once per group
        first_reminders = self._first_reminders({j.notice.id: j.notice for j, _ in results}, now)
        for job, outcome in results:
            row = job.row
            if outcome.dm_channel and row.account_id is not None:
                dm_cache[row.account_id] = (outcome.dm_channel, outcome.service_url)
            result = self._result(row, outcome, now, job.notice, first_reminders)
            counted[(row.platform, result.status, outcome.kind.value)] += 1
            rows.append(_store_row(result, row, now, job.token, postgres=postgres))
            event = _result_event(row, result, now)
            if event is not None:
                events.append(event)
            if result.status == DeliveryStatus.PENDING.value:
                back_to_pending.append(row.id)
            if (read_to := _history_read_to(row, outcome)) != row.history_read_to:
                looks.append((read_to, row.id, job.token))
        async with in_transaction() as conn:
            if looks:  # before the outcomes clear the claims it checks
                await storage_db.write_rows(_LOOK_SQL, looks, postgres=_LOOK_PG, using_db=conn)
            await storage_db.write_rows(_STORE_SQL, rows, postgres=_STORE_PG, using_db=conn)
            if back_to_pending:
                predicate, ids = storage_db.in_ids("id", back_to_pending)
                cancelled = await conn.execute_query_dict(
                    storage_db.placeholders(_CANCEL_UNWANTED_SQL.format(ids=predicate)), [now, ids, now])
                events += [audit_event("delivery.cancelled", now=now, notice_id=c["notice_id"], member_id=c["member_id"],
                                       platform=c["platform"], delivery_id=c["id"], copy=c["kind"], reason=c["error"])
                           for c in cancelled]
            await storage_db.write_rows(_DM_CACHE_SQL, [(c, url, now, a) for a, (c, url) in dm_cache.items()],
                                        postgres=_DM_CACHE_PG, using_db=conn)
            await record(events, using_db=conn)
        for (platform, status, reported), count in counted.items():
            metrics.delivery_recorded(platform, status, reported, count)

    async def _store_updates(self, results: list[tuple[Job, Outcome]], now: datetime) -> None:
        """Clear the updated rows' flags. An update refused for good leaves the member's copy as it
        was (maybe a retracted notice still live): it is recorded on the row and audited as
        `delivery.update_failed`, not tried again."""
        rows, events = [], []
        for job, outcome in results:
            row = job.row
            pending, revision, until, error = True, row.rendered_revision, None, ""
            if outcome.kind is OutcomeKind.DELIVERED:
                pending, revision = False, job.notice.revision
            elif outcome.kind is OutcomeKind.DEFERRED:  # not attempted: due again when the pause ends
                until = now + timedelta(seconds=outcome.retry_after or 1)
            elif outcome.kind is OutcomeKind.FAILED:  # refused for good: the message stays as it was
                pending, error = False, f"{UPDATE_FAILED}{outcome.reason}"
                events.append(audit_event("delivery.update_failed", now=now, notice_id=row.notice_id,
                                          member_id=row.member_id, platform=row.platform, delivery_id=row.id,
                                          revision=job.notice.revision, reason=outcome.reason))
            elif outcome.throttled and outcome.retry_after:  # a 429: due again when the platform said
                until = now + timedelta(seconds=outcome.retry_after)
                error = f"update pending: {outcome.reason or 'rate limited'}"
            else:  # keep the intent; try again later
                until = now + max(UPDATE_RETRY, timedelta(seconds=outcome.retry_after or 0))
                error = f"update pending: {outcome.reason or 'not attempted'}"
            rows.append((row.update_seq, pending, revision, until, error, now, row.id, job.token))
        if not events:
            await storage_db.write_rows(_UPDATE_SQL, rows, postgres=_UPDATE_PG)
            return
        async with in_transaction() as conn:
            await storage_db.write_rows(_UPDATE_SQL, rows, postgres=_UPDATE_PG, using_db=conn)
            await record(events, using_db=conn)

    def _first_reminders(self, notices: dict[int, Notice], now: datetime) -> dict[int, datetime | None]:
        """When the first reminder falls due for a must-know notice delivered now."""
        return {nid: schedule_for(n, self.outbox.catalog).due_at(now, 1, n.deadline)
                for nid, n in notices.items() if n.importance == "must-know"}

    def _result(self, row: ClaimedRow, outcome: Outcome, now: datetime, notice: Notice,
                first_reminders: dict[int, datetime | None]) -> _Result:
        """The row's new values after `outcome`."""
        if outcome.kind is OutcomeKind.DELIVERED and outcome.ref is not None:
            notice_kind = row.kind == DeliveryKind.NOTICE.value
            return _Result(DeliveryStatus.DELIVERED.value, row.attempts + 1, "", outcome.ref.channel_id,
                           outcome.ref.message_id, notice.revision, delivered_at=now, set_reminder=notice_kind,
                           next_reminder_at=first_reminders.get(notice.id) if notice_kind else None)
        unchanged = dict(channel_id=row.channel_id, message_id=row.message_id,
                         rendered_revision=row.rendered_revision)
        # A row in doubt (claimed back after a crash, or a lost answer) stays so until a channel
        # has looked for its earlier message: see _IN_DOUBT_UNTIL.
        in_doubt = outcome.in_doubt or (row.maybe_sent and not outcome.looked)
        status = DeliveryStatus.SENDING if in_doubt else DeliveryStatus.PENDING
        if outcome.kind is OutcomeKind.DEFERRED or outcome.throttled:
            # not attempted (the lane was paused), or a 429, which says "later", never "no": no
            # attempt counted, so a copy only ever throttled is never given up; due when the wait is over
            said = outcome.reason if outcome.throttled or outcome.credentials_refused else None
            return _Result(status.value, row.attempts, said,
                           next_attempt_at=now + timedelta(seconds=outcome.retry_after or 1), **unchanged)
        attempts = row.attempts + 1
        delay = None
        if outcome.kind is OutcomeKind.RETRY:
            delay = self.outbox.retry.delay(attempts, retry_after=outcome.retry_after, key=row.id)
        if delay is None:
            reason = outcome.reason or "unknown error"
            if outcome.kind is OutcomeKind.RETRY:
                reason = f"gave up after {attempts} attempts: {reason}"
            return _Result(DeliveryStatus.FAILED.value, attempts, reason, **unchanged)
        return _Result(status.value, attempts, outcome.reason, next_attempt_at=now + timedelta(seconds=delay),
                       **unchanged)


class _Recorder:
    """One source's outcomes, written in groups gathered for a few milliseconds (one grouped
    write each), so every send is recorded moments after it returns. The gathering ends early
    when none of the source's sends is still under way (`quiet`) and at least `early` outcomes
    wait: no other outcome is coming, and a lane whose window is that full of unrecorded sends
    (it claims again once half of it is free) would only sit idle. A trickle of outcomes (an
    acknowledgement's updates) is still gathered, so it does not cost a transaction each.

    A failed write is tried again (`retry_pauses`): the outcomes are facts the platform already
    holds, and the usual failures pass (PostgreSQL aborting one side of a deadlock, a failover).
    If every attempt fails, the rows are *abandoned*: the heartbeat stops extending their claims,
    so they come back in doubt when the claim runs out and are looked for before any second
    send, instead of staying claimed for as long as this replica lives."""

    def __init__(self, source: LaneSource, clock: Clock, flush_seconds: float,
                 retry_pauses: tuple[float, ...], quiet: Callable[[], bool] = lambda: False,
                 early: int = 1) -> None:
        self.source, self.clock, self.flush_seconds = source, clock, flush_seconds
        self.retry_pauses = retry_pauses
        self.quiet, self.early = quiet, early
        self._hurry = asyncio.Event()
        self.abandoned: set[int] = set()  # row ids whose outcome could not be written
        self._pending: list[tuple[Any, Outcome, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def put(self, item: Any, outcome: Outcome) -> None:
        """Queue an outcome; returns once it is written (or abandoned, see the class)."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, outcome, future))
        if self._task is None or self._task.done():
            self._hurry = asyncio.Event()
            self._task = asyncio.create_task(self._flush_soon(self._hurry))
        if len(self._pending) >= self.early and self.quiet():
            self._hurry.set()
        await asyncio.shield(future)

    async def written(self) -> None:
        """Return once the outcomes queued so far are written (or abandoned)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def _flush_soon(self, hurry: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(hurry.wait(), self.flush_seconds)
        except TimeoutError:
            pass
        while self._pending:
            batch, self._pending = self._pending, []
            await self._write(sorted(((item, outcome) for item, outcome, _ in batch), key=lambda r: r[0].row.id))
            for *_, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _write(self, results: list[tuple[Any, Outcome]]) -> None:
        """Rows in id order, so concurrent writers lock them in the same order."""
        for attempt, pause in enumerate((*self.retry_pauses, None), 1):
            try:
                await self.source.record(results, self.clock.now())
                return
            except Exception:  # noqa: BLE001 - see the class docstring
                if pause is None:
                    log.exception("could not record %d outcomes of %s after %d attempts; their rows come back "
                                  "in doubt when their claims run out", len(results), self.source.name, attempt)
                    self.abandoned.update(item.row.id for item, _ in results)
                    metrics.delivery_outcomes_abandoned(self.source.name, len(results))
                    return
                log.warning("recording %d outcomes of %s failed (attempt %d), trying again in %.2fs",
                            len(results), self.source.name, attempt, pause, exc_info=True)
                await asyncio.sleep(pause)


class Outbox:
    """The lane scheduler: takes the leases of lanes with due work (least recently served
    first, at most `parallel_workspaces` at once), drains each held lane's sources in priority
    order with at most `lane_inflight` requests in flight per lane and `concurrency` per replica,
    paced per lane; pauses a lane for every replica on a 429."""

    link_tracker = None  # A/B tests' counted links (bot.core.notices.interactions.LinkTracker), set by Herald

    def __init__(self, channels: dict[str, Channel], catalog: TopicCatalog, clock: Clock, *,
                 concurrency: int = 64, batch_size: int = 200, lease_seconds: float = 10,
                 retry: RetryPolicy | None = None, parallel_workspaces: int = 128,
                 rate_limits: dict[str, float] | None = None, lane_inflight: int = 8,
                 heartbeat_seconds: float = 3.0, poll_seconds: float = 5.0, flush_ms: float = 5.0,
                 updates_per_minute: dict[str, float] | None = None) -> None:
        self.channels = channels
        self.catalog = catalog
        self.clock = clock
        self.fixed_extras = FixedExtras()  # for the views of pressed copies (acks.acknowledged_view)
        self.settings = LaneSettings(lease_seconds=lease_seconds, heartbeat_seconds=heartbeat_seconds,
                                     concurrency=concurrency, lane_inflight=max(1, min(lane_inflight, batch_size)),
                                     max_lanes=parallel_workspaces, flush_ms=flush_ms, quantum=batch_size)
        self.poll_seconds = poll_seconds
        self.retry = retry or RetryPolicy()
        self.rate_limits = rate_limits or {}  # platform -> requests per second per workspace/tenant
        self.update_budgets = LaneBudgets(updates_per_minute or {}, clock)  # in-place updates per lane
        self.worker_id = uuid.uuid4().hex[:16]
        self.lanes = LaneStore(self.worker_id, timedelta(seconds=lease_seconds))
        self.sources: list[LaneSource] = []
        self._recorders: dict[str, _Recorder] = {}
        self.notices = NoticeSource(self)
        self.add_source(self.notices)
        self._workers: dict[Lane, asyncio.Task] = {}
        self._held: dict[Lane, datetime] = {}  # lane -> our lease's end
        self._paused: dict[Lane, datetime] = {}
        self._throttles: dict[Lane, int] = {}  # 429s without Retry-After in a row, per lane (see _throttle_wait)
        # Platforms that refused Herald's own credentials: until when their lanes pause, and the
        # refusal (None: refused before a restart, `credentials_in_doubt`). Kept past the pause
        # until a delivery there shows they work (told once each way).
        self._refused: dict[str, tuple[datetime, Outcome | None]] = {}
        self._probing: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # see _attempt
        self._next_slot: dict[Lane, float] = {}
        self._gate: PriorityGate | None = None  # requests in flight, all lanes
        self._claim_gate: PriorityGate | None = None  # claims in progress, all lanes
        self._served: dict[Lane, int] = defaultdict(int)  # sends started since the lane last ran dry
        self._sending: Counter[str] = Counter()  # per source: sends under way (paced, waiting or on the wire)
        # Each source's lanes with due work as the scheduler last saw them (it looks again on every
        # wake and at least every poll): a lane worker does not ask a source with nothing due in
        # its lane (a claim is a transaction; an acknowledgement's update is one row).
        self._source_due: dict[str, set[Lane]] = {}
        self.fenced = 0  # sends not started because the lane's lease was lost or running out
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # a wake since the round began was not only for updates
        self._scheduling = asyncio.Lock()
        self._renewing = asyncio.Lock()  # one renewal at a time: see _renew
        self._stopping = False
        self.notify: Any = None  # async callable(urgent) telling the other replicas to wake (PostgreSQL NOTIFY)
        self._notifying: asyncio.Task | None = None  # the NOTIFY on its way (see _broadcast)
        self._notify_again = False  # a wake was asked for meanwhile: NOTIFY once more after it
        self._notify_urgent = False  # an urgent wake is among those the next NOTIFY tells of

    def add_source(self, source: LaneSource) -> None:
        """Register a source of outbound requests (a `LaneSource`: docs/architecture.md, "The delivery
        engine: lanes and sources")."""
        self.sources = sorted([*self.sources, source], key=lambda s: s.priority)
        self._recorders[source.name] = _Recorder(source, self.clock, self.settings.flush_ms / 1000,
                                                  self.settings.record_retry_pauses,
                                                  quiet=lambda: not self._sending[source.name],
                                                  early=max(1, self.settings.lane_inflight // 2))

    # ---- the loop -------------------------------------------------------------------------

    def wake(self, *, broadcast: bool = True, urgent: bool = True) -> None:
        """New work may be due: look now, and (on PostgreSQL) tell the other replicas. Not
        `urgent`: only copies' in-place updates are asked for, and the look may wait a little for
        more of them (LaneSettings.update_gather)."""
        if urgent:
            self._urgent.set()
        self._wake.set()
        if broadcast and self.notify is not None:
            self._broadcast(urgent)

    def _broadcast(self, urgent: bool) -> None:
        """NOTIFY the other replicas, one NOTIFY at a time: the wakes asked for while one is on its
        way are sent together by the next, so a burst of acknowledgements is a NOTIFY or two, not
        one statement each."""
        self._notify_urgent |= urgent
        if self._notifying is not None:
            self._notify_again = True
            return
        try:
            self._notifying = asyncio.get_running_loop().create_task(self._notify_until_told())
        except RuntimeError:  # no running loop (a synchronous caller): the poll will see it
            pass

    async def _notify_until_told(self) -> None:
        try:
            while True:
                self._notify_again = False
                urgent, self._notify_urgent = self._notify_urgent, False
                try:
                    await self.notify(urgent)
                except Exception:  # noqa: BLE001 - the others still poll
                    log.warning("could not wake the other replicas", exc_info=True)
                if not self._notify_again:
                    return
        finally:
            self._notifying = None

    async def run_forever(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeats(), name="herald-lane-heartbeat")
        try:
            while not self._stopping:
                self._wake.clear()
                self._urgent.clear()
                try:
                    await self._schedule()
                    timeout = await self._idle_seconds()
                except Exception:  # noqa: BLE001 - the loop must survive a db blip
                    log.exception("outbox round failed")
                    timeout = self.poll_seconds
                if self._stopping:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    continue
                await self._gather()
        finally:
            heartbeat.cancel()
            await self._shut_down()

    async def _gather(self) -> None:
        """After a wake, let more wakes come before looking: `wake_gather`, or `update_gather` while
        every wake since the round began asked only for updates (see LaneSettings)."""
        if not self._urgent.is_set():
            try:
                await asyncio.wait_for(self._urgent.wait(), self.settings.update_gather)
            except TimeoutError:
                return
        await asyncio.sleep(self.settings.wake_gather)

    def stop(self) -> None:
        """Stop claiming; in-flight requests finish and are recorded, leases are released."""
        self._stopping = True
        self._urgent.set()
        self._wake.set()

    async def _shut_down(self) -> None:
        """Give the lanes' sends until shortly before the leases run out to finish and be recorded;
        then cancel the lane workers still running (a request the platform has not answered) and
        wait for them, so none outlives the stop (and the database it writes to). Their claimed rows
        stay claimed: when the claims run out they come back in doubt, looked for before any second
        send, as after a crash. Then the leases are released."""
        workers = list(self._workers.values())
        if workers:
            _, late = await asyncio.wait(workers, timeout=max(1.0, self.settings.lease_seconds - 2))
            await self._cancel_lane_workers(late)
        await self._recorders_written()
        try:
            await self.lanes.release_all(self.clock.now())
        except Exception:  # noqa: BLE001 - the leases run out on their own
            log.warning("could not release delivery lanes on shutdown", exc_info=True)

    @staticmethod
    async def _cancel_lane_workers(workers: Iterable[asyncio.Task]) -> None:
        """Cancel our own lane workers among `workers` and wait until they have ended. A lane
        `push_updates` works inline is its caller's task (a click's), not ours to cancel."""
        ours = [task for task in workers if task.get_name().startswith(LANE_WORKER)]
        if not ours:
            return
        log.warning("stopping with %d delivery lane(s) still sending: their unanswered requests are "
                    "abandoned, and their rows looked for before any second send", len(ours))
        for task in ours:
            task.cancel()
        await asyncio.wait(ours)

    async def _recorders_written(self) -> None:
        """Wait for the outcome writes under way: a cancelled send waiting for its outcome's write
        leaves it to go on (the outcomes are facts the platform holds), not to meet a closed database."""
        for recorder in self._recorders.values():
            await recorder.written()

    async def drain(self) -> int:
        """Run rounds until nothing is due now that this replica may take. Returns items handled."""
        total = 0
        while handled := await self.run_once():
            total += handled
        return total

    async def run_once(self) -> int:
        """One round: take the lanes with due work, drain them, wait for them to finish."""
        await self._schedule()
        # lane workers only (push_updates() marks a lane it works inline with its caller's task)
        workers = [t for t in self._workers.values() if t.get_name().startswith(LANE_WORKER)]
        if not workers:
            return 0
        results = await asyncio.gather(*workers, return_exceptions=True)
        return sum(r for r in results if isinstance(r, int))

    async def _schedule(self) -> int:
        """Start a worker for each due lane we can lease (fairly, up to the lane cap). One at a
        time: the loop and a caller's drain() must not both start a worker for the same lane (the
        first to finish would drop the lease the other is sending under)."""
        async with self._scheduling:
            return await self._schedule_locked()

    async def _schedule_locked(self) -> int:
        if self._stopping:
            return 0
        now = self.clock.now()
        due = await self._due_lanes(now)
        due = {lane for lane in due if self._credentials_pause(lane[0]) is None}
        room = self.settings.max_lanes - len(self._workers)
        if not due or room <= 0:
            return 0
        await self.lanes.ensure(due)
        started = 0
        for lane in await self.lanes.candidates(due, now):
            if started >= room:
                break
            if lane in self._workers:  # push_updates() took it meanwhile
                continue
            lease = await self.lanes.take(lane, now)
            if lease is None or lane in self._workers:
                continue
            self._hold(lane, lease)
            self._workers[lane] = asyncio.create_task(self._work_lane(lane), name=f"{LANE_WORKER}{lane[0]}-{lane[1]}")
            started += 1
        return started

    async def _due_lanes(self, now: datetime) -> set[Lane]:
        due: set[Lane] = set()
        for source in self.sources:
            self._source_due[source.name] = lanes = await source.due_lanes(now)
            due |= lanes
        return due - set(self._workers)

    async def _idle_seconds(self) -> float:
        """How long the loop may sleep: until the earliest retry, pause end or lease end (capped
        by the poll interval), so a replica whose lanes are all paused stays idle."""
        now = self.clock.now()
        times = []
        for source in self.sources:
            times.append(await source.next_due(None, now))
        waiting = await self._due_lanes(now)
        if waiting:
            times.append(await self.lanes.next_change(waiting, now))
        times += [until for until, _ in self._refused.values() if until > now]
        times = [t for t in times if t is not None]
        if not times:
            return self.poll_seconds
        return min(self.poll_seconds, max(0.05, (min(times) - now).total_seconds()))

    async def _heartbeats(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self.heartbeat()
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.warning("delivery lane heartbeat failed", exc_info=True)

    async def heartbeat(self) -> None:
        """Renew our lanes' leases and our rows' claims; a lane whose lease we lost stops claiming."""
        if not self._held:
            return
        until = await self._renew()
        assert until is not None  # always renewed when not asked for one lane
        for source in self.sources:  # rows in flight keep their claims (recorded by us, not taken over)
            renew = getattr(source, "renew", None)
            if renew is not None:
                await renew(f"{self.worker_id}:", until + self._claim_grace,
                            exclude=self._recorders[source.name].abandoned)

    def _lease_short(self, lane: Lane) -> bool:
        until = self._held.get(lane)
        return until is not None and until - self.clock.now() < self.lanes.lease / 2

    async def _keep_lease(self, lane: Lane) -> None:
        """Before a claim: a lease with less than half its length left is renewed (all of ours are).
        The heartbeat keeps leases longer than that, so this renews only when it is not running
        (drain()) or fell behind; a lane working past its lease would otherwise have its sends fenced.
        (Renewing at every turn instead cost two statements per lane per turn, for nothing while the
        heartbeat runs.)"""
        if not self._lease_short(lane):
            return
        try:
            await self._renew(unless_renewed=lane)
        except Exception:  # noqa: BLE001 - the lease's end fences the sends if it is not renewed
            log.warning("could not renew delivery lane %s/%s", *lane, exc_info=True)

    async def _renew(self, unless_renewed: Lane | None = None) -> datetime | None:
        """Renew our leases; a lane whose lease we lost stops claiming. Returns their new end, or
        None when `unless_renewed`'s lease was renewed (by another caller) while this one waited.

        One at a time (the heartbeat, a lane renewing before its claim): the store renews all of
        our leases and reads back those ending at this renewal's end, so a second renewal in between
        (another `now`) would make the first read back nothing and take every lane for lost."""
        async with self._renewing:
            if unless_renewed is not None and not self._lease_short(unless_renewed):
                return None
            beat = dict(self._held)
            now = self.clock.now()
            held = await self.lanes.renew(list(beat), now)
            until = now + self.lanes.lease
            for lane, lease_end in beat.items():
                if self._held.get(lane) != lease_end:  # released or taken again while we renewed: not this beat's
                    continue
                if lane in held:
                    self._held[lane] = until
                else:
                    log.warning("lost the lease of delivery lane %s/%s", *lane)
                    self._held.pop(lane, None)
            return until

    # ---- one lane -------------------------------------------------------------------------

    def _hold(self, lane: Lane, lease: Lease) -> None:
        """We hold the lane now (our worker is listed): its update budget is the one its last
        holder handed on (see LaneBudgets)."""
        self._held[lane] = lease.until
        self.update_budgets.load(lane, lease.update_tokens, lease.update_tokens_at)

    def _may_claim(self, lane: Lane) -> bool:
        return not self._stopping and self._lease_ok(lane) and self._paused_for(lane) is None

    def _lease_ok(self, lane: Lane) -> bool:
        """We hold the lane's lease with at least `send_margin` of it left. A replica whose
        heartbeat stalled (CPU, database) stops sending well before another may take over."""
        until = self._held.get(lane)
        return until is not None and self.clock.now() + timedelta(seconds=self.settings.send_margin) < until

    @property
    def _claim_grace(self) -> timedelta:
        return timedelta(seconds=self.settings.claim_grace)

    async def _work_lane(self, lane: Lane) -> int:
        """Keep the lane's in-flight window full while it has due work and we hold it, for one turn
        (`quantum` items): then the lane goes back in the queue behind lanes served less recently,
        so with more lanes than `max_lanes` a big one never starves a small one (with fewer, it
        goes straight on to its next turn)."""
        token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        cap, quantum = self.settings.lane_inflight, self.settings.quantum
        inflight: set[asyncio.Task] = set()
        drained: set[str] = set()  # sources that gave fewer items than asked for in this turn
        handled = turn = 0
        try:
            while True:
                room = cap - len(inflight)
                if turn >= quantum and self._lane_slot_free():
                    turn = 0  # no lane can be waiting for our slot: a new turn without a pause
                    drained.clear()
                    await self._end_turn(token)  # e.g. a small notice finished here is marked sent now
                if room > 0 and (not inflight or room * 2 >= cap) and turn < quantum and self._may_claim(lane) \
                        and len(drained) < len(self.sources):
                    # With no lane waiting for our slot, the turn's last claim fills the window as the
                    # others do: cut to the turn's end, it was a claim of a few rows (200 = 3 x 64 + 8),
                    # a round trip and a wait on their sends and outcomes for almost nothing.
                    limit = room if self._lane_slot_free() else min(room, quantum - turn)
                    items = await self._claim_in_turn(lane, limit, token, drained)
                    handled += len(items)
                    turn += len(items)
                    if not items and not inflight and self._may_claim(lane):
                        self._served.pop(lane, None)  # ran dry: next time it is new work
                    inflight |= {asyncio.create_task(self._send_one(lane, source, item)) for source, item in items}
                if not inflight:
                    break
                _, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the stop gave up on the lane (_shut_down): its sends with it
            for send in inflight:
                send.cancel()
            raise
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            await self._end_turn(token)
            self._held.pop(lane, None)
            try:  # while still listed as our worker, so no new turn of ours starts before this ends
                await self.lanes.release(lane, self.clock.now(), self.update_budgets)
            except Exception:  # noqa: BLE001 - the lease runs out on its own
                log.warning("could not release delivery lane %s/%s", *lane, exc_info=True)
            if self._workers.get(lane) is asyncio.current_task():
                del self._workers[lane]
            self._wake.set()
        return handled

    async def _end_turn(self, token: str, sources: Iterable[LaneSource] | None = None) -> None:
        """Tell the sources that have a `turn_ended` hook that a turn of `token` is over (at the
        lane's end all of its outcomes are recorded; when the lane goes straight on to a new turn
        some sends may still be under way). A failure there is the hook's own: logged, the turn
        still ends."""
        for source in self.sources if sources is None else sources:
            ended = getattr(source, "turn_ended", None)
            if ended is None:
                continue
            try:
                await ended(token)
            except Exception:  # noqa: BLE001 - e.g. notices not marked sent: the clock's tick does it
                log.warning("ending the turn of %s in %s failed", token, source.name, exc_info=True)

    def _lane_slot_free(self) -> bool:
        """This replica works fewer lanes than it may: every due lane it could lease has a worker
        (the scheduler starts one whenever a slot is free), so a lane at the end of its turn may
        go on at once instead of stopping, letting its window run empty and being leased again."""
        return len(self._workers) < self.settings.max_lanes

    async def _claim_in_turn(self, lane: Lane, limit: int, token: str,
                             drained: set[str]) -> list[tuple[LaneSource, Any]]:
        """Claim through the claim gate: at most `claims` at once (each is several database round
        trips), lanes that have sent least first."""
        if self._claim_gate is None:
            self._claim_gate = PriorityGate(self.settings.claims)
        async with self._claim_gate.hold(self._served.get(lane, 0)):
            await self._keep_lease(lane)
            if not self._may_claim(lane):
                return []
            return await self._claim(lane, limit, token, drained)

    async def _claim(self, lane: Lane, limit: int, token: str, drained: set[str]) -> list[tuple[LaneSource, Any]]:
        """Up to `limit` items from the lane's sources in priority order. A source that gives
        fewer than it was asked for joins `drained` and is not asked again this turn (what comes
        due in it meanwhile wakes the scheduler, which gives the lane another turn when this one
        ends); one with nothing due in the lane is not asked until the scheduler sees some."""
        now, until = self.clock.now(), self._held.get(lane)
        if until is None:
            return []
        until += self._claim_grace  # the rows' claims outlive the lease: see LaneSettings.claim_grace
        items: list[tuple[LaneSource, Any]] = []
        for source in self.sources:
            room = limit - len(items)
            if room <= 0:
                break
            if source.name in drained:
                continue
            if lane not in self._source_due.get(source.name, (lane,)):
                continue  # nothing due here when the scheduler last looked (it looks on every wake)
            try:
                claimed = await source.claim(lane, room, token, now, until)
            except Exception:  # noqa: BLE001 - one source's bad row must not stop the others
                log.exception("claiming from %s in lane %s/%s failed", source.name, *lane)
                continue
            if len(claimed) < room:
                drained.add(source.name)
            items += [(source, item) for item in claimed]
        return items

    async def _send_one(self, lane: Lane, source: LaneSource, item: Any) -> None:
        self._sending[source.name] += 1
        try:
            outcome = await self._attempt(lane, source, item)
            if outcome.throttled:
                metrics.throttled(lane[0], outcome.retry_after)
                outcome = self._throttle_wait(lane, outcome)
                if not outcome.method_only:  # one method's limit is the source's own (NoticeSource)
                    await self._pause(lane, outcome.retry_after or 1.0)
            elif outcome.kind is OutcomeKind.DELIVERED:
                self._throttles.pop(lane, None)
        finally:
            self._sending[source.name] -= 1
        await self._recorders[source.name].put(item, outcome)
        if outcome.removed_cause:  # the platform refused Herald's token for the lane's whole workspace
            if await deactivate_refused([(lane[0], lane[1], outcome)], self.clock.now()):
                self.wake()  # messages to settle, copies moved to their members' other accounts
        if outcome.app_removed_by:  # the member removed Herald (Teams), its event missed
            await self._app_removed(outcome.app_removed_by)

    async def _app_removed(self, account: tuple[str, str]) -> None:
        """A send was refused because the member removed Herald: recorded as Teams' own removal
        event is (app_installs.app_removed), so what waits for them fails without a request and
        their reminders wait, until they add Herald again. A failure is logged and left to the next refusal."""
        tenant, user = account
        try:
            change = await app_removed(tenant, user, now=self.clock.now(), refused=True)
        except Exception:  # noqa: BLE001 - the outcome is stored; the next refusal tries again
            log.exception("could not record that a member removed Herald in tenant %s", tenant)
            return
        if change.changed:
            log.warning("Teams refused a message to %s in tenant %s: the member removed Herald (its removal event "
                        "was missed). %d waiting copies failed; they are sent when the member adds Herald again",
                        user, tenant, change.deliveries)
        if change.messages:
            self.wake()

    def _throttle_wait(self, lane: Lane, outcome: Outcome) -> Outcome:
        """The throttled outcome with the wait it asks for: its Retry-After, or else the rest of
        the lane's pause if one is on (another request of the same burst was refused), or else
        exponential backoff with jitter on the lane's 429s in a row (RetryPolicy.throttle_pause;
        a delivery in the lane starts the count again). The sources store it as the row's next
        try without counting an attempt."""
        if outcome.retry_after:
            return outcome
        remaining = self._paused_for(lane)
        if remaining is None:
            self._throttles[lane] = throttles = self._throttles.get(lane, 0) + 1
            remaining = self.retry.throttle_pause(throttles)
        return replace(outcome, retry_after=remaining)

    async def _attempt(self, lane: Lane, source: LaneSource, item: Any) -> Outcome:
        """Send the item within the lane's pace and the replica's concurrency, unless the lane is
        paused, its lease is lost or Herald is stopping (then it is deferred, not attempted).
        While the platform's credentials are in doubt (refused before, not yet seen working)
        one send at a time tries them, so a re-check is one request, not one per lane and row."""
        cost = getattr(source, "cost", None)
        await self._pace(lane, cost(item) if cost is not None else 1)
        if self._gate is None:
            self._gate = PriorityGate(self.settings.concurrency)
        async with self._gate.hold(self._served[lane]):
            self._served[lane] += 1
            if lane[0] not in self._refused:
                return await self._try(lane, source, item)
            async with self._probing[lane[0]]:
                return await self._try(lane, source, item)

    async def _try(self, lane: Lane, source: LaneSource, item: Any) -> Outcome:
        """`_attempt`'s checks and send, and what the outcome says of the platform's credentials."""
        blocked = self._paused_for(lane)
        if self._stopping:
            return Outcome.deferred(0)  # shutting down: released, not attempted
        if blocked is not None:
            refused = self._refused.get(lane[0])
            if refused is not None and refused[1] is not None and self._credentials_pause(lane[0]) is not None:
                return replace(refused[1], retry_after=blocked)  # waits for the credentials, saying so
            return Outcome.deferred(blocked)
        if not self._lease_ok(lane):  # lost or running out while this waited: not attempted
            self.fenced += 1
            metrics.lease_fenced(lane[0])
            self._wake.set()  # due again at once: whoever holds the lane next takes it
            return Outcome.deferred(0)
        try:
            outcome = await source.send(item, self.channels.get(lane[0]))
        except Exception as exc:  # noqa: BLE001 - a channel bug must not lose the row
            log.exception("%s item in lane %s/%s raised", source.name, *lane)
            return Outcome.retry(f"internal error ({type(exc).__name__})")
        if outcome.credentials_refused:
            return await self._credentials_refused(lane[0], outcome)
        if outcome.kind is OutcomeKind.DELIVERED and lane[0] in self._refused:
            await self._credentials_work(lane[0])
        return outcome

    async def _pause(self, lane: Lane, seconds: float) -> None:
        until = self.clock.now() + timedelta(seconds=seconds)
        if until > self._paused.get(lane, until - timedelta(seconds=1)):
            self._paused[lane] = until
        try:
            await self.lanes.pause(lane, until)
        except Exception:  # noqa: BLE001 - this replica still honours it
            log.warning("could not share the pause of lane %s/%s", *lane, exc_info=True)

    async def _pace(self, lane: Lane, cost: int = 1) -> None:
        """Stay under the platform's documented request rate per workspace/tenant (e.g. Teams:
        about 50 per second per bot per tenant). Only the lane's lease holder sends in it, so this
        in-memory schedule is the lane's only one. Throughput control, not business time: it uses
        the monotonic clock."""
        rate = self.rate_limits.get(lane[0], 0.0)
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        slot = max(loop.time(), self._next_slot.get(lane, 0.0))
        self._next_slot[lane] = slot + cost / rate
        if slot > loop.time():
            await asyncio.sleep(slot - loop.time())

    def _paused_for(self, lane: Lane) -> float | None:
        """Seconds the lane is paused for (a 429, or its platform refused Herald's credentials)."""
        platform = self._credentials_pause(lane[0])
        until = self._paused.get(lane)
        if until is None:
            return platform
        remaining = (until - self.clock.now()).total_seconds()
        if remaining <= 0:
            del self._paused[lane]
            return platform
        return max(remaining, platform or 0.0)

    def _credentials_pause(self, platform: str) -> float | None:
        """Seconds until the platform, which refused Herald's credentials, is asked again."""
        refused = self._refused.get(platform)
        if refused is None:
            return None
        remaining = (refused[0] - self.clock.now()).total_seconds()
        return remaining if remaining > 0 else None

    # ---- Herald's own credentials refused --------------------------------------------------

    async def _credentials_refused(self, platform: str, outcome: Outcome) -> Outcome:
        """The platform refused Herald's own credentials (Teams: an expired client secret): no
        copy or message of any of its lanes can go out, whoever it is for. Rather than each
        failing after its retries (lost: nothing sends them again once the credentials are
        fixed), the platform's lanes pause in this replica for `credentials_recheck_seconds`;
        what was claimed goes back to pending without an attempt counted, saying why, and the
        first send after the pause asks again (a restart makes them due at once:
        `due_after_restart`). The first refusal is logged and audited
        (`platform.credentials_refused`), not every re-check. Returns the outcome with the wait."""
        now = self.clock.now()
        current = self._refused.get(platform)
        if current is None or current[0] <= now:  # the first refusal, or a re-check refused again
            until = now + timedelta(seconds=self.retry.credentials_recheck_seconds)
            self._refused[platform] = (until, outcome)
            if current is None or current[1] is None:  # audited before the restart already
                await self._tell_credentials(platform, "platform.credentials_refused", now, audit=current is None,
                                             reason=outcome.reason.removeprefix(CREDENTIALS_REFUSED))
        until = self._refused[platform][0]
        return replace(outcome, retry_after=max((until - now).total_seconds(), 1.0))

    def credentials_in_doubt(self, platforms: Iterable[str]) -> None:
        """At start-up: these platforms refused Herald's credentials before the restart (rows wait
        for them): one send at a time tries them until one is delivered (then
        `platform.credentials_restored` is audited) or they are refused again."""
        for platform in platforms:
            self._refused.setdefault(platform, (self.clock.now(), None))

    async def _credentials_work(self, platform: str) -> None:
        """A delivery on a platform that had refused Herald's credentials: they work again."""
        if self._refused.pop(platform, None) is not None:
            await self._tell_credentials(platform, "platform.credentials_restored", self.clock.now())

    async def _tell_credentials(self, platform: str, kind: str, now: datetime, reason: str = "",
                                audit: bool = True) -> None:
        """Log (a warning an operator's alerting sees) and audit a change of the platform's credentials."""
        if reason:
            log.warning("%s refused Herald's credentials: %s. Nothing is sent on %s until they work: its copies "
                        "and messages wait (no attempt counted) and go out then; asked again every %.0f s and at "
                        "each start. Fix the credentials and restart; `herald doctor` checks them.",
                        platform.title(), reason, platform.title(), self.retry.credentials_recheck_seconds)
        else:
            log.warning("%s accepts Herald's credentials again: the waiting copies and messages are being sent",
                        platform.title())
        if not audit:
            return
        try:
            await record([audit_event(kind, now=now, actor="herald", platform=platform,
                                      **({"reason": reason} if reason else {}))])
        except Exception:  # noqa: BLE001 - the log line says it; the sends must go on
            log.warning("could not audit %s for %s", kind, platform, exc_info=True)

    # ---- in-place updates right away ------------------------------------------------------

    async def push_updates(self, only_ids: list[int] | None = None) -> int:
        """Push the pending in-place updates of these rows now (after an acknowledgement, so the
        clicker sees the change at once), through their lanes' leases and pacing. A lane another
        replica holds gets them from that replica. Without ids: a normal round."""
        if only_ids is None:
            return await self.run_once()
        now = self.clock.now()
        lanes = {(p, w) for p, w in await Delivery.filter(_update_due(now), id__in=only_ids).distinct().values_list(
            "platform", "workspace_external_id")}
        handled = 0
        for lane in lanes:
            if lane in self._workers:  # our worker is draining it: updates are claimed first
                continue
            await self.lanes.ensure([lane])
            lease = await self.lanes.take(lane, now)
            if lease is None or lane in self._workers:  # another replica, or our own worker meanwhile
                self.wake()
                continue
            self._workers[lane] = asyncio.current_task()  # type: ignore[assignment]
            self._hold(lane, lease)
            until = lease.until
            token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
            try:
                jobs = await self.notices.claim(lane, len(only_ids), token, now, until, only_ids=only_ids)
                await asyncio.gather(*(self._send_one(lane, self.notices, job) for job in jobs))
                handled += len(jobs)
            finally:
                await self._end_turn(token, [self.notices])
                self._held.pop(lane, None)
                try:  # while still listed as our worker, as _work_lane does: no turn of ours starts meanwhile
                    await self.lanes.release(lane, self.clock.now(), self.update_budgets)
                finally:
                    if self._workers.get(lane) is asyncio.current_task():
                        del self._workers[lane]
        return handled


def _history_read_to(row: ClaimedRow, outcome: Outcome) -> str:
    """Where the next look for the copy in doubt goes on: where a look cut short by the rate limit
    stopped; unchanged when nothing was tried or read (a paused lane, a 429 on the look's first
    page); "" once a look concluded or the copy was sent (a later doubt is a new one)."""
    if outcome.read_to:
        return outcome.read_to
    if outcome.kind is OutcomeKind.DEFERRED and not outcome.looked:
        return row.history_read_to
    return ""


def _store_row(result: _Result, row: ClaimedRow, now: datetime, token: str, *, postgres: bool) -> tuple:
    """One row's parameters for _STORE_PG (by column) or _STORE_SQL (by position: its `?` for
    _CHANGED and _IN_DOUBT_UNTIL take the status, revision and next attempt again)."""
    retracted = row.notice_stamp.status == NoticeStatus.RETRACTED.value
    closed = row.notice_stamp.survey_closed_at is not None
    head = (result.status, result.attempts, result.next_attempt_at, result.channel_id, result.message_id,
            result.error, result.delivered_at, result.rendered_revision, int(result.set_reminder),
            result.next_reminder_at, now)
    if postgres:
        return (*head, retracted, closed, row.id, token)
    return (*head, result.status, result.rendered_revision, retracted, closed, result.status,
            result.next_attempt_at, row.id, token)


def _result_event(row: ClaimedRow, result: _Result, now: datetime):  # noqa: ANN202
    common = dict(now=now, notice_id=row.notice_id, member_id=row.member_id, platform=row.platform,
                  delivery_id=row.id)
    reminder = row.kind == DeliveryKind.REMINDER.value
    if result.status == DeliveryStatus.DELIVERED.value:
        if reminder:
            return audit_event("notice.reminded", reminder=row.sequence, channel=result.channel_id,
                               message_id=result.message_id, **common)
        return audit_event("delivery.delivered", channel=result.channel_id, message_id=result.message_id, **common)
    if result.status == DeliveryStatus.FAILED.value:
        kind = "reminder.failed" if reminder else "delivery.failed"
        return audit_event(kind, reason=result.error, attempts=result.attempts, **common)
    return None
