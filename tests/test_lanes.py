"""Delivery lanes (issue 12): one replica per workspace at a time under a lease with heartbeats,
429 pauses shared by every replica, fair turns between workspaces, only in-flight rows in doubt
after a crash, and storms of 429 and 5xx delivered exactly once. Two "replicas" here are two
Herald services in one process sharing the database, against the fake Slack API."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tortoise import connections

from bot.core.directory.importer import import_directory
from bot.core.delivery.lanes import LaneBudgets, PriorityGate, lanes_with_due_rows, renew_claims
from bot.core.directory.workspaces import add_slack_workspace
from bot.service import Herald
from config.settings import MIN_DELIVERY_LEASE_SECONDS, ConfigError, load_settings
from storage import db as storage_db
from storage.models import AuditEvent, Delivery, DeliveryLane, Member, Notice, Organisation
from tests.conftest import POSTGRES_ONLY
from storage.wakeups import PgWakeups
from tests.fakes.rate_limits import ManualMonotonic, Rate
from tests.fakes.slack_limits import SlackLimits
from tests.fuzzing import fuzz
from tests.query_plans import captured, plan_of
from bot.core.ports import Outcome, Recipient
from bot.core.notices.views import NoticeView
from tests.support import TEAM, Rig, broadcast, directory_csv, wait_until
from tests.teams_support import TeamsRig

LANE = ("slack", TEAM)
SMALL_TEAM, SMALL_TOKEN = "T0SMALL", "xoxb-small-token"


def _replica(rig: Rig, **settings: object) -> Herald:
    return Herald(rig.herald.settings.model_copy(update=settings), clock=rig.clock, catalog=rig.herald.catalog)


async def _add_members(rig: Rig, count: int, *, team: str = TEAM, org: str = "big") -> list[str]:
    users = [f"U{org.upper()}{i}" for i in range(count)]
    for user in users:
        rig.fake.add_user(team, user)
    rows = [f"{org},{org.title()} Co,gold,emea,de,retail,large,reseller,cam@vendor.example,m{i}@{org}.example,"
            f"M {i},sales,UTC,en,{team},{user},," for i, user in enumerate(users)]
    result = await import_directory(directory_csv(rows), now=rig.clock.now(), actor="test")
    assert not result.rejected, result.rejected
    return users


class _StalledChannel:
    """The real Slack channel behind a door: sends wait there until the test opens it, as a
    replica whose event loop or network stalled (CPU load) between claiming and sending."""

    def __init__(self, channel: object) -> None:
        self.channel = channel
        self.door = asyncio.Event()
        self.waiting = 0

    async def deliver(self, recipient: Recipient, view: NoticeView, *, delivery_id: int,
                      maybe_sent: bool, wanted: bool = True, since: datetime | None = None,
                      read_to: str = "") -> Outcome:
        self.waiting += 1
        await self.door.wait()
        return await self.channel.deliver(recipient, view, delivery_id=delivery_id,  # type: ignore[attr-defined]
                                          maybe_sent=maybe_sent, wanted=wanted, since=since, read_to=read_to)

    def __getattr__(self, name: str) -> object:
        return getattr(self.channel, name)


async def _rows_are(count: int, **filters: object) -> bool:
    return await Delivery.filter(**filters).count() == count


def _dm_counts(rig: Rig, users: list[str]) -> list[int]:
    return [len(rig.fake.messages(rig.fake.dm_channel_id(u))) for u in users]


async def test_a_429_pauses_the_workspace_for_every_replica(rig: Rig) -> None:
    other = _replica(rig)
    try:
        await rig.broadcast()
        rig.fake.fail_next("chat.postMessage", status=429, retry_after=30)
        await rig.herald.outbox.drain()
        lane = await DeliveryLane.get(platform="slack", workspace_external_id=TEAM)
        assert lane.paused_until >= rig.clock.now() + timedelta(seconds=29) and lane.leased_by == ""
        # new work, due now, for the same workspace: the other replica never saw the 429 but honours it
        notice_id = await rig.broadcast(audience="member:anna@acme.example")
        posts = rig.fake.call_count("chat.postMessage")
        assert await other.outbox.drain() == 0
        assert rig.fake.call_count("chat.postMessage") == posts
        rig.clock.advance(seconds=31)
        await other.outbox.drain()
        assert (await Delivery.get(notice_id=notice_id)).status == "delivered"
        assert await Delivery.filter(status="pending").count() == 0
        assert _dm_counts(rig, ["UANNA", "UBO", "UCY", "UDI"]) == [2, 1, 1, 1]  # exactly once each
    finally:
        await other.close()


async def test_a_dead_replicas_lane_is_taken_over_after_its_lease(rig: Rig) -> None:
    await rig.broadcast()
    started = rig.clock.now()
    dead = _replica(rig)
    # the dead replica leased the lane and claimed two rows, then was killed: nothing released
    await dead.outbox.lanes.ensure([LANE])
    until = await dead.outbox.lanes.acquire(LANE, rig.clock.now())
    assert until is not None
    claimed = await dead.outbox.notices.claim(LANE, 2, f"{dead.outbox.worker_id}:gone", rig.clock.now(), until)
    assert len(claimed) == 2
    assert await rig.herald.outbox.drain() == 0  # its lease still runs
    assert rig.fake.call_count("chat.postMessage") == 0
    rig.clock.advance(seconds=rig.herald.settings.delivery_lease_seconds + 0.5)
    await rig.herald.outbox.drain()
    assert rig.clock.now() - started <= timedelta(seconds=15)
    assert await Delivery.filter(status="delivered").count() == 4
    assert _dm_counts(rig, ["UANNA", "UBO", "UCY", "UDI"]) == [1, 1, 1, 1]
    # only the two rows that were in flight were in doubt, and only they were looked for
    assert rig.fake.call_count("conversations.history") == 2
    await dead.close()


async def test_a_heartbeat_keeps_the_lease_and_a_lost_lease_stops_claiming(rig: Rig) -> None:
    await rig.broadcast()
    holder, other = _replica(rig), _replica(rig)
    try:
        await holder.outbox.lanes.ensure([LANE])
        holder.outbox._held[LANE] = await holder.outbox.lanes.acquire(LANE, rig.clock.now())
        for _ in range(3):  # 3 x 6 s > the 10 s lease, renewed by the heartbeat each time
            rig.clock.advance(seconds=6)
            await holder.outbox.heartbeat()
            assert await other.outbox.drain() == 0
        rig.clock.advance(seconds=11)  # the holder stops beating (killed)
        assert await other.outbox.drain() == 4
        await holder.outbox.heartbeat()  # it wakes up: the lane is no longer its
        assert LANE not in holder.outbox._held
    finally:
        await holder.close()
        await other.close()


async def test_a_lease_lost_mid_batch_delivers_exactly_once(rig: Rig) -> None:
    """Replica A claims the lane's four rows, sends one (stuck on the wire) while the other three
    wait for its single concurrency slot, and stalls past its lease. Replica B takes the lane over.
    A must start no send once its lease is gone, its in-flight row must stay A's to record, and B
    must deliver the rest: every member gets exactly one copy."""
    users = ["UANNA", "UBO", "UCY", "UDI"]
    await rig.broadcast()
    a = _replica(rig, delivery_concurrency=1, delivery_lane_inflight=4)
    b = _replica(rig)
    stalled = _StalledChannel(a.outbox.channels["slack"])
    a.outbox.channels = {**a.outbox.channels, "slack": stalled}
    try:
        run_a = asyncio.create_task(a.outbox.drain())
        await wait_until(lambda: stalled.waiting == 1, what="A's first send on the wire")
        assert await Delivery.filter(status="sending").count() == 4  # A claimed all four
        rig.clock.advance(seconds=rig.herald.settings.delivery_lease_seconds + 1)  # A missed its heartbeats
        await b.outbox.drain()  # B takes the lane over while A's sends are still pending
        stalled.door.set()  # A wakes up
        await run_a
        await b.outbox.drain()
        rig.clock.advance(seconds=60)  # every claim has run out: anything left is taken over
        await b.outbox.drain()
        assert _dm_counts(rig, users) == [1, 1, 1, 1]
        assert await Delivery.filter(status="delivered").count() == 4
        assert a.outbox.fenced == 3  # the three waiting sends were put back, not attempted
    finally:
        await a.close()
        await b.close()


async def test_a_send_still_unanswered_at_the_stop_is_cancelled_and_looked_for_before_another(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """A stop waits `lease - 2` s for the lanes' sends, then releases the lanes. A lane worker whose
    request Slack had not answered by then kept running (its task never cancelled) and failed
    later with a traceback once the database was closed under it. It is cancelled now, its send
    with it, before the lanes are released; the row stays claimed, in doubt, as after a crash:
    when the claim runs out it is looked for first (here the request landed after the stop) and
    not posted again."""
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    replica = _replica(rig, delivery_lease_seconds=4)  # model_copy: a stop that waits 2 s for its sends
    rig.fake.hold("chat.postMessage")  # Slack answers only when the test says so
    loop = asyncio.create_task(replica.outbox.run_forever())
    try:
        await wait_until(lambda: rig.fake.call_count("chat.postMessage") == 1, what="the send on the wire")
        replica.outbox.stop()
        await asyncio.wait_for(loop, 30)  # a guard, not a wait
        left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("herald-lane-") and not t.done()]
        assert not left, f"lane workers still running after the outbox stopped: {left}"
        assert not replica.outbox._workers
        copy = await Delivery.get(notice_id=notice_id)
        assert copy.status == "sending" and copy.claimed_by.startswith(replica.outbox.worker_id)  # in doubt
        assert not await DeliveryLane.filter(leased_by=replica.outbox.worker_id).exists()  # the lane is free
    finally:
        await replica.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]

    rig.fake.release("chat.postMessage")  # the request Herald gave up on lands after all
    await wait_until(lambda: _dm_counts(rig, ["UANNA"]) == [1], what="the late post")
    rig.clock.advance(seconds=4 + replica.outbox.settings.claim_grace + 1)  # the claim runs out
    await rig.herald.outbox.drain()
    assert (await Delivery.get(notice_id=notice_id)).status == "delivered"
    assert _dm_counts(rig, ["UANNA"]) == [1] and rig.fake.call_count("conversations.history") == 1


class _FailingRecords:
    """The notice source's outcome writes fail (as when PostgreSQL aborts one side of a deadlock)
    the first `failures` times, then work."""

    def __init__(self, source: object, failures: int) -> None:
        self.source, self.failures, self.calls = source, failures, 0
        self.real = source.record  # type: ignore[attr-defined]

    async def __call__(self, results: list, now: datetime) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("deadlock detected")
        await self.real(results, now)


def _notice_source(herald: Herald):  # noqa: ANN202
    return next(s for s in herald.outbox.sources if s.name == "notices")


async def test_an_outcome_write_that_fails_is_tried_again(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """A failed outcome write (a deadlock) is written on the next attempt: nothing stays
    claimed, nobody gets a second copy."""
    users = ["UANNA", "UBO", "UCY", "UDI"]
    await rig.broadcast()
    source = _notice_source(rig.herald)
    source.record = failing = _FailingRecords(source, failures=2)
    rig.herald.outbox._recorders["notices"].retry_pauses = (0.0, 0.0, 0.0)
    await rig.herald.outbox.drain()
    assert failing.calls >= 3
    assert await Delivery.filter(status="delivered").count() == 4
    assert _dm_counts(rig, users) == [1, 1, 1, 1]
    assert "trying again" in caplog.text


async def test_notices_are_marked_sent_once_per_turn_not_per_group(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Marking a notice sent is one statement at the end of the lane's turn, after all of its
    outcomes are recorded, not one per group of outcomes (each held the group's rows in the
    lane's window for another round trip)."""
    from bot.core.delivery import outbox as outbox_module

    notice_id = await rig.broadcast()
    real, calls = outbox_module.complete_sent_notices, []

    async def counted(now: datetime, ids: set[int]) -> int:
        calls.append((ids, await Delivery.filter(notice_id=notice_id, status="delivered").count()))
        return await real(now, ids)

    monkeypatch.setattr(outbox_module, "complete_sent_notices", counted)
    replica = _replica(rig, delivery_lane_inflight=1)  # a group of outcomes per copy
    sizes = _record_sizes(replica)
    try:
        await replica.outbox.drain()
    finally:
        await replica.close()
    assert sizes == [1, 1, 1, 1]
    assert calls == [({notice_id}, 4)]
    assert (await Notice.get(id=notice_id)).status == "sent"


async def test_a_small_notice_is_marked_sent_while_its_lane_goes_on_with_a_big_one(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lane nobody else waits for goes straight on from one turn to the next; a notice whose
    copies finished in an earlier turn is marked sent then, not when the lane's work runs out."""
    from bot.core.delivery import outbox as outbox_module

    small = await rig.broadcast()
    await _add_members(rig, 12)
    big = await rig.broadcast()
    real, big_sent_when_small_was = outbox_module.complete_sent_notices, []

    async def watched(now: datetime, ids: set[int]) -> int:
        changed = await real(now, ids)
        if not big_sent_when_small_was and (await Notice.get(id=small)).status == "sent":
            big_sent_when_small_was.append(await Delivery.filter(notice_id=big, status="delivered").count())
        return changed

    monkeypatch.setattr(outbox_module, "complete_sent_notices", watched)
    replica = _replica(rig, delivery_batch_size=2, delivery_lane_inflight=1)  # turns of 2 copies, 1 at a time
    try:
        await replica.outbox.drain()
    finally:
        await replica.close()
    assert await Delivery.filter(notice_id=big, status="delivered").count() == 16
    assert big_sent_when_small_was and big_sent_when_small_was[0] < 16
    assert [n.status for n in await Notice.filter(id__in=[small, big]).order_by("id")] == ["sent", "sent"]


async def test_a_failure_to_mark_a_notice_sent_is_left_to_the_tick(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The outcomes are stored (and audited) once; the notice stays `sending` until the clock's
    tick, which marks every finished notice sent."""
    from bot.core.delivery import outbox as outbox_module

    notice_id = await rig.broadcast()

    async def failing(now: datetime, ids: set[int]) -> int:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(outbox_module, "complete_sent_notices", failing)
    await rig.herald.outbox.drain()
    assert await AuditEvent.filter(kind="delivery.delivered", notice_id=notice_id).count() == 4
    assert await Delivery.filter(notice_id=notice_id, status="delivered").count() == 4
    assert (await Notice.get(id=notice_id)).status == "sending"
    assert "ending the turn" in caplog.text
    monkeypatch.undo()
    assert (await rig.herald.tick())["notices_completed"] == 1
    assert (await Notice.get(id=notice_id)).status == "sent"


class _StalledFor(_StalledChannel):
    """Only the sends to these user ids wait at the door."""

    def __init__(self, channel: object, users: set[str]) -> None:
        super().__init__(channel)
        self.users = users

    async def deliver(self, recipient: Recipient, view: NoticeView, *, delivery_id: int,
                      maybe_sent: bool, wanted: bool = True, since: datetime | None = None,
                      read_to: str = "") -> Outcome:
        if recipient.user_id in self.users:
            return await super().deliver(recipient, view, delivery_id=delivery_id, maybe_sent=maybe_sent, wanted=wanted,
                                         since=since, read_to=read_to)
        return await self.channel.deliver(recipient, view, delivery_id=delivery_id,  # type: ignore[attr-defined]
                                          maybe_sent=maybe_sent, wanted=wanted, since=since, read_to=read_to)


def _record_sizes(herald: Herald) -> list[int]:
    """The size of each group of outcomes the notice source writes, as it writes them."""
    source, sizes = _notice_source(herald), []
    real = source.record

    async def counted(results: list, now: datetime) -> None:
        sizes.append(len(results))
        await real(results, now)

    source.record = counted
    return sizes


async def test_outcomes_are_written_at_once_when_no_send_is_under_way(rig: Rig) -> None:
    """Gathering outcomes for a group ends as soon as no other send is under way: no outcome is
    coming, and waiting would only keep the lane's window of unrecorded sends full. (With a
    gathering time of a minute, the drain used to take that minute.)"""
    notice_id = await rig.broadcast()
    rig.herald.outbox._recorders["notices"].flush_seconds = 60
    sizes = _record_sizes(rig.herald)
    drained, _ = await asyncio.wait({asyncio.create_task(rig.herald.outbox.drain())}, timeout=20)
    assert drained, "the outcomes waited out the whole gathering time"
    assert sum(sizes) == 4 and await Delivery.filter(notice_id=notice_id, status="delivered").count() == 4
    assert (await Notice.get(id=notice_id)).status == "sent"


async def test_a_trickle_of_outcomes_is_still_gathered(rig: Rig) -> None:
    """One outcome with no send under way is not written at once (fewer than half a window:
    no lane waits for it), so a trickle (an acknowledgement's updates) is not a transaction each."""
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    recorder = rig.herald.outbox._recorders["notices"]
    recorder.flush_seconds = 60
    sizes = _record_sizes(rig.herald)
    run = asyncio.create_task(rig.herald.outbox.drain())
    await wait_until(lambda: len(recorder._pending) == 1 and recorder.quiet(), what="Anna's send back")
    for _ in range(50):  # the event loop runs on: nothing writes it yet
        await asyncio.sleep(0)
    assert sizes == [] and not run.done()
    recorder._hurry.set()  # as the gathering time running out does
    await run
    assert sizes == [1] and (await Delivery.get(notice_id=notice_id)).status == "delivered"


async def test_outcomes_are_gathered_while_other_sends_are_under_way(rig: Rig) -> None:
    """Outcomes that come back while another send is still on the wire wait for it (within the
    gathering time), so the lane's outcomes are one write, not one each."""
    replica = _replica(rig, delivery_lane_inflight=8)
    stalled = _StalledFor(replica.outbox.channels["slack"], {"UDI"})
    replica.outbox.channels = {**replica.outbox.channels, "slack": stalled}
    recorder = replica.outbox._recorders["notices"]
    recorder.flush_seconds = 60
    sizes = _record_sizes(replica)
    await rig.broadcast()
    run = asyncio.create_task(replica.outbox.drain())
    try:
        await wait_until(lambda: stalled.waiting == 1 and len(recorder._pending) == 3,
                         what="every send but UDI's back, UDI's on the wire")
        assert sizes == []  # nothing written while UDI's send is under way
        stalled.door.set()
        drained, _ = await asyncio.wait({run}, timeout=20)
        assert drained, "the outcomes waited out the whole gathering time"
    finally:
        stalled.door.set()
        await replica.close()
    assert sizes == [4]
    assert _dm_counts(rig, ["UANNA", "UBO", "UCY", "UDI"]) == [1, 1, 1, 1]


async def test_outcomes_that_cannot_be_written_are_not_kept_claimed(rig: Rig) -> None:
    """When every attempt fails the rows are abandoned: the heartbeat no longer extends their
    claims (it used to, for as long as the replica lived, so they were never sent nor settled),
    and once the claims run out they are taken over in doubt, looked for, and not sent twice."""
    users = ["UANNA", "UBO", "UCY", "UDI"]
    await rig.broadcast()
    outbox = rig.herald.outbox
    source = _notice_source(rig.herald)
    source.record = failing = _FailingRecords(source, failures=10**6)
    outbox._recorders["notices"].retry_pauses = (0.0,)
    await outbox.drain()
    stuck = await Delivery.filter(status="sending").values_list("id", "claimed_until")
    assert len(stuck) == 4 and outbox._recorders["notices"].abandoned == {i for i, _ in stuck}
    outbox._held[LANE] = await outbox.lanes.acquire(LANE, rig.clock.now())  # the lane is busy again
    rig.clock.advance(seconds=2)
    await outbox.heartbeat()
    assert await Delivery.filter(status="sending").values_list("id", "claimed_until") == stuck  # not extended
    await outbox.lanes.release(LANE, rig.clock.now())
    outbox._held.pop(LANE)
    source.record = failing.real
    rig.clock.advance(seconds=60)  # the claims have run out
    await outbox.drain()
    assert await Delivery.filter(status="delivered").count() == 4
    assert _dm_counts(rig, users) == [1, 1, 1, 1]


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)  # SQLite has no row locks
async def test_the_heartbeat_skips_rows_being_recorded_instead_of_waiting_for_them(rig: Rig, db_url: str) -> None:
    """PostgreSQL: while an outcome write holds a row, renewing the claims skips that row and
    waits for nothing. It used to read the rows with a lock the ORM silently dropped and then
    update them in its own order, waiting on (and deadlocking with) the outcome writes."""
    import asyncpg

    await rig.broadcast()
    now = rig.clock.now()
    await Delivery.all().update(status="sending", claimed_by="w1:turn", claimed_until=now)
    first, *others = await Delivery.all().order_by("id").values_list("id", flat=True)
    writer = await asyncpg.connect(rig.herald.settings.database_url)
    try:
        async with writer.transaction():  # an outcome write in progress on another connection
            await writer.execute("UPDATE delivery SET error='recording' WHERE id=$1", first)
            until = now + timedelta(seconds=20)
            await asyncio.wait_for(renew_claims("delivery", "w1:", until), timeout=10)
    finally:
        await writer.close()
    claims = dict(await Delivery.all().values_list("id", "claimed_until"))
    assert claims[first] == now and all(claims[i] == until for i in others)


async def test_the_heartbeat_renews_exactly_its_own_workers_claims(rig: Rig) -> None:
    """A worker's prefix ("w1:") renews the rows its tokens claimed and no other worker's, whose
    ids may share its first characters or sort next to it."""
    await _add_members(rig, 6)
    await rig.broadcast()
    now = rig.clock.now()
    ids = await Delivery.all().order_by("id").values_list("id", flat=True)
    tokens = ["w1:a", "w1:ffffffff", "w10:a", "w1;", "w1", "W1:a"]
    for row_id, token in zip(ids, tokens, strict=False):
        await Delivery.filter(id=row_id).update(status="sending", claimed_by=token, claimed_until=now)
    until = now + timedelta(seconds=20)
    await renew_claims("delivery", "w1:", until)
    renewed = {token for token, claimed in await Delivery.filter(claimed_by__in=tokens).values_list(
        "claimed_by", "claimed_until") if claimed == until}
    assert renewed == {"w1:a", "w1:ffffffff"}


async def test_the_outbox_heartbeat_does_not_read_every_delivery_row_ever_written(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the outbox holds any lane its heartbeat runs every 3 s (`heartbeat_seconds`) on every
    replica and renews its rows' claims (`renew_claims("delivery", "<worker>:", ...)`). It used to
    match `claimed_by LIKE '<worker>:%'` with no index on claimed_by and no other indexed
    predicate, so each beat read every delivery row ever written (~1.5 million after a year), on
    SQLite holding the write lock for the scan. It now finds the worker's claimed rows from a
    partial index on the claimed rows."""
    statements = await captured(monkeypatch, lambda: renew_claims(
        "delivery", "0123456789abcdef:", datetime(2027, 1, 5, 9, 2, tzinfo=UTC), exclude_ids=[7]))
    renewals = [(sql, values) for sql, values in statements if "UPDATE" in sql.upper() and "claimed_by" in sql]
    assert renewals, statements
    plans = [await plan_of(sql, values) for sql, values in renewals]
    if storage_db.dialect() == "postgres":  # the node reading `delivery d`: a sequential scan, or a walk
        # of the whole primary key with claimed_by only as a filter (no index condition)
        full = [p for p in plans if re.search(r"Seq Scan on delivery d\b", p) or re.search(
            r"Index (Only )?Scan using delivery_pkey on delivery d  \([^|]*\|\s+Filter:[^|]*claimed_by", p)]
    else:
        full = [p for p in plans if re.search(r"\bSCAN d\b(?! USING)", p)]
    assert not full, f"every heartbeat reads the whole delivery table to renew its claims: {full[0]}"


async def _a_history_of_delivered_copies(rig: Rig, copies: int, *, awaiting_update: int,
                                         analyze: bool = True) -> None:
    """`copies` delivered copies of one notice in the rig's lane, `awaiting_update` of them flagged
    for an in-place update, and the tables' statistics taken (unless not `analyze`: as Herald runs,
    which never takes them): the planner sees the shape of a year's history (nearly every copy
    delivered, a handful waiting for an update)."""
    await rig.broadcast()
    first = await Delivery.all().order_by("id").first()
    columns = [c for c in Delivery._meta.db_fields if c not in ("id", "sequence")]
    names = ", ".join(columns)
    await connections.get("default").execute_query(storage_db.placeholders(
        f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {copies}) "
        f"INSERT INTO delivery ({names}, sequence) SELECT {names}, g.n + 1000 FROM delivery, g WHERE delivery.id=?"),
        [first.id])
    await Delivery.all().update(status="delivered", update_pending=False, claimed_by="", claimed_until=None)
    flagged = await Delivery.all().order_by("-id").limit(awaiting_update).values_list("id", flat=True)
    await Delivery.filter(id__in=flagged).update(update_pending=True)
    if analyze:
        await connections.get("default").execute_script("ANALYZE")


async def test_claiming_a_lanes_in_place_updates_does_not_read_every_delivered_copy_ever(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every acknowledgement flags the member's delivered copies for an in-place update, as do
    edits, retractions and a survey's closing; the outbox then claims the lane's due updates
    (`claim_rows(lane, UPDATE_DUE, ...)`) and, when the lane's update budget is spent, defers them
    (`defer_updates`). UPDATE_DUE said a bare `d.update_pending`, for which SQLite uses no index,
    so it read through the status index every copy ever delivered (~1.4 million after a year) and
    sorted them, for each claim of a handful of updates. It now reads the copies waiting for an
    update from an index (update_pending, or the lane), on both databases."""
    from bot.core.delivery.notice_rows import DELIVERED, UPDATE_DUE, claim_rows, defer_updates

    await _a_history_of_delivered_copies(rig, 3000, awaiting_update=5)
    now = rig.clock.now()
    statements = await captured(monkeypatch, lambda: claim_rows(LANE, UPDATE_DUE, DELIVERED, 50, "w:1", now,
                                                                now + timedelta(minutes=1)))
    statements += await captured(monkeypatch, lambda: defer_updates(LANE, now + timedelta(seconds=30), now))
    reads = [(sql, values) for sql, values in statements if "update_pending" in sql and "claimed_until" in sql]
    assert len(reads) >= 2, statements
    plans = [(sql.split()[0], await plan_of(sql, values)) for sql, values in reads]
    if storage_db.dialect() == "postgres":  # `delivery d` read whole, or by its status alone
        whole = [f"{verb}: {plan}" for verb, plan in plans if re.search(
            r"Seq Scan on delivery d(_1)?\b|Scan using delivery_pkey on delivery d(_1)?\s+\([^|]*\|\s+Filter|"
            r"Scan using idx_delivery_status_\w+ on delivery d(_1)?\s+\([^|]*\|\s+Index Cond: \(\(status\)::text = ",
            plan)]
    else:
        whole = [f"{verb}: {plan}" for verb, plan in plans
                 if re.search(r"(SCAN d\b|SEARCH d USING INDEX idx_delivery_status_\w+ \(status=\?\))", plan)]
    assert not whole, ("claiming or deferring a lane's in-place updates reads every delivered copy ever "
                       f"(through the status index alone): {whole}")


async def test_claiming_a_lanes_sends_marks_them_by_id_not_by_reading_every_due_copy(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broadcast's copies are claimed a window at a time (`claim_rows(lane, SEND_DUE, ...)`): on
    SQLite a read of the window's rows, then an UPDATE marking them in flight by id, still as read.
    That UPDATE also repeats the lane's due predicate, and SQLite answered it from the status
    indexes, reading every due copy of the lane for each window of 64 (10,000 members: about 150
    windows over a shrinking 10,000 rows, a quarter of the database's time in bench/fanout.py, with
    the process's one connection held meanwhile). It now looks the claimed rows up by id."""
    from bot.core.delivery.notice_rows import SEND_DUE, SENDING, claim_rows

    await _a_history_of_delivered_copies(rig, 3000, awaiting_update=0, analyze=False)
    now = rig.clock.now()
    await Delivery.all().update(status="pending", next_attempt_at=now - timedelta(minutes=1))
    statements = await captured(monkeypatch, lambda: claim_rows(LANE, SEND_DUE, SENDING, 64, "w:1", now,
                                                                now + timedelta(minutes=1)))
    marks = [(sql, values) for sql, values in statements if sql.lstrip().upper().startswith(("UPDATE", "WITH"))]
    assert marks, statements
    assert await Delivery.filter(status="sending", claimed_by="w:1").count() == 64
    plans = [await plan_of(sql, values) for sql, values in marks]
    if storage_db.dialect() == "postgres":  # the rows marked found from a scan of the status index or the table
        wide = [p for p in plans if re.search(
            r"Seq Scan on delivery d\b|Scan using idx_delivery_status_\w+ on delivery d\b", p)]
    else:
        wide = [p for p in plans if re.search(r"SCAN d\b|SEARCH d USING (COVERING )?INDEX", p)]
    assert not wide, f"marking a window of claimed sends reads every due copy of the lane: {wide}"


async def test_two_rounds_at_once_on_one_replica_share_the_lane(rig: Rig) -> None:
    """The serving loop and a caller's drain() schedule at the same moment: one worker per lane, so
    neither drops the lease the other is sending under (each send would be put back, unsent)."""
    await rig.broadcast()
    await asyncio.gather(rig.herald.outbox.run_once(), rig.herald.outbox.run_once())
    assert rig.herald.outbox.fenced == 0
    assert await Delivery.filter(status="delivered").count() == 4
    assert _dm_counts(rig, ["UANNA", "UBO", "UCY", "UDI"]) == [1, 1, 1, 1]


async def test_a_lease_that_ran_out_is_not_renewed(rig: Rig) -> None:
    """A heartbeat that comes after the lease ran out does not count it as held, even while
    nobody else has taken it yet (another replica may be taking it at this moment)."""
    holder = _replica(rig)
    try:
        await holder.outbox.lanes.ensure([LANE])
        assert await holder.outbox.lanes.acquire(LANE, rig.clock.now()) is not None
        rig.clock.advance(seconds=5)
        assert await holder.outbox.lanes.renew([LANE], rig.clock.now()) == {LANE}
        rig.clock.advance(seconds=rig.herald.settings.delivery_lease_seconds + 1)
        assert await holder.outbox.lanes.renew([LANE], rig.clock.now()) == set()
    finally:
        await holder.close()


async def test_a_small_workspace_is_not_held_up_by_a_big_one(rig: Rig) -> None:
    """With more lanes than a replica works at once, lanes take turns (least recently served
    first), so 3 members in a small workspace are not queued behind 40 in a big one."""
    big = await _add_members(rig, 40)
    rig.fake.add_workspace(SMALL_TEAM, SMALL_TOKEN)
    await add_slack_workspace(SMALL_TEAM, SMALL_TOKEN, now=rig.clock.now(), actor="test")
    small = await _add_members(rig, 3, team=SMALL_TEAM, org="tiny")
    replica = _replica(rig, delivery_max_lanes=1, delivery_batch_size=5, delivery_lane_inflight=2)
    try:
        await rig.broadcast(audience="org:big")
        await rig.broadcast(audience="org:tiny")
        await replica.outbox.drain()
        teams = [c.team_id for c in rig.fake.calls_to("chat.postMessage")]
        assert teams.count(TEAM) == 40 and teams.count(SMALL_TEAM) == 3
        last_small = max(i for i, team in enumerate(teams) if team == SMALL_TEAM)
        assert last_small < 5 + 3  # at most one turn of the big workspace before the small one is done
        assert _dm_counts(rig, big) == [1] * 40 and _dm_counts(rig, small) == [1] * 3
    finally:
        await replica.close()


class _CountingLeases:
    """The replica's lane store, counting the leases it takes (all else unchanged)."""

    def __init__(self, store: object) -> None:
        self.store, self.acquired = store, 0

    async def take(self, *args: object, **kwargs: object) -> object:  # the outbox takes leases with take()
        self.acquired += 1
        return await self.store.take(*args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_a_lane_nobody_waits_for_goes_on_past_its_turn(rig: Rig) -> None:
    """A turn ends after `batch_size` sends only when another lane may be waiting for the slot;
    with slots free the lane goes straight on (no drained window, no second lease), and with
    every slot taken it still gives way (test_a_small_workspace_is_not_held_up_by_a_big_one)."""
    users = await _add_members(rig, 12)
    replica = _replica(rig, delivery_max_lanes=4, delivery_batch_size=3, delivery_lane_inflight=2)
    leases = replica.outbox.lanes = _CountingLeases(replica.outbox.lanes)  # type: ignore[assignment]
    try:
        await rig.broadcast(audience="org:big")
        assert await replica.outbox.drain() == 12
        assert leases.acquired == 1  # one turn after another under one lease
        assert _dm_counts(rig, users) == [1] * 12
    finally:
        await replica.close()


async def test_a_lane_going_on_fills_its_window_at_a_turns_end(rig: Rig) -> None:
    """With no lane waiting for the slot, the last claim of a turn asks for the window's room, as
    every other claim does, not just for what is left of the turn: a turn of 5 with a window of 4
    used to end on a claim of 1 (a round trip and a wait on its send and write for one row)."""
    users = await _add_members(rig, 12)
    replica = _replica(rig, delivery_max_lanes=4, delivery_batch_size=5, delivery_lane_inflight=4)
    source = replica.outbox.notices
    claim = source.claim
    asked: list[int] = []

    async def counted_claim(lane, limit, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        asked.append(limit)
        return await claim(lane, limit, *args, **kwargs)

    source.claim = counted_claim  # type: ignore[method-assign]
    try:
        await rig.broadcast(audience="org:big")
        assert await replica.outbox.drain() == 12
        assert _dm_counts(rig, users) == [1] * 12
        assert asked and min(asked) >= 2, asked  # at least half the window: the claim rule
    finally:
        await replica.close()


async def test_a_lane_going_on_past_its_turn_renews_its_lease(rig: Rig) -> None:
    """A lane working longer than its lease renews it before a claim once less than half is left,
    also without the heartbeat task (drain()): here every claim takes 2 s of the injected clock,
    so a single 10 s lease would have less than its 3 s send margin left by the fourth claim and
    the rest of the sends would be fenced (deferred, the drain ending short)."""
    users = await _add_members(rig, 12)
    replica = _replica(rig, delivery_max_lanes=4, delivery_batch_size=3, delivery_lane_inflight=2)
    source = replica.outbox.notices
    claim = source.claim
    renewals = _count_renewals(replica)
    claims: list[int] = []

    async def slow_claim(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        claims.append(1)
        rig.clock.advance(seconds=2)
        return await claim(*args, **kwargs)

    source.claim = slow_claim  # type: ignore[method-assign]
    try:
        await rig.broadcast(audience="org:big")
        assert await replica.outbox.drain() == 12
        assert replica.outbox.fenced == 0
        assert _dm_counts(rig, users) == [1] * 12
        assert 1 <= len(renewals) < len(claims)  # only when the lease ran short, not at every claim
    finally:
        await replica.close()


@pytest.mark.parametrize("lease", [MIN_DELIVERY_LEASE_SECONDS, MIN_DELIVERY_LEASE_SECONDS - 1])
async def test_the_smallest_lease_the_settings_accept_keeps_delivering(rig: Rig, lease: int) -> None:
    """A lane sends only while more than the 3 s send margin of its lease is left, and renews it
    before a claim once half has passed: the smallest lease the settings accept (7 s) renews before
    the margin stops it, here with claims that take 0.4 s each and no heartbeat task (drain()).
    One second less is refused, and would fence sends (HERALD_DELIVERY_LEASE_SECONDS=3 used to be
    accepted and then never sent anything)."""
    with pytest.raises(ConfigError, match=f"at least {MIN_DELIVERY_LEASE_SECONDS}"):
        load_settings(**{**rig.herald.settings.model_dump(), "delivery_lease_seconds": MIN_DELIVERY_LEASE_SECONDS - 1})
    users = await _add_members(rig, 12)
    replica = _replica(rig, delivery_max_lanes=4, delivery_batch_size=3, delivery_lane_inflight=1,
                       delivery_lease_seconds=lease)  # model_copy: not validated
    source = replica.outbox.notices
    claim = source.claim

    async def slow_claim(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        rig.clock.advance(seconds=0.4)
        return await claim(*args, **kwargs)

    source.claim = slow_claim  # type: ignore[method-assign]
    try:
        await rig.broadcast(audience="org:big")
        sent = await replica.outbox.drain()
        if lease >= MIN_DELIVERY_LEASE_SECONDS:
            assert (sent, replica.outbox.fenced) == (12, 0)
            assert _dm_counts(rig, users) == [1] * 12
        else:
            assert replica.outbox.fenced > 0
    finally:
        await replica.close()


async def test_a_lease_with_time_left_is_not_renewed_at_each_claim(rig: Rig) -> None:
    """Renewing costs statements for every lease the replica holds; with the clock standing still
    a lane going on through many claims and turns has no reason to."""
    users = await _add_members(rig, 12)
    replica = _replica(rig, delivery_max_lanes=4, delivery_batch_size=2, delivery_lane_inflight=2)
    renewals = _count_renewals(replica)
    try:
        await rig.broadcast(audience="org:big")
        assert await replica.outbox.drain() == 12
        assert _dm_counts(rig, users) == [1] * 12
        assert renewals == []
    finally:
        await replica.close()


def _count_renewals(replica: Any) -> list[int]:
    renewals: list[int] = []
    renew = replica.outbox.lanes.renew

    async def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        renewals.append(1)
        return await renew(*args, **kwargs)

    replica.outbox.lanes.renew = counted
    return renewals


class _TickingClock:
    """The rig's clock, moved on 10 ms by every read: two renewals never share a `now`."""

    def __init__(self, clock: object) -> None:
        self.clock = clock

    def now(self) -> datetime:
        return self.clock.advance(seconds=0.01)  # type: ignore[attr-defined]


async def test_renewals_at_the_same_moment_keep_every_lease(rig: Rig) -> None:
    """The heartbeat and a lane going on past its turn may renew at once. The store renews all of
    the replica's leases and reads back those ending at this renewal's end: interleaved, the
    first renewal read back nothing and took every lane for lost (bench/scale.py, one replica:
    "lost the lease" warnings and its lanes idle). Renewals now take turns."""
    replica = _replica(rig)
    outbox = replica.outbox
    lanes = [LANE, (LANE[0], SMALL_TEAM)]
    try:
        await outbox.lanes.ensure(lanes)
        for lane in lanes:
            outbox._held[lane] = await outbox.lanes.acquire(lane, rig.clock.now())
        outbox.clock = _TickingClock(rig.clock)  # type: ignore[assignment]
        await asyncio.gather(outbox._renew(), outbox._renew(), outbox.heartbeat())
        assert set(outbox._held) == set(lanes)
        assert {(lane.platform, lane.workspace_external_id) for lane in await DeliveryLane.filter(
            leased_by=outbox.worker_id)} == set(lanes)
    finally:
        outbox.clock = rig.clock
        await replica.close()


async def test_a_lane_asks_only_the_sources_with_work_due_in_it(rig: Rig) -> None:
    """A lane's claims go to the sources with due work in it: with only notices due, the direct
    messages' source is not asked (a transaction each time), and the notices' source is not asked
    again once it gave fewer rows than asked for."""
    await _add_members(rig, 5)
    replica = _replica(rig, delivery_lane_inflight=8)
    asked: dict[str, int] = {}
    for source in replica.outbox.sources:
        def counting(original, name):  # noqa: ANN001, ANN202
            async def claim(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                asked[name] = asked.get(name, 0) + 1
                return await original(*args, **kwargs)
            return claim
        source.claim = counting(source.claim, source.name)  # type: ignore[method-assign]
    try:
        await rig.broadcast(audience="org:big")
        assert await replica.outbox.drain() == 5
        assert asked == {"notices": 1}, asked
    finally:
        await replica.close()


async def test_a_lane_claims_only_the_kind_of_work_due_in_it(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends and in-place updates are claimed by separate statements: a lane with only updates due
    (every acknowledgement's) does not also claim sends, and one with only sends due does not look
    for updates."""
    from bot.core.delivery import notice_rows
    from bot.core.delivery import outbox as outbox_module

    await _add_members(rig, 3)
    claimed: list[str] = []
    real = outbox_module.claim_rows

    async def counting(lane, due, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        claimed.append("sends" if due == notice_rows.SEND_DUE else "updates")
        return await real(lane, due, *args, **kwargs)
    monkeypatch.setattr(outbox_module, "claim_rows", counting)
    outbox = rig.herald.outbox
    notice_id = await rig.broadcast(audience="org:big")
    assert await outbox.drain() == 3
    assert set(claimed) == {"sends"}, claimed
    claimed.clear()
    await Delivery.filter(notice_id=notice_id).update(update_pending=True)
    assert await outbox.drain() == 3
    assert set(claimed) == {"updates"}, claimed


async def test_a_workspace_with_new_work_goes_ahead_of_one_that_has_been_sending(rig: Rig) -> None:
    """Least attained service first: when the replica's request slots are all taken, a small
    workspace whose notice just arrived is served before a big one that has been sending, not
    queued behind its in-flight window (one request slot here; the first send held on the wire
    until both workspaces have requests waiting)."""
    await _add_members(rig, 12)
    rig.fake.add_workspace(SMALL_TEAM, SMALL_TOKEN)
    await add_slack_workspace(SMALL_TEAM, SMALL_TOKEN, now=rig.clock.now(), actor="test")
    await _add_members(rig, 3, team=SMALL_TEAM, org="tiny")
    replica = _replica(rig, delivery_concurrency=1, delivery_lane_inflight=4)
    stalled = _StalledChannel(replica.outbox.channels["slack"])
    replica.outbox.channels = {**replica.outbox.channels, "slack": stalled}
    await rig.broadcast(audience="org:big")
    loop = asyncio.create_task(replica.outbox.run_forever())
    try:
        await wait_until(lambda: stalled.waiting == 1, what="the big workspace's first send")
        await wait_until(lambda: _rows_are(4, workspace_external_id=TEAM, status="sending"))
        await rig.broadcast(audience="org:tiny")
        replica.outbox.wake(broadcast=False)
        await wait_until(lambda: _rows_are(3, workspace_external_id=SMALL_TEAM, status="sending"))
        # the big workspace's three other sends and the small one's three wait for the request slot
        await wait_until(lambda: len(replica.outbox._gate._waiters or ()) == 6, what="six sends waiting")
        stalled.door.set()
        await wait_until(lambda: _rows_are(15, status="delivered"), what="both notices delivered")
        teams = [c.team_id for c in rig.fake.calls_to("chat.postMessage")]
        assert teams[:4] == [TEAM, SMALL_TEAM, SMALL_TEAM, SMALL_TEAM], teams
    finally:
        replica.outbox.stop()
        await loop
        await replica.close()


async def test_the_priority_gate_serves_the_lowest_priority_first() -> None:
    gate = PriorityGate(1)
    order: list[str] = []

    release = asyncio.Event()

    async def use(name: str, priority: float, hold: asyncio.Event | None = None) -> None:
        async with gate.hold(priority):
            order.append(name)
            if hold is not None:
                await hold.wait()

    first = asyncio.create_task(use("first", 9, release))
    await wait_until(lambda: order == ["first"])  # holds the only slot
    waiting = [asyncio.create_task(use(name, p)) for name, p in [("big", 50), ("small", 0), ("mid", 5),
                                                                   ("gone", 1), ("small-2", 0)]]
    await asyncio.sleep(0)  # all five wait
    waiting[3].cancel()  # a cancelled waiter does not take a slot
    release.set()
    await asyncio.gather(first, *waiting, return_exceptions=True)
    assert order == ["first", "small", "small-2", "mid", "big"]


async def test_a_storm_of_429s_then_5xx_is_delivered_exactly_once(rig: Rig) -> None:
    """The fake keeps a tight workspace limit (10 posts per 10 s) on its own clock: every drain
    gets some through, then a 429 pauses the lane for everyone until its Retry-After has passed."""
    users = await _add_members(rig, 30)
    fake_clock = ManualMonotonic()
    rig.fake.clock = fake_clock
    rig.fake.set_limits(SlackLimits(post_per_workspace=Rate(10, 10.0), post_per_channel=Rate(100, 1.0)))
    other = _replica(rig)
    try:
        await rig.broadcast(audience="org:big")
        throttled_rounds = 0
        for round_ in range(40):
            replica = (rig.herald, other)[round_ % 2]
            before = rig.fake.call_count("chat.postMessage")
            await replica.outbox.drain()
            lane = await DeliveryLane.get(platform="slack", workspace_external_id=TEAM)
            if lane.paused_until and lane.paused_until > rig.clock.now():
                throttled_rounds += 1
                # while paused neither replica calls Slack at all (no busy loop, no hammering)
                calls = rig.fake.call_count("chat.postMessage")
                assert await rig.herald.outbox.drain() == 0 and await other.outbox.drain() == 0
                assert rig.fake.call_count("chat.postMessage") == calls
                # and the loop sleeps until the pause ends or a retry falls due, whichever is first
                wait = (lane.paused_until - rig.clock.now()).total_seconds()
                retry = await Delivery.filter(status="pending", next_attempt_at__gt=rig.clock.now()).order_by(
                    "next_attempt_at").first()
                soonest = min([wait] + ([(retry.next_attempt_at - rig.clock.now()).total_seconds()] if retry else []))
                assert await rig.herald.outbox._idle_seconds() >= min(soonest, 5.0) - 0.001
                wait = (lane.paused_until - rig.clock.now()).total_seconds()
                rig.clock.advance(seconds=wait)
                fake_clock.advance(wait)
            elif round_ == 3:
                rig.fake.fail_next("chat.postMessage", status=503, times=4)  # then a burst of 5xx
            else:
                rig.clock.advance(seconds=30)
                fake_clock.advance(30)
            if await Delivery.filter(status__in=["pending", "sending"]).count() == 0:
                break
            assert rig.fake.call_count("chat.postMessage") >= before
        stats = rig.fake.limits_stats()
        assert throttled_rounds >= 2 and stats["throttled"]["total"] >= 2
        assert await Delivery.filter(member__email__endswith="@big.example", status="delivered").count() == 30
        assert _dm_counts(rig, users) == [1] * 30
        # every 429 paused the lane at once: at most one window of in-flight calls per pause was refused
        assert stats["throttled"]["total"] <= throttled_rounds * rig.herald.settings.delivery_lane_inflight
    finally:
        await other.close()


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)  # SQLite: one process, the in-process wake
async def test_a_send_accepted_on_one_replica_wakes_the_others_at_once(rig: Rig) -> None:
    """PostgreSQL: LISTEN/NOTIFY on a dedicated connection, not the next poll."""
    assert storage_db.dialect() == "postgres"
    woken = asyncio.Event()
    listener = PgWakeups(rig.herald.settings.tortoise_db_url, woken.set)
    listener.start()
    try:
        await asyncio.wait_for(listener.listening.wait(), 30)
        woken.clear()  # the wake-up on connecting (for anything missed while not listening)
        rig.herald.outbox.notify = PgWakeups(rig.herald.settings.tortoise_db_url, lambda: None).notify
        await rig.broadcast()
        rig.herald.outbox.wake()
        await asyncio.wait_for(woken.wait(), 30)
    finally:
        await listener.stop()


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)  # SQLite: one process, the in-process wake
async def test_an_acknowledgement_wakes_the_replica_holding_the_lane(rig: Rig) -> None:
    """The clicked copies are updated by whichever replica holds the workspace's lane: when that is
    another one, it hears of the click at once (NOTIFY), not at its next poll (5 s by default)."""
    from bot.core.notices import acks

    notice_id = await rig.broadcast("member:anna@acme.example")
    await rig.herald.outbox.drain()
    woken = asyncio.Event()
    holder = PgWakeups(rig.herald.settings.tortoise_db_url, woken.set)  # the replica holding the lane
    holder.start()
    try:
        await asyncio.wait_for(holder.listening.wait(), 30)
        woken.clear()  # the wake-up on connecting (for anything missed while not listening)
        rig.herald.outbox.notify = PgWakeups(rig.herald.settings.tortoise_db_url, lambda: None).notify
        rig.herald.worker_running = True  # as under `serve`: the lane workers send the updates
        result = await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA",
                                        now=rig.clock.now())
        rig.herald.acknowledged(result)
        await asyncio.wait_for(woken.wait(), 30)
    finally:
        rig.herald.worker_running = False
        await holder.stop()


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)  # SQLite: one process, the in-process wake
async def test_a_replica_does_not_hear_its_own_notify_and_hears_which_kind_of_wake_the_others_send(rig: Rig) -> None:
    """A replica woke itself before it told the others: hearing its own NOTIFY again made every
    acknowledgement's wake urgent, so the wait for more updates (LaneSettings.update_gather) never
    happened on PostgreSQL. Another replica's wake for updates only is heard as such."""
    url = rig.herald.settings.tortoise_db_url
    urgent, updates = asyncio.Event(), asyncio.Event()
    listener = PgWakeups(url, urgent.set, origin="replica-a", on_update_wake=updates.set)
    listener.start()
    try:
        await asyncio.wait_for(listener.listening.wait(), 30)
        urgent.clear()  # the wake-up on connecting (for anything missed while not listening)
        await PgWakeups(url, lambda: None, origin="replica-a").notify()  # its own
        await PgWakeups(url, lambda: None, origin="replica-b").notify(urgent=False)
        await asyncio.wait_for(updates.wait(), 30)  # delivered in order: its own came first
        assert not urgent.is_set()
        await PgWakeups(url, lambda: None, origin="replica-b").notify()
        await asyncio.wait_for(urgent.wait(), 30)
    finally:
        await listener.stop()


async def test_a_notify_says_whether_any_of_its_wakes_was_urgent(rig: Rig) -> None:
    outbox = rig.herald.outbox
    told: list[bool] = []

    async def notify(urgent: bool = True) -> None:
        told.append(urgent)

    outbox.notify = notify
    outbox.wake(urgent=False)
    await wait_until(lambda: outbox._notifying is None and told, what="the NOTIFY")
    outbox.wake(urgent=False)
    outbox.wake()
    await wait_until(lambda: outbox._notifying is None and len(told) == 2, what="the second NOTIFY")
    assert told == [False, True]


async def test_a_burst_of_wakes_is_one_or_two_notifies(rig: Rig) -> None:
    """Each acknowledgement wakes the other replicas; a burst of 300 clicks must not be 300 NOTIFY
    statements: the wakes asked for while one NOTIFY is on its way are sent by the next one."""
    outbox = rig.herald.outbox
    sent = 0
    release = asyncio.Event()

    async def notify(urgent: bool = True) -> None:
        nonlocal sent
        sent += 1
        await release.wait()

    outbox.notify = notify
    for _ in range(150):
        outbox.wake()
    await wait_until(lambda: sent == 1, what="the first NOTIFY")  # it tells of those 150 wakes
    for _ in range(150):
        outbox.wake()  # while it is on its way
    release.set()
    await wait_until(lambda: outbox._notifying is None, what="the NOTIFYs sent")
    assert sent == 2  # the first, and one for every wake asked for while it was on its way
    outbox.wake()
    await wait_until(lambda: outbox._notifying is None, what="the next NOTIFY sent")
    assert sent == 3  # a later wake is told again


async def test_a_wake_for_updates_only_waits_for_more_unless_an_urgent_one_comes(rig: Rig) -> None:
    """An acknowledgement asks only for its copies' in-place updates, which its presser already sees
    in the click's answer: the outbox waits `update_gather` for more before it looks (a look every
    50 ms at 500 clicks a second over 100 workspaces took each lane for one row: a lease, a claim and
    a release per update). A send's wake does not wait, and ends that wait at once."""
    outbox = rig.herald.outbox
    outbox.settings = replace(outbox.settings, wake_gather=0.0, update_gather=3600.0)
    outbox.wake(broadcast=False, urgent=False)
    gathering = asyncio.create_task(outbox._gather())
    for _ in range(20):
        await asyncio.sleep(0)  # no time passes: the wait is for an urgent wake
    assert not gathering.done()
    outbox.wake(broadcast=False)  # e.g. a CAM's Send
    await asyncio.wait_for(gathering, 10)
    await asyncio.wait_for(outbox._gather(), 10)  # still urgent: this round has not begun


async def test_acknowledged_copies_are_updated_after_the_gather_without_a_poll(rig: Rig) -> None:
    """The clicks' wakes alone get their copies updated once `update_gather` is over: the wait is
    not a lost wake left to the next poll."""
    from bot.core.notices import acks

    users = await _add_members(rig, 5)
    notice_id = await rig.broadcast()
    await rig.herald.outbox.drain()
    outbox = rig.herald.outbox
    outbox.settings = replace(outbox.settings, update_gather=0.05)
    outbox.poll_seconds = 3600.0
    rig.herald.worker_running = True
    worker = asyncio.create_task(outbox.run_forever())
    try:
        for user in users:
            result = await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=user,
                                            now=rig.clock.now())
            rig.herald.acknowledged(result)
        await wait_until(lambda: _rows_are(0, notice_id=notice_id, update_pending=True), what="the copies updated")
        assert rig.fake.call_count("chat.update") == 5
    finally:
        outbox.stop()
        await asyncio.wait_for(worker, 30)
        rig.herald.worker_running = False


async def test_an_update_that_gets_429_holds_back_the_workspaces_updates_and_stays_pending(rig: Rig) -> None:
    """A 429 on chat.update is Slack's limit of that method (Slack's limits are "per API method per
    workspace/team per app"): the update waits for its Retry-After, and so do the workspace's
    other updates, for every replica (the lane's update budget, handed on with the lease); the
    lane itself is not paused, since chat.postMessage was not refused (this test asserted a lane
    pause before: that held up the workspace's new messages for an update's limit)."""
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    await Delivery.filter(notice_id=notice_id).update(update_pending=True)
    rig.fake.fail_next("chat.update", status=429, retry_after=20)
    await rig.herald.outbox.drain()
    lane = await DeliveryLane.get(platform="slack", workspace_external_id=TEAM)
    assert lane.paused_until is None
    assert lane.update_tokens_at >= rig.clock.now() + timedelta(seconds=19)  # the updates' pause, shared
    assert (await Delivery.get(notice_id=notice_id)).update_pending
    rig.clock.advance(seconds=19)
    await rig.herald.outbox.drain()  # not before the Retry-After
    assert [c.status for c in rig.fake.calls_to("chat.update")] == [429]
    rig.clock.advance(seconds=2)
    await rig.herald.outbox.drain()  # ... but then at once, not a minute later as other failures
    assert not (await Delivery.get(notice_id=notice_id)).update_pending
    assert [c.status for c in rig.fake.calls_to("chat.update")] == [429, 200]


async def test_a_chat_update_429_does_not_hold_up_the_workspaces_new_messages(rig: Rig) -> None:
    """Slack's rate-limit docs: after a 429 "calls to other methods on behalf of this workspace are
    not restricted" (docs/platform-limits.md). A 429 to chat.update (an edit, a retraction or a
    burst of acknowledgements) used to pause the whole lane, so a must-know notice queued meanwhile
    waited for chat.update's Retry-After; now its copies go at once and only the update waits."""
    await _add_members(rig, 30)
    first = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    await Delivery.filter(notice_id=first).update(update_pending=True)  # e.g. the notice was edited
    urgent = await rig.broadcast()  # a must-know notice to the whole workspace, queued meanwhile
    rig.fake.fail_next("chat.update", retry_after=30)
    await rig.herald.outbox.drain()
    # (the rig's directory has a member with no chat account, whose copy fails at once: not waiting)
    waiting = await Delivery.filter(notice_id=urgent, status__in=["pending", "sending"]).count()
    assert waiting == 0, f"{waiting} copies of the must-know notice held back for chat.update's Retry-After"
    assert await Delivery.filter(notice_id=urgent, status="delivered").count() >= 30
    assert (await Delivery.get(notice_id=first)).update_pending  # the refused update waits for its Retry-After
    rig.clock.advance(seconds=31)
    await rig.herald.outbox.drain()
    assert not (await Delivery.get(notice_id=first)).update_pending


async def test_a_teams_update_429_pauses_the_tenant(teams: TeamsRig) -> None:
    """The Bot Connector's limit is per app per tenant, for every request: a 429 on an update
    pauses the tenant's lane (its sends too) until the Retry-After."""
    notice_id = await broadcast(teams.herald, teams.clock, "member:eve@teamsco.example")
    await teams.herald.outbox.drain()
    await Delivery.filter(notice_id=notice_id).update(update_pending=True)
    teams.connector.fail_next("update_activity", 429, retry_after=20)
    await teams.herald.outbox.drain()
    copy = await Delivery.get(notice_id=notice_id)
    lane = await DeliveryLane.get(platform="teams", workspace_external_id=copy.workspace_external_id)
    assert lane.paused_until is not None and lane.paused_until >= teams.clock.now() + timedelta(seconds=19)
    assert copy.update_pending


async def test_an_update_that_fails_otherwise_waits_a_minute(rig: Rig) -> None:
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    await Delivery.filter(notice_id=notice_id).update(update_pending=True)
    rig.fake.fail_next("chat.update", status=503)
    await rig.herald.outbox.drain()
    rig.clock.advance(seconds=30)
    await rig.herald.outbox.drain()
    assert len(rig.fake.calls_to("chat.update")) == 1
    rig.clock.advance(seconds=31)
    await rig.herald.outbox.drain()
    assert not (await Delivery.get(notice_id=notice_id)).update_pending
    assert [c.status for c in rig.fake.calls_to("chat.update")] == [503, 200]


async def test_in_place_updates_keep_within_the_workspaces_update_budget(rig: Rig) -> None:
    """Slack's chat.update is Tier 3 (about 50 a minute per workspace): with a budget of 2 a
    minute, four copies to update take two calls now and two when the budget has refilled; no
    429 is drawn (each would pause the workspace's sends too), and the lane is not taken again
    and again while it waits."""
    notice_id = await rig.broadcast()
    outbox = rig.herald.outbox
    await outbox.drain()
    outbox.update_budgets = LaneBudgets({"slack": 2}, rig.clock, margin_seconds=0)
    await Delivery.filter(notice_id=notice_id, status="delivered").update(update_pending=True)
    assert await outbox.drain() == 2
    assert await Delivery.filter(notice_id=notice_id, update_pending=True).count() == 2
    assert await outbox.drain() == 0  # nothing due until a token is back: no busy loop
    waiting = await outbox.notices.next_due(None, rig.clock.now())
    assert waiting is not None and 25 <= (waiting - rig.clock.now()).total_seconds() <= 31
    rig.clock.advance(seconds=61)
    assert await outbox.drain() == 2
    assert await Delivery.filter(notice_id=notice_id, update_pending=True).count() == 0
    assert [c.status for c in rig.fake.calls_to("chat.update")] == [200] * 4


def test_an_update_budget_holds_back_a_few_seconds_of_refill() -> None:
    """A burst claimed at once reaches Slack over the next seconds, while Slack's full bucket does
    not refill: the lane's bucket holds 6 s of refill less than a minute's worth (45 at 50 a minute)."""
    from bot.common.clock import ManualClock

    clock = ManualClock()
    budgets = LaneBudgets({"slack": 50}, clock)
    lane = ("slack", "T1")
    assert budgets.take(lane, 100) == 45
    clock.advance(seconds=1.2)
    assert budgets.take(lane, 100) == 1
    clock.advance(seconds=600)
    assert budgets.take(lane, 100) == 45  # never more than the capacity, however long it rested
    budgets.give_back(lane, 100)
    assert budgets.take(lane, 100) == 45
    assert LaneBudgets({"slack": 2}, clock).take(lane, 5) == 1  # at least one request, at small rates
    assert LaneBudgets({"teams": 50}, clock).take(lane, 5) == 5  # no budget for the platform: no limit


async def test_two_replicas_together_keep_chat_update_within_tier_3(rig: Rig) -> None:
    """README (Running several replicas): each workspace stays within its rate however many
    replicas there are. The chat.update budget goes with the lane's lease (delivery_lane
    update_tokens, migration 0022): a replica that takes the lane two seconds after another spent
    a minute's worth of updates finds the budget spent, not full, so the two together stay under
    Slack's Tier 3 (50 a minute) and draw no 429 (each would hold up the workspace's updates)."""
    await _add_members(rig, 100)
    notice_id = await rig.broadcast()
    await rig.herald.outbox.drain()
    slack_clock = ManualMonotonic()
    rig.fake.clock = slack_clock
    rig.fake.set_limits(SlackLimits())  # chat.update: Tier 3, 50 a minute per workspace
    other = _replica(rig)
    try:
        # an edit / a burst of acknowledgements: every delivered copy needs its in-place update
        await Delivery.filter(notice_id=notice_id, status="delivered").update(update_pending=True)
        await rig.herald.outbox.drain()  # replica A holds the lane: the budget's worth of updates
        rig.clock.advance(seconds=2)
        slack_clock.advance(2)
        await other.outbox.drain()  # replica B takes the lane two seconds later
        updates = rig.fake.calls_to("chat.update")
        throttled = rig.fake.limits_stats()["throttled"]["by_method"].get("chat.update", 0)
        assert throttled == 0, f"{len(updates)} chat.update calls within 2 s from two replicas, {throttled} refused"
        assert 45 <= len(updates) <= 47  # B got the two seconds' refill, not a full bucket
    finally:
        await other.close()


def test_an_update_budget_is_handed_on_with_the_lane() -> None:
    """What one holder leaves (`state`) is what the next starts from (`load`); a lane never spent
    from hands on nothing and starts full."""
    from bot.common.clock import ManualClock

    clock = ManualClock()
    lane = ("slack", "T1")
    first, second = LaneBudgets({"slack": 50}, clock), LaneBudgets({"slack": 50}, clock)
    assert first.state(lane) is None
    assert first.take(lane, 40) == 40
    second.load(lane, *first.state(lane))  # type: ignore[misc]
    assert second.take(lane, 100) == 5
    second.load(lane, None, None)
    assert second.take(lane, 100) == 45


# ---- finding the lanes with due rows (the open-rows index, migration 0011) -------------------

_ROW = st.tuples(st.sampled_from(["slack", "teams", "sandbox"]), st.sampled_from(["W1", "W2", "W10", "a", "Z"]),
                 st.sampled_from(["pending", "sending", "delivered", "failed"]),
                 st.integers(min_value=-3, max_value=3), st.integers(min_value=-3, max_value=3))


@fuzz()
@given(rows=st.lists(_ROW, max_size=40))
async def test_lanes_with_due_rows_are_exactly_the_lanes_a_full_scan_finds(db: str, rows: list) -> None:
    """The skip scan over the open-rows index agrees with the plain reading of "due": a pending
    row whose time has come, or a sending row whose claim has run out, in any platform and
    workspace (ids in any order, lanes that sort next to each other, lanes with nothing due)."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    await Delivery.all().delete()
    org = await Organisation.get_or_create(external_id="lanes", defaults={"name": "Lanes"})
    member = await Member.get_or_create(organisation=org[0], email="m@lanes.example", defaults={"role": "sales"})
    notice = await Notice.get_or_create(title="lanes", defaults=dict(
        topic="operations", importance="nice-to-know", body="b", audience="all", created_at=now))
    await Delivery.bulk_create([
        Delivery(notice=notice[0], member=member[0], platform=platform, workspace_external_id=workspace,
                 status=status, sequence=i, next_attempt_at=now + timedelta(minutes=due),
                 claimed_until=now + timedelta(minutes=claim), created_at=now)
        for i, (platform, workspace, status, due, claim) in enumerate(rows)])
    expected = {(p, w) for p, w, status, due, claim in rows
                if (status == "pending" and due <= 0) or (status == "sending" and claim < 0)}
    assert await lanes_with_due_rows("delivery", now) == expected


async def test_a_stale_holders_late_outcomes_are_not_written(rig: Rig) -> None:
    """A replica whose claim was taken over (its lease ran out) may still hear back from the
    platform; its outcomes, sends and in-place updates alike, must not overwrite the new holder's
    rows (each write is guarded by the claim's token)."""
    from bot.core.ports import MessageRef

    await _add_members(rig, 3)
    outbox = rig.herald.outbox
    (source,) = [s for s in outbox.sources if s.name == "notices"]
    await rig.broadcast(audience="org:big")
    now = rig.clock.now()
    lane = ("slack", (await Delivery.first()).workspace_external_id)
    jobs = await source.claim(lane, 10, "stale", now, now + timedelta(seconds=10))
    assert len(jobs) == 3 and all(not j.update for j in jobs)
    await Delivery.all().update(claimed_by="new-holder")
    late = [(j, Outcome.delivered(MessageRef("D1", f"1.{j.row.id}"), dm_channel="DLATE")) for j in jobs]
    await source.record(late, now)
    rows = await Delivery.all().values("status", "claimed_by", "message_id")
    assert rows == [{"status": "sending", "claimed_by": "new-holder", "message_id": ""}] * 3
    assert not await AuditEvent.filter(kind="notice.delivered").exists()

    await Delivery.all().update(status="delivered", claimed_by="", claimed_until=None, update_pending=True)
    await source.due_lanes(now)  # as the scheduler looks before a lane's turn
    updates = await source.claim(lane, 10, "stale-again", now, now + timedelta(seconds=10))
    assert len(updates) == 3 and all(j.update for j in updates)
    await Delivery.all().update(claimed_by="new-holder")
    await source.record([(j, Outcome.delivered(MessageRef("D1", "1.0"))) for j in updates], now)
    assert await Delivery.filter(update_pending=True, claimed_by="new-holder").count() == 3
