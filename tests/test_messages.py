"""One engine for everything Herald sends (issue 12, item 4): journey steps, nudges, digests,
escalations, hand-offs and relayed answers go through the outbox's lanes, under the platforms'
limits, after the notices, at most once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bot.common.errors import UserError
from bot.core.delivery.messages import INTERRUPTED, MEMBER_INACTIVE, MessageSource
from bot.core.directory.importer import import_directory
from bot.core.onboarding.assistant import open_handoffs
from bot.core.onboarding.journeys import parse_journeys, run_journeys
from bot.service import Herald
from storage.models import (
    AuditEvent,
    Delivery,
    Escalation,
    JourneyStep,
    Member,
    OutboundMessage,
    PlatformAccount,
    Question,
    Staff,
)
from tests.fakes.rate_limits import Rate
from tests.fakes.slack_limits import SlackLimits
from tests.support import SAMPLE_DIRECTORY, TEAM, Rig, block_texts, directory_csv, seed_directory

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
STEPS = parse_journeys({"journeys": {"default": {"steps": [
    {"key": "portal", "after_days": 0, "title": "Open the portal", "message": "Sign in once."},
    {"key": "prefs", "after_days": 1, "title": "Set preferences", "message": "Pick your topics."}]}}}, source="test")


def _limit_slack(rig: Rig, per_minute: int) -> None:
    """Slack's documented limits, with a workspace-wide chat.postMessage budget of `per_minute`,
    on the rig's clock (so Retry-After passes when the test moves the clock)."""
    rig.fake.clock = lambda: rig.clock.now().timestamp()
    rig.fake.set_limits(SlackLimits(post_per_workspace=Rate(per_minute, 60.0)))


async def _import_members(rig: Rig, count: int) -> list[str]:
    """A partner's directory import: `count` new members in the rig's Slack workspace."""
    users = [f"UNEW{i:03d}" for i in range(count)]
    rows = [f"newco,New Co,silver,emea,de,retail,large,reseller,cam@vendor.example,m{i}@newco.example,Member {i},"
            f"sales,Europe/Berlin,de,{TEAM},{user},," for i, user in enumerate(users)]
    for user in users:
        rig.fake.add_user(TEAM, user)
    await seed_directory(rig.clock, csv_text=directory_csv(rows))
    await Member.filter(email__endswith="@newco.example").update(joined_at=rig.clock.now())
    await Member.exclude(email__endswith="@newco.example").update(joined_at=datetime(2030, 1, 1, tzinfo=UTC))
    return users


def _ok_posts(rig: Rig) -> list:
    return [c for c in rig.fake.calls_to("chat.postMessage") if c.ok]


def _throttled(rig: Rig) -> int:
    return sum(1 for c in rig.fake.calls_to("chat.postMessage") if c.status == 429)


async def test_journey_steps_after_a_directory_import_keep_to_slacks_limits(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    users = await _import_members(rig, 24)
    _limit_slack(rig, per_minute=10)
    counts = await run_journeys(rig.herald.channels, rig.clock.now(), catalog=STEPS)
    assert counts["steps"] == 24 and _ok_posts(rig) == []  # queued, not sent from the tick
    await rig.herald.outbox.drain()
    assert len(_ok_posts(rig)) == 10 and _throttled(rig) >= 1  # the budget, then a 429 paused the lane
    assert await JourneyStep.filter(status="sent").count() == 10
    # the scheduler sleeps until the lane's next due message
    source = MessageSource(rig.herald.channels, rig.herald.catalog)
    due = await source.next_due([("slack", TEAM)], rig.clock.now())
    assert due is not None and rig.clock.now() < due <= rig.clock.now() + timedelta(minutes=1)
    assert await source.next_due([("teams", "elsewhere")], rig.clock.now()) is None
    rounds = 0
    while await JourneyStep.filter(status="sending").exists():
        rounds += 1
        assert rounds <= 5, "the steps should be through in three more minutes"
        rig.clock.advance(minutes=1)  # Retry-After has passed: the budget is back
        await rig.herald.outbox.drain()
    per_member = Counter(c.channel for c in _ok_posts(rig))
    assert per_member == Counter({f"D{u}": 1 for u in users})  # nothing lost, nothing twice
    assert await JourneyStep.filter(status="sent").count() == 24
    assert await AuditEvent.filter(kind="journey.step_sent").count() == 24
    assert await OutboundMessage.filter(status="delivered").count() == 24
    assert await OutboundMessage.exclude(status="delivered").count() == 0


async def test_a_must_know_broadcast_goes_before_journey_steps_when_the_budget_is_short(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _import_members(rig, 6)
    herald = Herald(rig.herald.settings.model_copy(update={"delivery_lane_inflight": 1}), clock=rig.clock,
                    catalog=rig.herald.catalog)  # one request at a time: the order is the lane's order
    try:
        await run_journeys(herald.channels, rig.clock.now(), catalog=STEPS)  # the steps are queued first
        notice_id = await rig.broadcast("all")  # 10 members with Slack accounts
        _limit_slack(rig, per_minute=10)
        await herald.outbox.drain()
        posts = _ok_posts(rig)
        assert len(posts) == 10 and all(p.args["text"].startswith("Recall") or "Recall" in str(p.args["blocks"])
                                        for p in posts)
        assert await Delivery.filter(notice_id=notice_id, status="delivered").count() == 10
        assert await JourneyStep.filter(status="sent").count() == 0  # waiting for the budget
        for _ in range(3):
            rig.clock.advance(minutes=1)
            await herald.outbox.drain()
        steps = [p for p in _ok_posts(rig) if "Onboarding" in str(p.args["blocks"])]
        assert len(steps) == 6 and len({p.channel for p in steps}) == 6
        assert await JourneyStep.filter(status="sent").count() == 6
    finally:
        await herald.close()


async def test_a_crash_mid_send_sends_each_message_at_most_once(rig: Rig) -> None:
    """A replica claims three messages (its lane's window), starts the first one's request and is
    killed before recording anything: the first may have arrived and is never sent again (at most
    once); the two still waiting for the lane's pace never left and go out normally. (Every claimed
    row used to be settled as interrupted, so those members never got their message.)"""
    rig.clock.set(MONDAY_9_UTC)
    await _import_members(rig, 3)
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=STEPS)
    dead = MessageSource(rig.herald.channels, rig.herald.catalog)
    now = rig.clock.now()
    claimed = await dead.claim(("slack", TEAM), 10, "deadbeef:1", now, now + timedelta(seconds=10))
    assert len(claimed) == 3
    await dead.send(claimed[0], rig.herald.channels["slack"])
    assert len(_ok_posts(rig)) == 1
    await rig.herald.outbox.drain()  # their claim has not run out: nobody touches them
    assert len(_ok_posts(rig)) == 1 and await OutboundMessage.filter(status="sending").count() == 3
    rig.clock.advance(seconds=11)
    await rig.herald.outbox.drain()
    posts = _ok_posts(rig)
    assert len(posts) == 3 and len({p.channel for p in posts}) == 3  # the first is not sent again
    rows = {r.id: r for r in await OutboundMessage.all()}
    assert (rows[claimed[0].id].status, rows[claimed[0].id].error) == ("failed", INTERRUPTED)
    assert all(rows[c.id].status == "delivered" for c in claimed[1:])
    steps = await JourneyStep.all()
    assert all(s.status == "sent" for s in steps)
    assert sum("may not have arrived" in s.error for s in steps) == 1  # its nudge follows up
    assert await AuditEvent.filter(kind="journey.send_interrupted").count() == 1
    rig.clock.advance(minutes=10)
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=STEPS)
    await rig.herald.outbox.drain()
    assert len(_ok_posts(rig)) == 3


async def test_hand_off_and_relay_go_once_and_a_failed_relay_is_reported_to_the_cam(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    anna = await Member.get(email="anna@acme.example")
    cam = await Staff.get(email="cam@vendor.example")
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=rig.clock.now(), abstained=True, channel_id="DUANNA")
    told = [await rig.herald.hand_off_question(question.id, anna) for _ in range(2)]  # a double click
    assert "weitergeleitet" in told[0] and "bereits bei" in told[1]  # passed / already with, in Anna's German
    assert await rig.herald.outbox.drain() == 1
    (handoff,) = [c for c in _ok_posts(rig) if c.channel == "DUCAM1"]
    assert "Where is the price list?" in str(handoff.args["blocks"])

    for _ in range(2):  # a replayed submission relays once
        await rig.herald.relay_reply(question.id, cam, "Page 4 of the portal.")
    assert await rig.herald.outbox.drain() == 1
    (relay,) = [c for c in _ok_posts(rig) if c.channel == "DUANNA"]
    assert "Page 4 of the portal." in str(relay.args["blocks"])
    assert (await Question.get(id=question.id)).handoff_status == "answered"

    rig.fake.fail_next("chat.postMessage", error="user_disabled")  # Anna's account was deactivated
    await rig.herald.relay_reply(question.id, cam, "Also: page 5.")
    await rig.herald.outbox.drain()
    assert [c for c in _ok_posts(rig) if c.channel == "DUANNA"] == [relay]
    (note,) = [c for c in _ok_posts(rig) if c.channel == "DUCAM1" and c is not handoff]
    assert "Your answer was not delivered" in str(note.args["blocks"]) and "Anna Berg" in str(note.args["blocks"])
    assert (await Question.get(id=question.id)).handoff_status == "open"  # back in the CAM's list
    (event,) = await AuditEvent.filter(kind="question.reply_not_delivered")
    assert event.data["question_id"] == question.id and event.data["reason"]
    assert await AuditEvent.filter(kind="question.answered").count() == 2  # the replay recorded nothing


async def test_ask_my_cam_pressed_again_after_the_answer_came_says_it_was_answered(rig: Rig) -> None:
    """Bo asked, pressed Ask my CAM, and an admin answered for his CAM. Not satisfied, he pressed
    Ask my CAM again under the assistant's answer: Herald told him the question was "already with
    Casey CAM; their answer will appear here", so he waited for an answer that had come and would
    not come again, and nobody heard of his follow-up. He is told who answered it, that the answer
    is in the conversation, and how to ask more."""
    from bot.core.directory.staff import add_staff

    rig.clock.set(MONDAY_9_UTC)
    bo = await Member.get(email="bo@acme.example")
    question = await Question.create(member=bo, platform="slack", text="Where is the price list?",
                                     asked_at=rig.clock.now(), abstained=True, channel_id="DUBO")
    assert "passed your question to Casey CAM" in await rig.herald.hand_off_question(question.id, bo)
    assert "already with Casey CAM" in await rig.herald.hand_off_question(question.id, bo)  # not answered yet
    admin, _ = await add_staff("ada@vendor.example", "admin", name="Ada Admin", now=rig.clock.now())
    await rig.herald.relay_reply(question.id, admin, "Page 4 of the portal.")
    await rig.herald.outbox.drain()
    assert "Page 4 of the portal." in str([c.args["blocks"] for c in _ok_posts(rig) if c.channel == "DUBO"])

    told = await rig.herald.hand_off_question(question.id, bo)
    assert told == ("Ada Admin has answered this question already: their answer is in this conversation. If you "
                    "need more, write your question again and press Ask my CAM under my answer."), told
    assert await rig.herald.outbox.drain() == 0  # nothing more to the CAM
    assert await AuditEvent.filter(kind="question.handed_off").count() == 1


def _posts_to(rig: Rig, channel: str) -> list[str]:
    return [block_texts(c.args["blocks"]) for c in _ok_posts(rig) if c.channel == channel]


async def _anna_hands_off(rig: Rig, text: str = "Where is the price list?") -> Question:
    anna = await Member.get(email="anna@acme.example")
    question = await Question.create(member=anna, platform="slack", text=text, asked_at=rig.clock.now(),
                                     abstained=True, channel_id="DUANNA")
    await rig.herald.hand_off_question(question.id, anna)
    await rig.herald.outbox.drain()
    return question


async def test_an_unanswered_hand_off_reminds_the_cam_once_and_tells_the_partner(rig: Rig) -> None:
    """Anna pressed Ask my CAM on Monday and nobody answered: nothing ever raised it again. A day
    after the CAM got it (HERALD_HANDOFF_REMIND_HOURS), the tick reminds the CAM, with the wait,
    the question and Reply, and tells Anna (in German) that it is still with Casey CAM, once: later
    ticks, another replica and a restart queue nothing more."""
    rig.clock.set(MONDAY_9_UTC)
    question = await _anna_hands_off(rig)
    assert len(_posts_to(rig, "DUCAM1")) == 1  # the hand-off
    rig.clock.advance(hours=23)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert len(_posts_to(rig, "DUCAM1")) == 1  # not a day yet

    rig.clock.advance(hours=2)  # Tuesday 11:00 in Berlin
    off = Herald(rig.herald.settings.model_copy(update={"handoff_remind_hours": 0}), clock=rig.clock,
                 catalog=rig.herald.catalog)
    assert (await off.tick())["handoffs_reminded"] == 0  # 0: never
    await off.close()
    assert (await rig.herald.tick())["handoffs_reminded"] == 1
    await rig.herald.outbox.drain()
    await rig.herald.outbox.drain()  # the note to Anna, queued when the reminder went
    _, reminder = _posts_to(rig, "DUCAM1")
    assert "still waiting for your answer" in reminder and "Anna Berg has waited 25 hours" in reminder, reminder
    assert "Where is the price list?" in reminder and "Acme Locks" in reminder
    (call,) = [c for c in _ok_posts(rig) if c.channel == "DUCAM1"][1:]
    assert ("herald_qa_reply", str(question.id)) in [(e["action_id"], e["value"]) for b in call.args["blocks"]
                                                     if b["type"] == "actions" for e in b["elements"]]
    (note,) = [t for t in _posts_to(rig, "DUANNA") if "noch bei" in t]  # not her journey's steps
    assert "Ihre Frage liegt noch bei Casey CAM" in note and "Where is the price list?" in note, note

    for worker in (rig.herald, rig.another_worker(), rig.another_worker()):  # ticks, a replica, a restart
        rig.clock.advance(days=2)
        await worker.tick()
        await worker.outbox.drain()
    assert len(_posts_to(rig, "DUCAM1")) == 2 and len([t for t in _posts_to(rig, "DUANNA") if "noch bei" in t]) == 1
    (reminded,) = await AuditEvent.filter(kind="question.handoff_reminded")
    assert reminded.data["question_id"] == question.id and reminded.data["cam"] == "cam@vendor.example"
    assert await AuditEvent.filter(kind="question.handoff_waiting_told").count() == 1


async def test_an_answered_hand_off_is_never_reminded(rig: Rig) -> None:
    """A hand-off answered before its day is up is not reminded; one answered after the tick queued
    its reminder, before the outbox sent it, is not either (cancelled, saying why), nor is the
    partner told it is still waiting."""
    rig.clock.set(MONDAY_9_UTC)
    cam = await Staff.get(email="cam@vendor.example")
    answered = await _anna_hands_off(rig)
    late = await _anna_hands_off(rig, "Who signs the NDA?")
    await rig.herald.relay_reply(answered.id, cam, "Page 4 of the portal.")
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=25)
    assert (await rig.herald.tick())["handoffs_reminded"] == 1  # the other one
    await rig.herald.relay_reply(late.id, cam, "Legal does.")
    await rig.herald.outbox.drain()
    await rig.herald.outbox.drain()
    assert [t for t in _posts_to(rig, "DUCAM1") if "still waiting" in t] == []
    assert [t for t in _posts_to(rig, "DUANNA") if "noch bei" in t] == []
    (row,) = await OutboundMessage.filter(purpose="handoff_reminder")
    assert (row.status, row.error) == ("cancelled", "the question was answered before the reminder went")
    assert await AuditEvent.filter(kind="question.handoff_reminded").count() == 0


async def test_a_hand_off_left_on_friday_is_reminded_in_the_partners_working_hours(rig: Rig) -> None:
    """A day after a Friday afternoon hand-off is Saturday: the reminder waits for Monday morning
    in the partner's time zone (Anna: Berlin), not the CAM's weekend."""
    rig.clock.set(datetime(2026, 1, 9, 14, 0, tzinfo=UTC))  # Friday 15:00 in Berlin
    await _anna_hands_off(rig)
    rig.clock.advance(hours=25)
    for _ in range(4):  # Saturday and Sunday
        assert (await rig.herald.tick())["handoffs_reminded"] == 0
        rig.clock.advance(hours=12)
    rig.clock.set(datetime(2026, 1, 12, 7, 0, tzinfo=UTC))  # Monday 08:00 in Berlin
    assert (await rig.herald.tick())["handoffs_reminded"] == 1


async def test_a_message_that_is_only_ever_throttled_is_not_given_up(rig: Rig) -> None:
    """A 429 is not an attempt: a hand-off refused with 429 more times than RetryPolicy's
    max_attempts waits each Retry-After out and is then delivered, not failed."""
    rig.clock.set(MONDAY_9_UTC)
    anna = await Member.get(email="anna@acme.example")
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=rig.clock.now(), abstained=True, channel_id="DUANNA")
    await rig.herald.hand_off_question(question.id, anna)
    rig.fake.fail_next("chat.postMessage", status=429, retry_after=30, times=8)
    for _ in range(10):
        await rig.herald.outbox.drain()
        rig.clock.advance(seconds=31)
    (row,) = await OutboundMessage.all()
    assert row.status == "delivered" and row.attempts == 1, (row.status, row.error)
    assert [c.status for c in rig.fake.calls_to("chat.postMessage")] == [429] * 8 + [200]


async def test_a_reply_to_a_member_removed_from_the_directory_is_refused_and_not_listed(rig: Rig) -> None:
    """Anna handed a question off, then left Acme (a re-import without her row): Herald sends her
    nothing more, the CAM's reply included, and her question leaves the CAM's open hand-offs."""
    rig.clock.set(MONDAY_9_UTC)
    anna = await Member.get(email="anna@acme.example")
    cam = await Staff.get(email="cam@vendor.example")
    question = await Question.create(member=anna, platform="slack", text="What is our Q3 discount on LX-200?",
                                     asked_at=rig.clock.now(), abstained=True, channel_id="DUANNA")
    await rig.herald.hand_off_question(question.id, anna)
    await rig.herald.outbox.drain()
    without_anna = "\n".join(line for line in SAMPLE_DIRECTORY.splitlines() if "anna@acme.example" not in line) + "\n"
    result = await import_directory(without_anna, now=rig.clock.now(), actor="test", deactivate_missing=True)
    assert result.deactivated == 1

    assert question.id not in [q.id for q in await open_handoffs(cam)]
    with pytest.raises(UserError, match="removed from the partner directory"):
        await rig.herald.relay_reply(question.id, cam, "Your Q3 discount is 32% on LX-200.")
    await rig.herald.outbox.drain()
    assert [c for c in _ok_posts(rig) if c.channel == "DUANNA"] == []
    assert await AuditEvent.filter(kind="question.answered").count() == 0


async def _leave_out_anna(rig: Rig) -> None:
    """A directory import with `--deactivate-missing` that leaves Anna out."""
    without_anna = "\n".join(line for line in SAMPLE_DIRECTORY.splitlines() if "anna@acme.example" not in line) + "\n"
    result = await import_directory(without_anna, now=rig.clock.now(), actor="test", deactivate_missing=True)
    assert result.deactivated == 1 and not (await Member.get(email="anna@acme.example")).active


async def test_a_journey_step_waiting_in_the_outbox_is_not_sent_to_a_member_removed_meanwhile(rig: Rig) -> None:
    """README ("The partner directory"): a member the import leaves out has "what was still to be
    sent to them … cancelled, and Herald sends them nothing more". Anna's first step is queued,
    Slack throttles the workspace for two minutes, and meanwhile an import leaves Anna out: the
    outbox cancels the message, and the step waits (`journey.step_cancelled`). When a later
    import brings her back, she gets it."""
    rig.clock.set(MONDAY_9_UTC)
    await Member.all().update(joined_at=datetime(2030, 1, 1, tzinfo=UTC))
    await Member.filter(email="anna@acme.example").update(joined_at=MONDAY_9_UTC)
    rig.fake.fail_next("chat.postMessage", status=429, retry_after=120)
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=STEPS)
    await rig.herald.outbox.drain()
    (row,) = await JourneyStep.filter(member__email="anna@acme.example")
    assert row.status == "sending"  # queued, waiting out Slack's pause

    await _leave_out_anna(rig)
    rig.clock.advance(minutes=3)
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=STEPS)
    await rig.herald.outbox.drain()
    assert [c for c in _ok_posts(rig) if c.channel in ("UANNA", "DUANNA")] == []
    (message,) = await OutboundMessage.filter(purpose="journey_step")
    assert message.status == "cancelled" and message.error == MEMBER_INACTIVE
    row = await JourneyStep.get(id=row.id)
    assert (row.status, row.error) == ("pending", MEMBER_INACTIVE)
    assert await AuditEvent.filter(kind="journey.step_cancelled").count() == 1

    await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test")
    assert (await Member.get(email="anna@acme.example")).active
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=STEPS)
    await rig.herald.outbox.drain()
    (step,) = [c for c in _ok_posts(rig) if c.channel == "DUANNA"]
    assert step.args["blocks"][0]["text"]["text"] == "Onboarding 1/2: Open the portal"
    assert (await JourneyStep.get(id=row.id)).status == "sent"


async def test_a_relayed_answer_waiting_in_the_outbox_is_not_sent_to_a_member_removed_meanwhile(rig: Rig) -> None:
    """The same for every message to a member: the CAM's answer to Anna is queued behind Slack's
    pause when an import leaves her out. It is not sent, and the CAM is told why."""
    rig.clock.set(MONDAY_9_UTC)
    anna = await Member.get(email="anna@acme.example")
    cam = await Staff.get(email="cam@vendor.example")
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=rig.clock.now(), abstained=True, channel_id="DUANNA")
    await rig.herald.hand_off_question(question.id, anna)
    await rig.herald.outbox.drain()
    rig.fake.fail_next("chat.postMessage", status=429, retry_after=120)
    await rig.herald.relay_reply(question.id, cam, "Page 4 of the portal.")
    await rig.herald.outbox.drain()

    await _leave_out_anna(rig)
    rig.clock.advance(minutes=3)
    await rig.herald.outbox.drain()
    assert [c for c in _ok_posts(rig) if c.channel == "DUANNA"] == []
    (relay,) = await OutboundMessage.filter(purpose="relay")
    assert relay.status == "cancelled"
    (note,) = [c for c in _ok_posts(rig) if c.channel == "DUCAM1" and "not delivered" in str(c.args["blocks"])]
    assert "removed from the partner directory" in str(note.args["blocks"])


async def test_the_same_reply_again_after_a_failed_relay_reaches_the_partner(rig: Rig) -> None:
    """The relay failed (the CAM is told "please reach them another way or reply again" and the
    question is back in their list). The CAM replies again with the same answer: it goes out,
    instead of being dropped as a replay of the failed message while the question is marked
    answered. A replay of that second submission still goes once."""
    rig.clock.set(MONDAY_9_UTC)
    anna = await Member.get(email="anna@acme.example")
    cam = await Staff.get(email="cam@vendor.example")
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=rig.clock.now(), abstained=True, channel_id="DUANNA")
    await rig.herald.hand_off_question(question.id, anna)
    await rig.herald.outbox.drain()

    rig.fake.fail_next("chat.postMessage", error="is_archived")  # the DM was archived for a moment
    await rig.herald.relay_reply(question.id, cam, "Page 4 of the portal.")
    await rig.herald.outbox.drain()
    assert [c for c in _ok_posts(rig) if c.channel == "DUANNA"] == []
    assert (await Question.get(id=question.id)).handoff_status == "open"
    note = [c for c in _ok_posts(rig) if c.channel == "DUCAM1" and "not delivered" in str(c.args.get("blocks"))]
    assert note and "reply again" in str(note[0].args["blocks"])

    # the CAM does what the note says and replies again (twice: a replay)
    for _ in range(2):
        await rig.herald.relay_reply(question.id, cam, "Page 4 of the portal.")
    await rig.herald.outbox.drain()
    (relayed,) = [c for c in _ok_posts(rig) if c.channel == "DUANNA"]
    assert "Page 4 of the portal." in str(relayed.args["blocks"])
    assert (await Question.get(id=question.id)).handoff_status == "answered"
    assert await OutboundMessage.filter(purpose="relay").count() == 2


async def test_journey_steps_to_teams_keep_to_the_bot_connectors_limits(db: str) -> None:
    from tests.fakes.teams_limits import TeamsLimits
    from tests.teams_support import start_teams_rig, stop_teams_rig

    teams = await start_teams_rig(db)
    try:
        monday_paris = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Paris
        teams.clock.set(monday_paris)
        await Member.all().update(joined_at=monday_paris)
        await Member.filter(email="gus@teamsco.example").update(joined_at=datetime(2030, 1, 1, tzinfo=UTC))
        teams.connector.clock = lambda: teams.clock.now().timestamp()
        teams.connector.set_limits(TeamsLimits(per_tenant=Rate(3, 60.0)))  # a tenant budget of 3 a minute
        counts = await run_journeys(teams.herald.channels, teams.clock.now(), catalog=STEPS)
        assert counts["steps"] == 2
        await teams.herald.outbox.drain()
        throttled = [c for c in teams.connector.calls if c.status == 429]
        assert throttled and await JourneyStep.filter(status="sent").count() < 2  # paused by Retry-After
        for _ in range(5):
            teams.clock.advance(minutes=1)
            await teams.herald.outbox.drain()
        for aad in ("aad-eve", "aad-fay"):
            cards = [a for a in teams.connector.activities(f"a:conv-{aad}") if "Onboarding 1/2" in str(a)]
            assert len(cards) == 1, aad  # once each, nothing lost
        assert await JourneyStep.filter(status="sent").count() == 2
        assert await OutboundMessage.filter(status="delivered", platform="teams").count() == 2
        # the chats the steps opened are stored with the service URL they were opened on, which
        # later updates of notices sent there need (after a restart, on another replica)
        opened = await PlatformAccount.filter(platform="teams", user_id__in=["aad-eve", "aad-fay"]).order_by(
            "user_id").values_list("dm_channel", "service_url")
        assert opened == [("a:conv-aad-eve", teams.connector.url), ("a:conv-aad-fay", teams.connector.url)]
    finally:
        await stop_teams_rig(teams)


async def _escalation_queued_to_casey(rig: Rig) -> int:
    """A must-know notice to Anna whose deadline passes unacknowledged: the tick plans Acme's
    escalation to its CAM, Casey, and queues the DM (not sent yet). The notice's id."""
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast(audience="member:anna@acme.example", deadline=MONDAY_9_UTC + timedelta(hours=4))
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=5)
    counts = await rig.herald.tick()
    assert counts["escalations"] == 1 and counts["escalation_messages"] == 1
    (queued,) = await OutboundMessage.filter(purpose="escalation", status="pending")
    assert queued.recipient["user_id"] == "UCAM1"
    return notice_id


def _escalation_posts(rig: Rig) -> list:
    return [c for c in _ok_posts(rig) if "Escalation" in str(c.args)]


async def test_an_escalation_queued_before_the_partner_got_another_cam_goes_to_the_new_cam(rig: Rig) -> None:
    """Acme's escalation was queued for Casey; before the outbox sends it a directory import makes
    Nora Acme's CAM. The DM goes to Nora, the CAM now, not to Casey, and the trail says so
    (`escalation.readdressed`, then `escalation.delivered` naming Nora)."""
    from bot.core.directory.staff import add_staff

    rig.fake.add_user(TEAM, "UNORA")
    nora, _ = await add_staff("nora@vendor.example", "cam", name="Nora New", slack_user="UNORA", slack_team=TEAM,
                              now=MONDAY_9_UTC, actor="test")
    await _escalation_queued_to_casey(rig)
    acme_to_nora = "\n".join(line.replace("cam@vendor.example", nora.email) if line.startswith("acme,") else line
                             for line in SAMPLE_DIRECTORY.splitlines()) + "\n"
    assert not (await import_directory(acme_to_nora, now=rig.clock.now(), actor="test")).rejected

    await rig.herald.outbox.drain()

    assert [c.channel for c in _escalation_posts(rig)] == ["DUNORA"]
    (row,) = await Escalation.all()
    assert (row.status, row.staff_id) == ("delivered", nora.id)  # type: ignore[attr-defined]
    (moved,) = await AuditEvent.filter(kind="escalation.readdressed")
    assert (moved.data["from_staff"], moved.data["escalated_to"]) == ("cam@vendor.example", nora.email)
    assert (await AuditEvent.get(kind="escalation.delivered")).data["escalated_to"] == nora.email


async def test_an_escalation_queued_before_its_cam_was_removed_is_not_sent_to_them(rig: Rig) -> None:
    """`herald staff remove` takes Casey away after Acme's escalation was queued for her. The
    directory names nobody else and the notice has no author who is a CAM (the operator sent it):
    as when that is so at the deadline, the escalation fails with the reason, and Casey gets nothing."""
    from bot.core.directory.offboarding import remove_staff
    from bot.core.notices.escalations import NOBODY_TO_ESCALATE_TO

    await _escalation_queued_to_casey(rig)
    await remove_staff("cam@vendor.example", now=rig.clock.now(), actor="operator:ops")

    await rig.herald.outbox.drain()

    assert _escalation_posts(rig) == []
    (row,) = await Escalation.all()
    assert (row.status, row.staff_id, row.error) == ("failed", None, NOBODY_TO_ESCALATE_TO)  # type: ignore[attr-defined]
    (message,) = await OutboundMessage.filter(purpose="escalation")
    assert (message.status, message.error) == ("failed", NOBODY_TO_ESCALATE_TO)
    (moved,) = await AuditEvent.filter(kind="escalation.readdressed")
    assert (moved.data["from_staff"], moved.data["escalated_to"]) == ("cam@vendor.example", None)
    assert (await AuditEvent.get(kind="escalation.failed")).data["reason"] == NOBODY_TO_ESCALATE_TO
