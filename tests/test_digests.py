"""Digests: nice-to-know notices arrive as one message per member per period, in their morning."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta


from bot.channels.slack_blocks import SEND_ACTION
from bot.core.notices import sending as notices
from bot.core.commands.parser import SendCommand
from bot.common.budget import TimeBudget
from bot.core.notices import digests
from bot.core.notices.digests import digest_period, run_digests
from bot.core.directory.preferences import update_preferences
from bot.core.notices.revisions import edit_notice, retract_notice
from storage.models import AuditEvent, Delivery, DigestRun, Member, Notice, OutboundMessage, PlatformAccount
from tests.query_plans import uses_an_index_on
from tests.support import CAM_USER, TEAM, Rig, SlackHarness, bulk_members

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 Berlin
MONDAY_10_UTC = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # 11:00 Berlin
TUESDAY_8_UTC = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)  # 09:00 Berlin: Anna's and Bo's digest hour


async def _nice(rig: Rig, topic: str, title: str, audience: str = "member:anna@acme.example", link: str = "") -> int:
    command = SendCommand(importance="nice-to-know", topic=topic, audience=audience, title=title,
                          body="Read at leisure", link=link)
    preview = await notices.create_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    return preview.notice.id


def _digests(rig: Rig, channel: str | None = None) -> list:
    return [c for c in rig.fake.calls_to("chat.postMessage")
            if c.ok and "Your Herald digest" in c.args["text"] and (channel is None or c.channel == channel)]


def _text(call) -> str:  # noqa: ANN001
    return "\n".join(b["text"]["text"] for b in call.args["blocks"] if b["type"] == "section")


async def _tick_at(rig: Rig, moment: datetime) -> int:
    """Tick at `moment` and run the outbox it wakes; returns the digests sent."""
    rig.clock.set(moment)
    before = await AuditEvent.filter(kind="digest.sent").count()
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    return await AuditEvent.filter(kind="digest.sent").count() - before




def test_digest_periods() -> None:
    monday_7 = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    daily = digest_period(monday_7, "Europe/Berlin", "daily")
    assert daily.key == "2026-01-05" and daily.due_at == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    weekly = digest_period(datetime(2026, 1, 8, 12, 0, tzinfo=UTC), "Europe/Berlin", "weekly")  # a Thursday
    assert weekly.key == "2026-W02" and weekly.due_at == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    sydney = digest_period(monday_7, "Australia/Sydney", "daily")  # already Monday evening there
    assert sydney.key == "2026-01-05" and sydney.due_at == datetime(2026, 1, 4, 22, 0, tzinfo=UTC)
    late_riser = digest_period(monday_7, "Europe/Berlin", "daily", quiet_start=22, quiet_end=10)
    assert late_riser.due_at == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00: after the quiet hours


async def test_daily_digest_lists_the_notices_by_topic_once_in_the_morning(rig: Rig) -> None:
    rig.clock.set(MONDAY_10_UTC)
    rebates = await _nice(rig, "incentives", "Q1 rebates", link="https://partners.example/rebates?q=1&x=<2>")
    lx300 = await _nice(rig, "product-updates", "LX-300 released")
    news = await _nice(rig, "announcements", "New office in Lyon")
    spiff = await _nice(rig, "incentives", "Spring SPIFF")
    assert await rig.herald.outbox.drain() == 0  # nice-to-know is never sent on its own
    assert (await rig.herald.tick())["digests"] == 0  # written after this morning's digest moment
    assert await _tick_at(rig, TUESDAY_8_UTC - timedelta(minutes=1)) == 0

    assert await _tick_at(rig, TUESDAY_8_UTC) == 1
    (digest,) = _digests(rig)
    assert digest.channel == "DUANNA"
    assert digest.args["blocks"][0]["text"]["text"] == "Your Herald digest"
    assert _text(digest).splitlines() == [
        "4 nice-to-know notices since your last digest:",
        "Announcements:",
        f"• New office in Lyon (notice #{news})",
        "Incentives:",
        f"• Q1 rebates (notice #{rebates})",
        "  https://partners.example/rebates?q=1&amp;x=&lt;2&gt;",  # plain text, escaped by the renderer
        f"• Spring SPIFF (notice #{spiff})",
        "Product updates:",
        f"• LX-300 released (notice #{lx300})",
        "You can choose your topics and how often this digest comes in your Herald preferences.",
    ]

    rows = await Delivery.filter(member__email="anna@acme.example").order_by("notice_id")
    assert {r.status for r in rows} == {"delivered"}
    assert all(r.delivered_at == TUESDAY_8_UTC and r.channel_id == "DUANNA" and r.message_id == digest.args.get(
        "ts", r.message_id) and r.message_id for r in rows)
    (run,) = await DigestRun.all()
    assert (run.period, run.status, run.platform, run.notice_ids) == ("2026-01-06", "sent", "slack",
                                                                      sorted([rebates, lx300, news, spiff]))
    assert (run.channel_id, run.message_id, run.sent_at) == ("DUANNA", rows[0].message_id, TUESDAY_8_UTC)
    (event,) = await AuditEvent.filter(kind="digest.sent")
    assert event.data["notices"] == run.notice_ids and event.data["period"] == "2026-01-06"

    assert await _tick_at(rig, TUESDAY_8_UTC + timedelta(hours=1)) == 0  # once per period
    assert await _tick_at(rig, TUESDAY_8_UTC + timedelta(days=1)) == 0  # nothing new: nothing sent
    assert len(_digests(rig)) == 1
    assert await DigestRun.all().count() == 1


async def test_weekly_digest_goes_out_on_monday_only(rig: Rig) -> None:
    anna = await Member.get(email="anna@acme.example")
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), digest_frequency="weekly")
    rig.clock.set(TUESDAY_8_UTC + timedelta(hours=2))
    notice_id = await _nice(rig, "incentives", "Q1 rebates")
    for day in range(1, 6):  # Wednesday to Sunday mornings
        assert await _tick_at(rig, TUESDAY_8_UTC + timedelta(days=day)) == 0
    monday = datetime(2026, 1, 12, 8, 0, tzinfo=UTC)
    assert await _tick_at(rig, monday - timedelta(minutes=1)) == 0
    assert await _tick_at(rig, monday) == 1
    assert f"Q1 rebates (notice #{notice_id})" in _text(_digests(rig, "DUANNA")[0])
    assert (await DigestRun.get(member_id=anna.id)).period == "2026-W03"

    rig.clock.set(monday + timedelta(hours=2))
    await _nice(rig, "incentives", "Q2 rebates")
    for day in range(1, 7):
        assert await _tick_at(rig, monday + timedelta(days=day)) == 0
    assert await _tick_at(rig, monday + timedelta(days=7)) == 1
    assert "Q2 rebates" in _text(_digests(rig, "DUANNA")[-1])


async def test_several_replicas_send_one_digest_per_member_in_each_time_zone(rig: Rig) -> None:
    rig.clock.set(datetime(2026, 1, 4, 12, 0, tzinfo=UTC))  # Sunday
    await _nice(rig, "announcements", "Holiday hours", audience="all")
    rig.clock.set(datetime(2026, 1, 5, 15, 0, tzinfo=UTC))  # 16:00 Berlin, 09:00 Chicago, Tue 02:00 Sydney
    replicas = [rig.herald, rig.another_worker(), rig.another_worker()]
    try:
        results = await asyncio.gather(*(r.tick() for r in replicas), *(r.tick() for r in replicas))
        await asyncio.gather(*(r.outbox.drain() for r in replicas))
    finally:
        for replica in replicas[1:]:
            await replica.close()
    assert sum(r["digests"] for r in results) == 3
    assert sorted(c.channel for c in _digests(rig)) == ["DUANNA", "DUBO", "DUCY"]
    assert (await rig.herald.tick())["digests"] == 0

    assert await _tick_at(rig, datetime(2026, 1, 5, 22, 0, tzinfo=UTC)) == 1  # Tuesday 09:00 in Sydney
    assert _digests(rig)[-1].channel == "DUDI"
    assert await DigestRun.filter(status="sent").count() == 4 and await AuditEvent.filter(kind="digest.sent").count() == 4
    # Ed has no chat account: his row failed when the notice was sent and is in no digest
    assert await Delivery.filter(member__email="ed@keys.example", status="failed").count() == 1


async def test_a_failed_digest_is_recorded_and_its_notices_roll_into_the_next(rig: Rig) -> None:
    rig.clock.set(MONDAY_10_UTC)
    first = await _nice(rig, "incentives", "Q1 rebates")
    rig.fake.fail_next("chat.postMessage", error="is_archived")
    assert await _tick_at(rig, TUESDAY_8_UTC) == 0
    run = await DigestRun.get(period="2026-01-06")
    assert run.status == "failed" and run.error
    (failure,) = await AuditEvent.filter(kind="digest.failed")
    assert failure.data["reason"] == run.error and failure.data["notices"] == [first]
    assert (await Delivery.get(notice_id=first)).status == "digest"
    assert await _tick_at(rig, TUESDAY_8_UTC + timedelta(hours=1)) == 0  # the period is closed

    rig.clock.set(TUESDAY_8_UTC + timedelta(hours=2))
    second = await _nice(rig, "incentives", "Q2 rebates")
    assert await _tick_at(rig, TUESDAY_8_UTC + timedelta(days=1)) == 1
    text = _text(_digests(rig, "DUANNA")[-1])
    assert f"#{first}" in text and f"#{second}" in text
    assert {d.status for d in await Delivery.filter(notice_id__in=[first, second])} == {"delivered"}


async def test_a_rate_limited_digest_is_tried_again(rig: Rig) -> None:
    rig.clock.set(MONDAY_10_UTC)
    await _nice(rig, "incentives", "Q1 rebates")
    rig.fake.fail_next("chat.postMessage", retry_after=1)
    rig.clock.set(TUESDAY_8_UTC)
    counts = await run_digests(rig.herald.channels, rig.herald.catalog, rig.clock.now())
    assert counts["queued"] == 1
    await rig.herald.outbox.drain()  # answered 429: the outbox keeps it for a retry
    assert _digests(rig) == []
    (run,) = await DigestRun.all()
    (message,) = await OutboundMessage.filter(purpose="digest", reference=run.id)
    assert (run.status, message.status) == ("pending", "pending") and "rate limit" in message.error
    assert await _tick_at(rig, TUESDAY_8_UTC + timedelta(minutes=1)) == 1
    assert len(_digests(rig)) == 1 and (await DigestRun.get(id=run.id)).status == "sent"


async def test_retracted_notices_are_left_out(rig: Rig) -> None:
    rig.clock.set(MONDAY_10_UTC)
    kept = await _nice(rig, "incentives", "Q1 rebates")
    withdrawn = await _nice(rig, "incentives", "Wrong rebates")
    await retract_notice(withdrawn, None, reason="wrong numbers", now=rig.clock.now(), operator="test")
    assert await _tick_at(rig, TUESDAY_8_UTC) == 1
    text = _text(_digests(rig)[0])
    assert "Q1 rebates" in text and "Wrong rebates" not in text
    assert (await DigestRun.get()).notice_ids == [kept]
    assert (await Delivery.get(notice_id=withdrawn)).status == "cancelled"


async def test_notices_of_a_topic_the_member_left_after_they_were_kept_are_left_out(rig: Rig) -> None:
    rig.clock.set(MONDAY_10_UTC)
    kept = await _nice(rig, "announcements", "Partner summit dates")
    left = await _nice(rig, "incentives", "Q1 rebates")
    anna = await Member.get(email="anna@acme.example")
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), subscriptions={"incentives": False})
    assert await _tick_at(rig, TUESDAY_8_UTC) == 1
    text = _text(_digests(rig)[0])
    assert "Partner summit dates" in text and "Q1 rebates" not in text
    assert (await DigestRun.get()).notice_ids == [kept]
    unwanted = await Delivery.get(notice_id=left)
    assert unwanted.status == "cancelled" and "left the topic" in unwanted.error


async def test_only_retracted_notices_means_no_digest(rig: Rig) -> None:
    rig.clock.set(MONDAY_10_UTC)
    withdrawn = await _nice(rig, "incentives", "Wrong rebates")
    await retract_notice(withdrawn, None, reason="wrong numbers", now=rig.clock.now(), operator="test")
    assert await _tick_at(rig, TUESDAY_8_UTC) == 0
    assert _digests(rig) == []
    assert (await DigestRun.get()).status == "empty"


async def test_a_notice_retracted_while_its_digest_waits_in_the_outbox_is_not_listed_in_it(
        slack_http: SlackHarness) -> None:
    """A CAM sends a nice-to-know notice on Sunday evening; at 09:00 in Berlin on Monday the tick
    queues Anna's digest in the outbox, which sends digests in the workspace's lane after every
    notice copy (README), so behind a broadcast it can wait there a long while. Meanwhile the CAM
    retracts the notice (`retract`: "pending sends ... stop"). The digest must not go out listing
    the retracted notice (README: a digest's retracted notices are left out): with nothing else to
    list, nothing is sent."""
    slack = slack_http
    slack.clock.set(datetime(2026, 1, 4, 19, 0, tzinfo=UTC))  # Sunday evening
    response, _, key = await slack.command(
        "send nice-to-know product-updates member:anna@acme.example | LX-300 datasheet v2 | Updated specs")
    assert response.status == 200
    (preview,) = await slack.responses(key)
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["action_id"] == SEND_ACTION))
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)

    slack.clock.set(MONDAY_9_UTC - timedelta(hours=1))  # Monday 09:00 in Berlin: Anna's digest moment
    assert (await slack.herald.tick())["digests"] == 1  # queued; the outbox sends it when it gets to it
    slack.clock.advance(minutes=2)
    assert "Retracted" in await slack.reply(f"retract {notice_id} wrong specs, do not use")
    await slack.herald.outbox.drain()

    digests = [c for c in slack.fake.calls_to("chat.postMessage") if c.ok and c.channel == "DUANNA"
               and "Your Herald digest" in str(c.args.get("text"))]
    listed = [c for c in digests if "LX-300 datasheet v2" in str(c.args.get("blocks"))]
    assert not listed, (
        f"Anna's digest, sent at {slack.clock.now():%H:%M} UTC, lists notice #{notice_id} retracted at 08:02 UTC: "
        f"{[b['text']['text'] for b in listed[0].args['blocks'] if b['type'] == 'section']}")
    assert digests == []  # nothing else was waiting: no digest at all
    (run,) = await DigestRun.all()
    (message,) = await OutboundMessage.filter(purpose="digest", reference=run.id)
    assert (run.status, message.status) == ("empty", "cancelled")
    copy = await Delivery.get(notice_id=notice_id)
    assert copy.status == "cancelled" and "retracted" in copy.error
    assert await AuditEvent.filter(kind__in=["digest.sent", "digest.failed"]).count() == 0


async def test_a_digest_waiting_in_the_outbox_leaves_out_the_notices_of_a_topic_the_member_left(rig: Rig) -> None:
    """README: "Leaving a topic also takes its notices out of a digest not yet sent": also out of
    one already queued in the outbox and waiting for its turn. The digest goes with the notices
    still wanted, and its run and `digest.sent` event list those only."""
    rig.clock.set(MONDAY_10_UTC)
    kept = await _nice(rig, "announcements", "Partner summit dates")
    left = await _nice(rig, "incentives", "Q1 rebates")
    withdrawn = await _nice(rig, "product-updates", "LX-300 datasheet v2")
    rig.clock.set(TUESDAY_8_UTC)
    assert (await run_digests(rig.herald.channels, rig.herald.catalog, rig.clock.now()))["queued"] == 1
    anna = await Member.get(email="anna@acme.example")
    rig.clock.advance(minutes=1)
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), subscriptions={"incentives": False})
    await retract_notice(withdrawn, None, reason="wrong specs", now=rig.clock.now(), operator="test")
    await rig.herald.outbox.drain()

    (digest,) = _digests(rig, "DUANNA")
    assert _text(digest).splitlines()[:3] == [
        "1 nice-to-know notice since your last digest:", "Announcements:", f"• Partner summit dates (notice #{kept})"]
    assert "Q1 rebates" not in _text(digest) and "LX-300" not in _text(digest)
    run = await DigestRun.get()
    assert (run.status, run.notice_ids) == ("sent", [kept])
    (event,) = await AuditEvent.filter(kind="digest.sent")
    assert event.data["notices"] == [kept]
    assert (await Delivery.get(notice_id=kept)).status == "delivered"
    unwanted = await Delivery.get(notice_id=left)
    assert unwanted.status == "cancelled" and "left the topic" in unwanted.error
    assert (await Delivery.get(notice_id=withdrawn)).status == "cancelled"


async def test_digest_waits_for_the_end_of_the_members_quiet_hours(rig: Rig) -> None:
    anna = await Member.get(email="anna@acme.example")
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), quiet_start=22, quiet_end=10)
    rig.clock.set(MONDAY_10_UTC)
    await _nice(rig, "incentives", "Q1 rebates")
    assert await _tick_at(rig, TUESDAY_8_UTC) == 0  # 09:00 Berlin is still quiet for Anna
    assert await _tick_at(rig, datetime(2026, 1, 6, 9, 0, tzinfo=UTC)) == 1  # 10:00 Berlin


async def test_a_digest_the_outbox_gets_to_at_night_waits_for_the_end_of_the_quiet_hours(rig: Rig) -> None:
    """Anna's digest is queued at 09:00 in Berlin but the outbox only gets to it at 22:30 (a
    backlog, an outage, a rate-limit pause): it puts it back until her quiet hours end (08:00),
    as it does a need-to-know copy, instead of sending it at night."""
    rig.clock.set(MONDAY_10_UTC)
    await _nice(rig, "incentives", "Q1 rebates")
    counts = await run_digests(rig.herald.channels, rig.herald.catalog, TUESDAY_8_UTC)
    assert counts["queued"] == 1

    rig.clock.set(datetime(2026, 1, 6, 21, 30, tzinfo=UTC))  # Tuesday 22:30 in Berlin
    await rig.herald.outbox.drain()
    assert _digests(rig) == []
    morning = datetime(2026, 1, 7, 7, 0, tzinfo=UTC)  # Wednesday 08:00 in Berlin
    (message,) = await OutboundMessage.filter(purpose="digest")
    assert (message.status, message.next_attempt_at, message.attempts) == ("pending", morning, 0)
    (held,) = await AuditEvent.filter(kind="message.held")
    assert (held.data["purpose"], datetime.fromisoformat(held.data["until"]), held.data["reason"]) == (
        "digest", morning, "quiet hours")

    rig.clock.set(morning)
    await rig.herald.outbox.drain()
    assert len(_digests(rig, "DUANNA")) == 1 and (await DigestRun.get()).status == "sent"


async def test_editing_a_notice_after_its_digest_leaves_the_digest_alone(rig: Rig) -> None:
    rig.clock.set(MONDAY_10_UTC)
    notice_id = await _nice(rig, "incentives", "Q1 rebates")
    assert await _tick_at(rig, TUESDAY_8_UTC) == 1
    await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), title="Q1 rebates (final)",
                      operator="test")
    await rig.herald.outbox.drain()
    assert rig.fake.calls_to("chat.update") == []


# ---- at scale: as many digests a tick as its time budget allows ---------------------------------

async def _digest_rows_for(n: int) -> list[int]:
    """`n` new members with a Slack account, each with one nice-to-know notice kept for their digest
    since Monday 10:00 UTC. Returns their ids."""
    ids = await bulk_members(n, joined_at=MONDAY_10_UTC - timedelta(days=400))
    notice = await Notice.create(topic="announcements", importance="nice-to-know", title="At scale", body="b",
                                 audience="all", status="sent", recipient_count=n, created_at=MONDAY_10_UTC,
                                 sent_at=MONDAY_10_UTC)
    accounts = dict(await PlatformAccount.filter(member_id__in=ids).values_list("member_id", "id"))
    await Delivery.bulk_create([
        Delivery(notice_id=notice.id, member_id=m, platform="slack", status="digest", next_attempt_at=MONDAY_10_UTC,
                 created_at=MONDAY_10_UTC, workspace_external_id=TEAM, account_id=accounts[m]) for m in ids],
        batch_size=500)
    return ids


async def test_one_tick_queues_every_digest_that_is_due(rig: Rig) -> None:
    """A nice-to-know notice to N members puts one digest row per member; at their digest moment
    (09:00 Berlin) every one of them is due. `run_digests` queued at most 200 a tick (60 s), so
    100,000 members' morning digests took 500 ticks, the last going out after 17:20
    (bench/periodic_scale.py). It now takes page after page while the tick's time budget lasts.
    README: nice-to-know notices "arrive as one digest per period, in the member's morning"."""
    n = 500
    await _digest_rows_for(n)

    counts = await run_digests(rig.herald.channels, rig.herald.catalog, TUESDAY_8_UTC)

    queued = await OutboundMessage.filter(purpose="digest").count()
    assert counts["queued"] == n and queued == n, (
        f"one tick at the digest moment queued {queued} of {n} due digests; the rest wait a minute per 200")


async def test_a_tick_whose_time_budget_is_used_queues_one_batch_and_the_next_tick_the_rest(
        rig: Rig, monkeypatch) -> None:  # noqa: ANN001
    """The budget bounds a tick (the next one starts on time; several replicas share the work):
    with it used up, a run still queues BATCH digests; the next run, with time to spare, reads the
    members a page at a time (keyset on member id) and queues all the others, once each."""
    monkeypatch.setattr(digests, "BATCH", 3)
    monkeypatch.setattr(digests, "PAGE", 4)
    ids = await _digest_rows_for(10)
    used_up = TimeBudget(0, monotonic=lambda: 0.0)

    first = await run_digests(rig.herald.channels, rig.herald.catalog, TUESDAY_8_UTC, budget=used_up)
    second = await run_digests(rig.herald.channels, rig.herald.catalog, TUESDAY_8_UTC + timedelta(minutes=1),
                               budget=TimeBudget(60, monotonic=lambda: 0.0))

    assert (first["queued"], second["queued"]) == (3, 7)
    runs = await DigestRun.filter(member_id__in=ids).values_list("member_id", flat=True)
    assert sorted(runs) == ids  # one each, nobody twice


async def test_the_ticks_sweep_for_interrupted_digest_runs_reads_an_index_not_every_run_ever(db: str) -> None:
    """Every tick, on every replica, `run_digests` first calls `_close_interrupted`:
    `DigestRun.filter(status="pending", created_at__lt=...).order_by("id").limit(50)`. digest_run
    gets one row per member per digest period with anything in it and nothing deletes them (a
    year of daily digests: members x ~250 rows). With no index on status, the sweep read the whole
    table every minute, though normally no run is pending; it now reads the index on
    (status, created_at)."""
    now = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
    indexed, seen = await uses_an_index_on(digests.stale_runs(now), "status")
    assert indexed, ("the tick's interrupted-digest sweep reads every digest_run row ever written "
                     f"(no index on status): {seen}")
