"""Reminders, escalation, pauses, scheduled sends, edits and retractions, with an injected clock."""

from __future__ import annotations

import asyncio
import contextvars
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.channels.slack_blocks import status_text
from bot.common import metrics
from bot.common.budget import TimeBudget
from bot.core.commands.parser import SendCommand, parse_command
from bot.core.notices import acks, escalations
from bot.core.notices import sending as notices
from bot.common.clock import ManualClock
from bot.core.notices.escalations import (
    due_escalations,
    escalation_message,
    remind_organisation_now,
    unacknowledged_by_organisation,
)
from bot.core.directory.pauses import pause_organisation, resume_organisation
from bot.core.compliance.verify import verify_chain
from bot.core.notices.reminders import PAUSED, plan_reminders
from bot.core.notices.revisions import edit_notice, retract_notice
from bot.core.directory.staff import add_staff
from bot.core.notices.status import notice_status
from bot.common.errors import PermissionDenied, UserError
from bot.service import Herald
from bot.topics.catalog import TopicCatalog
from storage.models import (
    Acknowledgement,
    AuditEvent,
    Delivery,
    Escalation,
    Member,
    Notice,
    NoticeRevision,
    Organisation,
    OutboundMessage,
    PlatformAccount,
    Staff,
)
from tests.conftest import POSTGRES_ONLY
from tests.query_plans import uses_an_index_on
from tests.support import CAM_USER, TEAM, Rig, SlackHarness, bulk_members

import pytest

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin


async def _ack(rig: Rig, notice_id: int, user: str):  # noqa: ANN202
    result = await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=user, now=rig.clock.now())
    await rig.herald.update_acknowledged_copies(result)
    return result


def _posts_to(rig: Rig, channel: str) -> list:
    return [c for c in rig.fake.calls_to("chat.postMessage") if c.channel == channel and c.ok]


async def _reminders(notice_id: int, email: str) -> list[Delivery]:
    return await Delivery.filter(notice_id=notice_id, member__email=email, kind="reminder").order_by("sequence")


async def test_reminders_follow_the_schedule_and_stop_after_acknowledgement(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("member:anna@acme.example", deadline=MONDAY_9_UTC + timedelta(days=10))
    await rig.herald.outbox.drain()
    (original,) = _posts_to(rig, "DUANNA")

    rig.clock.advance(hours=23, minutes=59)
    assert (await rig.herald.tick())["reminders"] == 0
    rig.clock.advance(minutes=1)  # 24 h after delivery, Tuesday 10:00 in Berlin
    assert (await rig.herald.tick())["reminders"] == 1
    assert (await rig.herald.tick())["reminders"] == 0  # planned once
    await rig.herald.outbox.drain()
    # the shipped onboarding journey's step, queued by the same tick, goes after the notices' rows
    reminder = [c for c in _posts_to(rig, "DUANNA") if not str(c.args["text"]).startswith("Onboarding")][-1]
    assert reminder.args["thread_ts"] == original.args.get("ts", reminder.args["thread_ts"])
    assert reminder.args["reply_broadcast"] is True
    assert "Reminder" in reminder.args["blocks"][0]["text"]["text"]
    assert any(b["type"] == "actions" for b in reminder.args["blocks"])
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.reminded").count() == 1

    rig.clock.advance(hours=48)  # 72 h: the second reminder
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert [r.sequence for r in await _reminders(notice_id, "anna@acme.example")] == [1, 2]

    await _ack(rig, notice_id, "UANNA")  # from a reminder or the original: one acknowledgement
    updates = rig.fake.calls_to("chat.update")
    assert len(updates) == 3 and all("Acknowledged by" in str(u.args["blocks"]) for u in updates)
    rig.clock.advance(days=3)
    assert (await rig.herald.tick())["reminders"] == 0
    original_row = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example", kind="notice")
    assert original_row.next_reminder_at is None and original_row.reminders_sent == 2


async def test_a_reminder_not_sent_yet_is_cancelled_by_the_acknowledgement(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("member:anna@acme.example", deadline=MONDAY_9_UTC + timedelta(days=10))
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=24)
    assert (await rig.herald.tick())["reminders"] == 1  # planned, not sent yet
    (reminder,) = await _reminders(notice_id, "anna@acme.example")
    assert reminder.status == "pending"

    result = await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
    assert result.newly_recorded
    (reminder,) = await _reminders(notice_id, "anna@acme.example")
    assert (reminder.status, reminder.error) == ("cancelled", "acknowledged before it was sent")
    original = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example", kind="notice")
    assert original.status == "delivered" and original.update_pending and original.next_reminder_at is None
    assert await acks.copies_of(result) == [original.id]
    await rig.herald.outbox.drain()  # the reminder never goes out (the journey step the tick queued does)
    assert not [c for c in _posts_to(rig, "DUANNA") if "Reminder" in str(c.args.get("blocks"))]
    assert len(rig.fake.calls_to("chat.update")) == 1


async def test_daily_reminders_until_the_deadline_then_none(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("member:bo@acme.example", deadline=MONDAY_9_UTC + timedelta(days=5, hours=1))
    await rig.herald.outbox.drain()
    for _ in range(8 * 24):
        rig.clock.advance(hours=1)
        await rig.herald.tick()
        await rig.herald.outbox.drain()
    sent = [r.delivered_at for r in await _reminders(notice_id, "bo@acme.example")]
    # 24 h, 72 h, then daily while before the deadline (Saturday 10:00); none at the weekend
    assert [round((t - MONDAY_9_UTC).total_seconds() / 3600) for t in sent] == [24, 72, 96]


async def test_reminders_wait_for_working_hours(rig: Rig) -> None:
    rig.clock.set(datetime(2026, 1, 5, 20, 30, tzinfo=UTC))  # Monday 21:30 in Berlin
    notice_id = await rig.broadcast("member:anna@acme.example")
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=24)  # Tuesday 21:30 Berlin: quiet hours
    assert (await rig.herald.tick())["reminders"] == 0
    row = await Delivery.get(notice_id=notice_id, kind="notice")
    assert row.next_reminder_at == datetime(2026, 1, 7, 7, 0, tzinfo=UTC)  # Wednesday 08:00 Berlin
    rig.clock.set(datetime(2026, 1, 7, 6, 59, tzinfo=UTC))
    assert (await rig.herald.tick())["reminders"] == 0
    rig.clock.set(datetime(2026, 1, 7, 7, 0, tzinfo=UTC))
    assert (await rig.herald.tick())["reminders"] == 1


async def test_reminders_skip_the_weekend(rig: Rig) -> None:
    rig.clock.set(datetime(2026, 1, 9, 10, 0, tzinfo=UTC))  # Friday
    notice_id = await rig.broadcast("member:cy@bolt.example")  # Chicago
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=24)  # Saturday
    await rig.herald.tick()
    row = await Delivery.get(notice_id=notice_id, kind="notice")
    assert row.next_reminder_at == datetime(2026, 1, 12, 14, 0, tzinfo=UTC)  # Monday 08:00 Chicago


def _reminder_posts(rig: Rig, channel: str) -> list:
    return [c for c in _posts_to(rig, channel) if "Reminder" in str(c.args.get("blocks"))]


async def test_a_reminder_delayed_past_working_hours_waits_for_the_next_working_day(rig: Rig) -> None:
    """A reminder planned on Tuesday morning is not sent then (Herald is down, or the workspace
    rate-limited). When the outbox gets to it on Friday at 20:30 Berlin, it puts it back until
    Monday 08:00 (reminders: in the member's working hours, weekdays) instead of sending it."""
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("member:anna@acme.example", deadline=MONDAY_9_UTC + timedelta(days=10))
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=24)
    assert (await rig.herald.tick())["reminders"] == 1

    rig.clock.set(datetime(2026, 1, 9, 19, 30, tzinfo=UTC))  # Friday 20:30 Berlin
    await rig.herald.outbox.drain()
    assert _reminder_posts(rig, "DUANNA") == []
    monday = datetime(2026, 1, 12, 7, 0, tzinfo=UTC)  # 08:00 Berlin
    (reminder,) = await _reminders(notice_id, "anna@acme.example")
    assert (reminder.status, reminder.next_attempt_at, reminder.attempts) == ("pending", monday, 0)
    held = await AuditEvent.get(notice_id=notice_id, kind="delivery.held")
    assert (held.data["copy"], held.data["reason"]) == ("reminder", "outside working hours")

    rig.clock.set(monday)
    await rig.herald.outbox.drain()
    assert len(_reminder_posts(rig, "DUANNA")) == 1


async def test_remind_now_at_night_reaches_each_member_in_their_working_hours(rig: Rig) -> None:
    """The CAM presses Remind now at 22:00 Berlin: the reminders are queued at once and reach
    Anna and Bo at 08:00 their time, not in the night."""
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("org:acme", deadline=MONDAY_9_UTC + timedelta(days=2))
    await rig.herald.outbox.drain()
    rig.clock.set(datetime(2026, 1, 5, 21, 0, tzinfo=UTC))
    cam = await Staff.get(email="cam@vendor.example")
    assert await remind_organisation_now(notice_id, "acme", cam, now=rig.clock.now()) == 2
    await rig.herald.outbox.drain()
    assert _reminder_posts(rig, "DUANNA") == _reminder_posts(rig, "DUBO") == []
    rig.clock.set(datetime(2026, 1, 6, 7, 0, tzinfo=UTC))
    await rig.herald.outbox.drain()
    assert len(_reminder_posts(rig, "DUANNA")) == len(_reminder_posts(rig, "DUBO")) == 1


async def test_escalation_tells_the_cam_once_who_has_not_acknowledged(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    deadline = MONDAY_9_UTC + timedelta(days=2)
    notice_id = await rig.broadcast("tier:gold", deadline=deadline)
    await rig.herald.outbox.drain()
    await _ack(rig, notice_id, "UBO")
    rig.clock.set(deadline - timedelta(minutes=1))
    assert (await rig.herald.tick())["escalations"] == 0
    rig.clock.set(deadline)
    counts = await rig.herald.tick()
    assert counts["escalations"] == 2 and counts["escalation_messages"] == 2  # Acme and Keys & Co
    assert (await rig.herald.tick())["escalations"] == 0
    await rig.herald.outbox.drain()  # the worker the tick wakes
    messages = _posts_to(rig, "DUCAM1")
    assert len(messages) == 2
    acme = next(m for m in messages if "Acme Locks" in str(m.args["blocks"]))
    text = str(acme.args["blocks"])
    assert "Anna Berg" in text and "Bo Chen" not in text and "1 member has not acknowledged" in text
    # the deadline in the CAM's own zone (Slack's date token), the UTC text as its fallback
    assert f"passed at <!date^{int(deadline.timestamp())}^{{date_short_pretty}} {{time}}|2026-01-07 09:00 UTC>" in text
    buttons = [e["action_id"] for b in acme.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["herald_remind_now", "herald_open_report"]
    keys = next(m for m in messages if "Keys" in str(m.args["blocks"]))
    assert "Di Evans" in str(keys.args["blocks"]) and "Ed Fox" in str(keys.args["blocks"])  # Ed never got it
    rows = await Escalation.filter(notice_id=notice_id).order_by("id")
    assert all(r.status == "delivered" and r.sent_at == deadline for r in rows)
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.escalated").count() == 2

    cam = await Staff.get(email="cam@vendor.example")
    assert await remind_organisation_now(notice_id, "acme", cam, now=rig.clock.now()) == 0  # reminded a minute ago
    rig.clock.advance(minutes=20)
    queued = await remind_organisation_now(notice_id, "acme", cam, now=rig.clock.now())
    assert queued == 1
    await rig.herald.outbox.drain()
    assert "Reminder" in str(_posts_to(rig, "DUANNA")[-1].args["blocks"])
    outsider, _ = await add_staff("other@vendor.example", "cam", now=rig.clock.now())
    with pytest.raises(PermissionDenied):
        await remind_organisation_now(notice_id, "acme", outsider, now=rig.clock.now())


async def test_escalation_and_remind_now_leave_out_members_no_longer_active(rig: Rig) -> None:
    """A member removed from the directory after the send is neither listed to the CAM as missing
    nor reminded by Remind now."""
    rig.clock.set(MONDAY_9_UTC)
    deadline = MONDAY_9_UTC + timedelta(days=2)
    notice_id = await rig.broadcast("tier:gold", deadline=deadline)
    await rig.herald.outbox.drain()
    await _ack(rig, notice_id, "UBO")
    await Member.filter(email="anna@acme.example").update(active=False)
    rig.clock.set(deadline)
    counts = await rig.herald.tick()
    assert counts["escalations"] == 1  # Keys & Co only: Acme's one missing member has left
    await rig.herald.outbox.drain()
    (message,) = _posts_to(rig, "DUCAM1")
    assert "Keys" in str(message.args["blocks"]) and "Anna Berg" not in str(message.args["blocks"])
    cam = await Staff.get(email="cam@vendor.example")
    assert await remind_organisation_now(notice_id, "acme", cam, now=rig.clock.now()) == 0
    assert await Delivery.filter(notice_id=notice_id, kind="reminder").count() == 0


async def test_a_member_reactivated_by_the_directory_is_reminded_again_of_an_unacknowledged_must_know(
        rig: Rig) -> None:
    """Anna received a must-know recall on Monday and has not acknowledged it. A directory sync with
    --deactivate-missing leaves her out while her 24 h reminder falls due: she is not reminded while
    out, but the reminder is kept (looked at again hourly, as for a paused partner), so once the
    next sync brings her back she is reminded within the hour and on schedule after that."""
    from bot.core.directory.importer import import_directory
    from tests.support import SAMPLE_DIRECTORY

    without_anna = "\n".join(line for line in SAMPLE_DIRECTORY.splitlines() if "anna@" not in line) + "\n"
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("member:anna@acme.example", deadline=MONDAY_9_UTC + timedelta(days=10))
    await rig.herald.outbox.drain()
    assert await Delivery.filter(notice_id=notice_id, member__email="anna@acme.example", status="delivered").exists()

    rig.clock.advance(hours=12)
    left = await import_directory(without_anna, now=rig.clock.now(), deactivate_missing=True, actor="test")
    assert left.deactivated == 1
    rig.clock.advance(hours=12)  # Tuesday 10:00 Berlin: her first reminder is due while she is out
    await rig.herald.tick()
    assert await _reminders(notice_id, "anna@acme.example") == []
    back = await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test")
    assert back.rejected == [] and (await Member.get(email="anna@acme.example")).active

    rig.clock.advance(hours=1)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert [r.status for r in await _reminders(notice_id, "anna@acme.example")] == ["delivered"], (
        "Anna is back and has not acknowledged the must-know notice, but her reminder was dropped while she was out")
    for _ in range(3):  # Wednesday to Friday: the daily ones
        rig.clock.advance(days=1)
        await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert len(await _reminders(notice_id, "anna@acme.example")) >= 3


async def test_remind_now_pressed_twice_reminds_each_member_once(rig: Rig) -> None:
    """A double click arrives as two requests: the second finds everyone just reminded."""
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("org:acme", deadline=MONDAY_9_UTC + timedelta(days=2))
    await rig.herald.outbox.drain()
    cam = await Staff.get(email="cam@vendor.example")
    assert await remind_organisation_now(notice_id, "acme", cam, now=rig.clock.now()) == 2
    assert await remind_organisation_now(notice_id, "acme", cam, now=rig.clock.now()) == 0
    rig.clock.advance(minutes=16)
    assert await remind_organisation_now(notice_id, "acme", cam, now=rig.clock.now()) == 2  # a deliberate second
    assert await Delivery.filter(notice_id=notice_id, kind="reminder").count() == 4


async def test_escalation_goes_to_the_author_when_no_cam_is_on_file(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await Organisation.filter(external_id="bolt").update(cam_email="")
    author, _ = await add_staff("author@vendor.example", "cam", slack_user="UAUTHOR", slack_team=TEAM,
                                now=rig.clock.now())
    rig.fake.add_user(TEAM, "UAUTHOR")
    from bot.core.commands.parser import SendCommand

    command = SendCommand(importance="must-know", topic="operations", audience="org:bolt", title="Stock check",
                          body="Count LX-200 units", deadline=MONDAY_9_UTC + timedelta(hours=30))
    preview = await notices.create_draft(author, command, rig.herald.catalog, now=rig.clock.now())
    await notices.send_draft(preview.notice.id, author, rig.herald.catalog, now=rig.clock.now())
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=31)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    (message,) = _posts_to(rig, "DUAUTHOR")
    assert "Cy Diaz" in str(message.args["blocks"])


async def test_an_escalation_is_not_sent_to_an_author_who_may_no_longer_act_on_it(rig: Rig) -> None:
    """Bolt has no CAM on file, so its escalation would go to the notice's author; the author was
    made a compliance officer meanwhile and could not press Remind now: the escalation fails with
    the reason (on the audit trail and the report) instead of reaching them."""
    rig.clock.set(MONDAY_9_UTC)
    await Organisation.filter(external_id="bolt").update(cam_email="")
    author, _ = await add_staff("author@vendor.example", "cam", slack_user="UAUTHOR", slack_team=TEAM,
                                now=rig.clock.now())
    rig.fake.add_user(TEAM, "UAUTHOR")
    from bot.core.commands.parser import SendCommand

    command = SendCommand(importance="must-know", topic="operations", audience="org:bolt", title="Stock check",
                          body="Count LX-200 units", deadline=MONDAY_9_UTC + timedelta(hours=30))
    preview = await notices.create_draft(author, command, rig.herald.catalog, now=rig.clock.now())
    await notices.send_draft(preview.notice.id, author, rig.herald.catalog, now=rig.clock.now())
    await rig.herald.outbox.drain()
    await add_staff("author@vendor.example", "compliance", now=rig.clock.now())
    rig.clock.advance(hours=31)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert not _posts_to(rig, "DUAUTHOR")
    (row,) = await Escalation.filter(notice_id=preview.notice.id)
    assert row.status == "failed" and row.staff_id is None and "no CAM on file who may act" in row.error


async def test_status_does_not_count_an_escalation_that_reached_nobody(rig: Rig) -> None:
    """Acme's CAM has no Slack or Teams account on file, so the deadline's escalation fails: nobody
    is told who has not acknowledged. `status` said "escalations: 1" all the same, and the CAM
    who sent the recall took the partner's CAM to be chasing them. It counts the escalations that
    went out and names the ones that did not, with why; a retraction's cancelled ones count neither."""
    rig.clock.set(MONDAY_9_UTC)
    await Staff.filter(email="cam@vendor.example").update(slack_user_id="", slack_team_id="")
    deadline = MONDAY_9_UTC + timedelta(days=2)
    notice_id = await rig.broadcast("org:acme", deadline=deadline)
    await rig.herald.outbox.drain()
    rig.clock.set(deadline)
    assert (await rig.herald.tick())["escalations"] == 1
    await rig.herald.outbox.drain()
    assert (await Escalation.get(notice_id=notice_id)).status == "failed"

    report = await notice_status(notice_id, now=rig.clock.now())
    text = status_text(report)
    assert "escalations: 0" in text, text
    assert "Escalations not sent, so nobody was told: *1*" in text
    assert f"• 1 × {escalations.NO_CHAT_ACCOUNT}" in text
    assert report.as_dict()["escalation_failures"] == [{"reason": escalations.NO_CHAT_ACCOUNT, "count": 1}]

    later = await rig.broadcast("org:bolt", deadline=deadline + timedelta(days=2))  # Cy's CAM: the same
    await Staff.filter(email="cam@vendor.example").update(slack_user_id=CAM_USER, slack_team_id=TEAM)
    rig.clock.set(deadline + timedelta(days=2))
    assert await escalations.plan_escalations(rig.clock.now()) == 1
    await retract_notice(later, None, reason="wrong product", now=rig.clock.now(), operator="test")
    retracted = await notice_status(later, now=rig.clock.now())
    assert retracted.escalations == 0 and retracted.escalation_failures == []


async def _notice_by(rig: Rig, author: Staff, audience: str, deadline: datetime) -> int:
    command = SendCommand(importance="must-know", topic="operations", audience=audience, title="Stock check",
                          body="Count LX-200 units", deadline=deadline)
    preview = await notices.create_draft(author, command, rig.herald.catalog, now=rig.clock.now())
    await notices.send_draft(preview.notice.id, author, rig.herald.catalog, now=rig.clock.now())
    return preview.notice.id


async def _deadline_passed_for_an_unreachable_cam(rig: Rig) -> tuple[Staff, int]:
    """Acme's CAM has no Slack or Teams account on file; another CAM, Ada (reachable), wrote a
    must-know notice to Acme, whose deadline has just come (the tick not run yet)."""
    rig.clock.set(MONDAY_9_UTC)
    author, _ = await add_staff("author@vendor.example", "cam", name="Ada Author", slack_user="UAUTHOR",
                                slack_team=TEAM, now=rig.clock.now())
    rig.fake.add_user(TEAM, "UAUTHOR")
    await Staff.filter(email="cam@vendor.example").update(slack_user_id="", slack_team_id="")
    deadline = MONDAY_9_UTC + timedelta(days=2)
    notice_id = await _notice_by(rig, author, "org:acme", deadline)
    await rig.herald.outbox.drain()
    rig.clock.set(deadline)
    return author, notice_id


async def test_an_escalation_the_partners_cam_cannot_receive_goes_once_to_the_notices_author(rig: Rig) -> None:
    """Acme's CAM has no Slack or Teams account on file, and Slack refuses the DM to Bolt's: their
    escalations failed and only the audit trail and the console said so, so nobody learnt that the
    partners' members were overdue. The notice's author (another CAM, reachable) now gets the
    escalation once, told that the partner's CAM could not be reached and why, with its buttons."""
    author, notice_id = await _deadline_passed_for_an_unreachable_cam(rig)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    row = await Escalation.get(notice_id=notice_id)
    assert (row.status, row.error) == ("failed", escalations.NO_CHAT_ACCOUNT)  # the partner's CAM was not told
    (message,) = _posts_to(rig, "DUAUTHOR")
    text = str(message.args["blocks"])
    assert "Casey CAM" in text and "could not be reached" in text and "no Slack or Teams account on file" in text
    assert "Anna Berg" in text and "Bo Chen" in text
    buttons = [e["action_id"] for b in message.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["herald_remind_now", "herald_open_report"]
    (failed,) = await AuditEvent.filter(notice_id=notice_id, kind="escalation.failed")
    assert failed.data["fallback_to"] == "author@vendor.example"
    (told,) = await AuditEvent.filter(notice_id=notice_id, kind="escalation.fallback_delivered")
    assert told.data["escalated_to"] == "author@vendor.example"
    rig.clock.advance(hours=1)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert len(_posts_to(rig, "DUAUTHOR")) == 1  # once
    assert await remind_organisation_now(notice_id, "acme", author, now=rig.clock.now()) == 2  # the author may
    report = await notice_status(notice_id, now=rig.clock.now())
    assert report.escalation_failures == [] and report.escalation_fallbacks == [(escalations.NO_CHAT_ACCOUNT, 1)]
    assert "told the notice's author instead: *1*" in status_text(report)

    # Slack refuses the DM to Bolt's CAM: the account on file is not in the workspace (any more)
    await Staff.filter(email="cam@vendor.example").update(slack_user_id="UCAMGONE", slack_team_id=TEAM)
    later = await _notice_by(rig, author, "org:bolt", rig.clock.now() + timedelta(days=2))
    await rig.herald.outbox.drain()
    rig.clock.advance(days=2)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    row = await Escalation.get(notice_id=later)
    assert row.status == "failed" and row.error
    told = _posts_to(rig, "DUAUTHOR")[-1]
    assert "Cy Diaz" in str(told.args["blocks"]) and row.error in str(told.args["blocks"]), row.error
    assert "could not be reached" in str(told.args["blocks"])


async def _escalation_waiting_for_its_author(rig: Rig) -> tuple[Staff, int, OutboundMessage]:
    """Acme's CAM has no chat account: the escalation goes to the notice's author instead, and
    waits in the outbox (Slack asked for a minute's pause)."""
    author, notice_id = await _deadline_passed_for_an_unreachable_cam(rig)
    rig.fake.fail_next("chat.postMessage", retry_after=60)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    (fallback,) = await OutboundMessage.filter(purpose="escalation_fallback")
    assert fallback.status == "pending" and not _posts_to(rig, "DUAUTHOR")
    return author, notice_id, fallback


async def test_an_escalation_for_the_author_is_not_sent_once_they_may_no_longer_act_on_it(rig: Rig) -> None:
    """Meanwhile the author becomes a compliance officer, who may not press Remind now. It is not
    sent to them: it fails saying why, and `herald doctor` names the escalation as having told nobody."""
    from bot.ops.doctor import check_unreached_escalations

    author, notice_id, fallback = await _escalation_waiting_for_its_author(rig)
    await Staff.filter(id=author.id).update(role="compliance")
    rig.clock.advance(minutes=2)
    await rig.herald.outbox.drain()
    fallback = await OutboundMessage.get(id=fallback.id)
    assert (fallback.status, fallback.error) == ("failed", escalations.AUTHOR_NO_LONGER_CAM)
    assert not _posts_to(rig, "DUAUTHOR")
    (failed,) = await AuditEvent.filter(notice_id=notice_id, kind="escalation.fallback_failed")
    assert failed.data["reason"] == escalations.AUTHOR_NO_LONGER_CAM
    check = await check_unreached_escalations(rig.herald.clock)
    assert check.status == "warn" and f"notice #{notice_id}" in check.detail


async def test_an_escalation_for_the_author_stops_when_the_notice_is_retracted(rig: Rig) -> None:
    """The notice is retracted while its escalation waits for the author: nothing more goes out
    about it, this message included."""
    author, notice_id, fallback = await _escalation_waiting_for_its_author(rig)
    await retract_notice(notice_id, author, reason="wrong batch", now=rig.clock.now())
    rig.clock.advance(minutes=2)
    await rig.herald.outbox.drain()
    fallback = await OutboundMessage.get(id=fallback.id)
    assert (fallback.status, fallback.error) == ("cancelled", "retracted: wrong batch")
    assert not _posts_to(rig, "DUAUTHOR")


async def test_an_escalation_that_reached_nobody_is_named_by_the_doctor(rig: Rig) -> None:
    """The partner's CAM has no chat account and the notice has no author to fall back to (or it is
    the CAM themself): nobody is told, and `herald doctor` names the notice and the partner."""
    from bot.ops.doctor import check_unreached_escalations

    rig.clock.set(MONDAY_9_UTC)
    assert (await check_unreached_escalations(rig.herald.clock)).status == "ok"
    await Staff.filter(email="cam@vendor.example").update(slack_user_id="", slack_team_id="")
    deadline = MONDAY_9_UTC + timedelta(days=2)
    notice_id = await rig.broadcast("org:acme", deadline=deadline)
    await rig.herald.outbox.drain()
    rig.clock.set(deadline)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert (await Escalation.get(notice_id=notice_id)).status == "failed"
    assert await OutboundMessage.filter(purpose="escalation_fallback").count() == 0
    check = await check_unreached_escalations(rig.herald.clock)
    assert check.status == "warn" and f"notice #{notice_id}" in check.detail and "Acme Locks" in check.detail
    assert escalations.NO_CHAT_ACCOUNT in check.detail


async def test_pause_stops_reminders_but_not_delivery(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    cam = await Staff.get(email="cam@vendor.example")
    await pause_organisation(cam, "acme", until=None, reason="site fire", now=rig.clock.now())
    notice_id = await rig.broadcast("tier:gold,silver")
    await rig.herald.outbox.drain()
    assert {c.channel for c in rig.fake.calls_to("chat.postMessage")} == {"DUANNA", "DUBO", "DUCY", "DUDI"}
    status = await notice_status(notice_id, now=rig.clock.now())
    assert status.paused_organisations == ["Acme Locks"]

    for _ in range(48):  # two days, so every time zone has had its working hours
        rig.clock.advance(hours=1)
        await rig.herald.tick()
    await rig.herald.outbox.drain()
    reminded = {r["member__email"] for r in await Delivery.filter(notice_id=notice_id, kind="reminder").values("member__email")}
    assert reminded == {"cy@bolt.example", "di@keys.example"}

    await resume_organisation(cam, "acme", now=rig.clock.now())
    for _ in range(24):
        rig.clock.advance(hours=1)
        await rig.herald.tick()
    reminded = {r["member__email"] for r in await Delivery.filter(notice_id=notice_id, kind="reminder").values("member__email")}
    assert {"anna@acme.example", "bo@acme.example"} <= reminded
    kinds = await AuditEvent.filter(kind__in=["organisation.paused", "organisation.resumed"]).values_list("kind", flat=True)
    assert list(kinds) == ["organisation.paused", "organisation.resumed"]


async def test_an_open_ended_pause_parks_reminders_until_it_is_resumed(rig: Rig) -> None:
    """Paused until resumed: a must-know copy (no deadline) of a paused organisation is not looked
    at (and its row written) again every hour for as long as the pause lasts: its reminders wait
    (`reminder.ended`, with the reason), and resuming the organisation brings them back."""
    rig.clock.set(MONDAY_9_UTC)
    cam = await Staff.get(email="cam@vendor.example")
    await pause_organisation(cam, "acme", until=None, reason="site fire", now=rig.clock.now())
    notice_id = await rig.broadcast("member:anna@acme.example")
    await rig.herald.outbox.drain()
    original = await Delivery.get(notice_id=notice_id, kind="notice")

    rig.clock.set(original.next_reminder_at)
    await rig.herald.tick()
    original = await Delivery.get(id=original.id)
    assert original.next_reminder_at is None, (
        f"a paused organisation's copy is looked at again at {original.next_reminder_at}")
    (ended,) = await AuditEvent.filter(kind="reminder.ended")
    assert ended.data["reason"] == PAUSED and ended.data["delivery_id"] == original.id

    rig.clock.advance(days=2)
    await resume_organisation(cam, "acme", now=rig.clock.now())
    (resumed,) = await AuditEvent.filter(kind="reminder.resumed")
    assert resumed.data["delivery_id"] == original.id
    for _ in range(24):
        rig.clock.advance(hours=1)
        await rig.herald.tick()
    assert await Delivery.filter(notice_id=notice_id, kind="reminder").exists()
    assert (await verify_chain()).ok


async def test_only_the_organisations_cam_or_an_admin_can_pause(rig: Rig) -> None:
    other, _ = await add_staff("other@vendor.example", "cam", now=rig.clock.now())
    with pytest.raises(PermissionDenied):
        await pause_organisation(other, "acme", until=None, reason="", now=rig.clock.now())
    admin, _ = await add_staff("admin@vendor.example", "admin", now=rig.clock.now())
    org = await pause_organisation(admin, "acme", until=rig.clock.now() + timedelta(days=3), reason="x",
                                   now=rig.clock.now())
    assert org.paused_at == rig.clock.now() and org.paused_by == "admin@vendor.example"


async def test_scheduled_notice_goes_out_once_at_its_time(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    at = MONDAY_9_UTC + timedelta(hours=3)
    notice_id = await rig.broadcast("tier:gold", scheduled_at=at, deadline=at + timedelta(days=1))
    notice = await Notice.get(id=notice_id)
    assert notice.status == "scheduled" and await Delivery.filter(notice_id=notice_id).count() == 0
    cam = await Staff.get(email="cam@vendor.example")
    assert [n.id for n in await notices.scheduled_notices(cam)] == []  # not hers: sent by the operator
    rig.clock.set(at - timedelta(seconds=1))
    assert (await rig.herald.tick())["published"] == 0
    rig.clock.set(at)
    replicas = [rig.herald, rig.another_worker(), rig.another_worker()]
    import asyncio

    results = await asyncio.gather(*(r.tick() for r in replicas))
    assert sum(r["published"] for r in results) == 1
    await rig.herald.outbox.drain()
    copies = [c for c in rig.fake.calls_to("chat.postMessage")
              if (c.args.get("metadata") or {}).get("event_payload", {}).get("notice_id") == notice_id]
    assert len(copies) == 3  # (the tick also sent onboarding steps; those are not this notice)
    assert (await Notice.get(id=notice_id)).sent_at == at
    for replica in replicas[1:]:
        await replica.close()


async def test_a_send_being_finished_is_not_reported_as_finished_after_an_interruption(rig: Rig) -> None:
    """A Send is stored (`request_send`: the notice due now), the platform answered, and the
    answering replica goes on to `finish_send`. Another replica's tick at that moment found the
    notice due and published it itself, as if the answering process had died: the CAM was sent
    "Herald finished sending it after an interruption" although nothing was interrupted, and the
    audit trail said the scheduler, not the CAM, sent it. The tick now leaves a requested Send to
    its own process for the lease and 5 s (`requested_send_grace`); one still due after that was
    interrupted, and is published and told as before.
    """
    cam = await Staff.get(email="cam@vendor.example")
    command = SendCommand(importance="must-know", topic="announcements", audience="tier:gold", title="Recall",
                          body="Stop selling LX-200")
    preview = await notices.create_draft(cam, command, rig.herald.catalog, now=rig.clock.now())
    requested = await notices.request_send(preview.notice.id, cam, now=rig.clock.now())
    assert requested.queued and not requested.already

    other = rig.another_worker()  # its tick, in the moment between the answer and finish_send
    try:
        await other.tick()
    finally:
        await other.close()
    finished = await notices.finish_send(preview.notice.id, rig.herald.catalog, actor=cam.email, now=rig.clock.now())
    await rig.herald.outbox.drain()

    told = [c for c in _posts_to(rig, "DUCAM1") if "after an interruption" in str(c.args)]
    assert told == [], "the CAM was told Herald finished the send after an interruption; none happened"
    sent = await AuditEvent.get(notice_id=preview.notice.id, kind="notice.sent")
    assert sent.actor == cam.email and not finished.already, f"notice.sent by {sent.actor!r}"

    # a Send whose process died after the answer is still published, by the first tick after the grace
    crashed = await notices.create_draft(cam, command, rig.herald.catalog, now=rig.clock.now())
    assert (await notices.request_send(crashed.notice.id, cam, now=rig.clock.now())).queued
    grace = notices.requested_send_grace(rig.herald.settings.delivery_lease_seconds)
    rig.clock.advance(seconds=grace.total_seconds() - 1)
    assert (await rig.herald.tick())["published"] == 0
    rig.clock.advance(seconds=1)
    assert (await rig.herald.tick())["published"] == 1
    recovered = await AuditEvent.get(notice_id=crashed.notice.id, kind="notice.sent")
    assert recovered.actor == "scheduler"
    await rig.herald.outbox.drain()
    assert len([c for c in _posts_to(rig, "DUCAM1") if "after an interruption" in str(c.args)]) == 1


async def test_cancelled_scheduled_notice_never_goes_out(rig: Rig) -> None:
    notice_id = await rig.broadcast("all", scheduled_at=rig.clock.now() + timedelta(hours=1))
    await notices.cancel_draft(notice_id, None, now=rig.clock.now(), operator="test")
    rig.clock.advance(hours=2)
    assert (await rig.herald.tick())["published"] == 0
    assert await Delivery.filter(notice_id=notice_id).count() == 0


def _without_topic(rig: Rig, key: str) -> Herald:
    """The same Herald restarted after the operator removed topic `key` from config/topics.yaml."""
    full = rig.herald.catalog
    trimmed = TopicCatalog(topics={k: t for k, t in full.topics.items() if k != key}, roles=full.roles)
    return Herald(rig.herald.settings, clock=rig.clock, catalog=trimmed)


async def test_a_scheduled_notice_of_a_removed_topic_fails_once_and_the_reminders_still_come(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    # a must-know notice on `operations`, delivered: its first reminder is due 24 h later
    notice_id = await rig.broadcast("member:anna@acme.example", topic="operations",
                                    deadline=MONDAY_9_UTC + timedelta(days=10))
    await rig.herald.outbox.drain()
    # a notice scheduled for Tuesday on `announcements`, a topic the operator then retires
    scheduled_id = await rig.broadcast("member:bo@acme.example", importance="need-to-know", topic="announcements",
                                       scheduled_at=MONDAY_9_UTC + timedelta(days=1))
    restarted = _without_topic(rig, "announcements")
    try:
        rig.clock.advance(hours=24, minutes=1)  # Tuesday 10:01 in Berlin: the reminder is due
        counts = await restarted.tick()
        assert counts["failed_jobs"] == 0 and counts["published"] == 0
        assert await Delivery.filter(notice_id=notice_id, kind="reminder").count() == 1
        scheduled = await Notice.get(id=scheduled_id)
        assert scheduled.status == "failed" and "unknown topic 'announcements'" in scheduled.failure_reason
        assert await Delivery.filter(notice_id=scheduled_id).count() == 0
        (event,) = await AuditEvent.filter(kind="notice.failed")
        assert event.notice_id == scheduled_id and event.data["reason"] == scheduled.failure_reason
        assert "Not sent: unknown topic 'announcements'" in status_text(await notice_status(scheduled_id, now=rig.clock.now()))
        rig.clock.advance(minutes=1)  # taken out of the due set: the next tick does not try it again
        assert (await restarted.tick())["failed_jobs"] == 0
        assert await AuditEvent.filter(kind="notice.failed").count() == 1
    finally:
        await restarted.close()


async def test_the_author_of_a_scheduled_notice_that_cannot_go_out_is_told(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    author, _ = await add_staff("author@vendor.example", "cam", slack_user="UAUTHOR", slack_team=TEAM,
                                now=rig.clock.now())
    rig.fake.add_user(TEAM, "UAUTHOR")
    from bot.core.commands.parser import SendCommand

    command = SendCommand(importance="need-to-know", topic="announcements", audience="org:bolt", title="Price list",
                          body="New prices", scheduled_at=MONDAY_9_UTC + timedelta(hours=2))
    preview = await notices.create_draft(author, command, rig.herald.catalog, now=rig.clock.now())
    await notices.send_draft(preview.notice.id, author, rig.herald.catalog, now=rig.clock.now())
    restarted = _without_topic(rig, "announcements")
    try:
        rig.clock.advance(hours=3)
        await restarted.tick()
        await restarted.outbox.drain()
        (message,) = _posts_to(rig, "DUAUTHOR")
        text = " ".join(block["text"]["text"] for block in message.args["blocks"])
        assert f"#{preview.notice.id}" in text and "unknown topic 'announcements'" in text
        assert (await Notice.get(id=preview.notice.id)).status == "failed"
    finally:
        await restarted.close()


@pytest.mark.parametrize("change", ["deactivated", "moved to compliance"])
async def test_a_scheduled_notice_is_not_sent_once_its_author_may_no_longer_send(rig: Rig, change: str) -> None:
    """A CAM schedules a must-know notice for tomorrow, then leaves (deactivated) or becomes a
    compliance officer (who "changes nothing"). At its time the scheduler checks the author again
    with the rule that let them schedule it (`permissions.require_sender`): the notice is failed
    with the reason, audited, reaches nobody, and an author still active is told why."""
    rig.clock.set(MONDAY_9_UTC)
    cam = await Staff.get(email="cam@vendor.example")
    from bot.core.commands.parser import SendCommand

    command = SendCommand(importance="must-know", topic="announcements", audience="all", title="Recall",
                          body="Stop selling LX-200", scheduled_at=MONDAY_9_UTC + timedelta(days=1))
    preview = await notices.create_draft(cam, command, rig.herald.catalog, now=rig.clock.now())
    scheduled = await notices.send_draft(preview.notice.id, cam, rig.herald.catalog, now=rig.clock.now())
    assert scheduled.notice.status == "scheduled"
    if change == "deactivated":
        await Staff.filter(id=cam.id).update(active=False)
    else:
        await add_staff("cam@vendor.example", "compliance", now=rig.clock.now(), actor="ops")

    rig.clock.set(MONDAY_9_UTC + timedelta(days=1, minutes=1))
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    notice = await Notice.get(id=preview.notice.id)
    sent = await Delivery.filter(notice_id=notice.id, status="delivered").count()
    assert (notice.status, sent) == ("failed", 0), (
        f"the notice of a {change} author went out: status {notice.status!r}, {sent} copies delivered")
    state = "is no longer active" if change == "deactivated" else "is now compliance, not a CAM or admin"
    assert notice.failure_reason == f"its author cam@vendor.example {state} and may no longer send notices"
    (event,) = await AuditEvent.filter(kind="notice.failed")
    assert event.notice_id == notice.id and event.data["reason"] == notice.failure_reason
    told = [" ".join(b["text"]["text"] for b in m.args["blocks"] if "text" in b) for m in _posts_to(rig, f"D{CAM_USER}")
            if "Not sent" in str(m.args)]
    assert event.data["author_told"] is (change != "deactivated") and len(told) == (change != "deactivated")
    if told:
        assert "may no longer send notices" in told[0] and "Ask a CAM or an admin" in told[0]


async def test_a_tick_job_that_raises_is_logged_and_counted_and_the_others_still_run(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("member:anna@acme.example", topic="operations",
                                    deadline=MONDAY_9_UTC + timedelta(days=10))
    await rig.herald.outbox.drain()

    async def broken(*args, **kwargs) -> int:  # noqa: ANN002, ANN003
        raise RuntimeError("database hiccup")

    monkeypatch.setattr("bot.service.publish_due", broken)
    before = metrics.sample("herald_tick_job_failures_total", {"job": "published"})
    rig.clock.advance(hours=24, minutes=1)
    counts = await rig.herald.tick()
    assert counts["failed_jobs"] == 1 and counts["published"] == 0
    assert await Delivery.filter(notice_id=notice_id, kind="reminder").count() == 1  # planned all the same
    assert metrics.sample("herald_tick_job_failures_total", {"job": "published"}) == before + 1
    assert any("tick: published failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_edit_updates_every_copy_and_material_edit_asks_for_acknowledgement_again(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("member:anna@acme.example,bo@acme.example")
    await rig.herald.outbox.drain()
    await _ack(rig, notice_id, "UANNA")
    rig.fake.clear_calls()

    rig.clock.advance(hours=1)
    cam = await Staff.get(email="cam@vendor.example")
    with pytest.raises(PermissionDenied):  # sent by the operator, not by this CAM
        await edit_notice(notice_id, cam, rig.herald.catalog, now=rig.clock.now(), title="x")
    result = await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                               body="Stop selling LX-200 and LX-210", material=True)
    assert result.reacknowledge and result.copies_to_update == 2
    await rig.herald.outbox.drain()
    updates = rig.fake.calls_to("chat.update")
    assert {u.channel for u in updates} == {"DUANNA", "DUBO"}
    for update in updates:
        text = str(update.args["blocks"])
        assert "LX-210" in text and "revision 2" in text and "Acknowledged by" not in text  # re-ack needed
    revisions = await NoticeRevision.filter(notice_id=notice_id).order_by("revision")
    assert [(r.revision, r.material) for r in revisions] == [(1, False), (2, True)]
    assert "+Stop selling LX-200 and LX-210" in revisions[1].diff and revisions[0].body == "Stop selling LX-200"
    assert (await notice_status(notice_id, now=rig.clock.now())).acknowledged == 0

    await _ack(rig, notice_id, "UANNA")
    acks_kept = await Acknowledgement.filter(notice_id=notice_id).order_by("revision").values_list("revision", flat=True)
    assert list(acks_kept) == [1, 2]  # the earlier acknowledgement stays in the record


def _posts_of_notice(rig: Rig, channel: str, notice_id: int) -> list:
    return [c for c in _posts_to(rig, channel)
            if ((c.args.get("metadata") or {}).get("event_payload") or {}).get("notice_id") == notice_id]


async def _escalated(notice_id: int, email: str) -> bool:
    member = await Member.get(email=email)
    return any(member.id in e.member_ids for e in await Escalation.filter(notice_id=notice_id))


async def test_a_material_edit_asks_members_who_had_acknowledged_before_they_are_escalated(rig: Rig) -> None:
    """Monday 09:00 UTC a recall goes out with a deadline of Thursday 09:00 UTC; Anna acknowledges
    at once, Bo does not. Wednesday 10:00 UTC (11:00 in Berlin) the CAM corrects it materially:
    everyone is to acknowledge again. The in-place update of Anna's Monday message notifies nobody
    and her next reminder by the schedule (the edit + 24 h) would be past the deadline, so she is
    asked again at once, by a reminder (a message of its own). She does not answer it: at the
    deadline her CAM is told, as about Bo, who keeps the reminders he was owed."""
    rig.clock.set(MONDAY_9_UTC)
    notice_id = await rig.broadcast("member:anna@acme.example,bo@acme.example",
                                    deadline=MONDAY_9_UTC + timedelta(days=3))
    await rig.herald.outbox.drain()
    await _ack(rig, notice_id, "UANNA")
    assert len(_posts_of_notice(rig, "DUANNA", notice_id)) == 1  # the notice itself

    rig.clock.set(MONDAY_9_UTC + timedelta(days=2, hours=1))  # Wednesday 10:00 UTC
    bo_next = (await Delivery.get(notice_id=notice_id, member__email="bo@acme.example")).next_reminder_at
    edit = await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                             body="Stop selling LX-200 and LX-300", material=True)
    assert edit.reacknowledge
    assert (await AuditEvent.filter(notice_id=notice_id, kind="notice.edited").get()).data["asked_again"] == 1
    await rig.herald.outbox.drain()
    (asked,) = _posts_of_notice(rig, "DUANNA", notice_id)[1:]
    assert "LX-300" in str(asked.args["blocks"]) and "Acknowledge" in str(asked.args["blocks"])
    assert (await Delivery.get(notice_id=notice_id, member__email="bo@acme.example")).next_reminder_at == bo_next

    while rig.clock.now() < MONDAY_9_UTC + timedelta(days=3, minutes=1):  # hourly ticks to just past the deadline
        await rig.herald.tick()
        await rig.herald.outbox.drain()
        rig.clock.advance(hours=1)
    assert len(_posts_of_notice(rig, "DUANNA", notice_id)) == 2  # asked once: the schedule has no slot left
    assert await _escalated(notice_id, "anna@acme.example") and await _escalated(notice_id, "bo@acme.example")


async def test_a_material_edit_after_the_deadline_asks_again_but_does_not_escalate_who_had_acknowledged(
        rig: Rig) -> None:
    """The deadline passed (Anna acknowledged, Bo did not); the CAM then corrects the notice
    materially, before the tick that escalates it. Anna is asked again once, but the deadline was
    for the wording she acknowledged: the escalation names Bo only (README)."""
    rig.clock.set(MONDAY_9_UTC)
    deadline = MONDAY_9_UTC + timedelta(days=1)
    notice_id = await rig.broadcast("member:anna@acme.example,bo@acme.example", deadline=deadline)
    await rig.herald.outbox.drain()
    await _ack(rig, notice_id, "UANNA")

    rig.clock.set(deadline + timedelta(minutes=1))
    await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                      body="Stop selling LX-200 and LX-300", material=True)
    await rig.herald.tick()
    await rig.herald.outbox.drain()

    assert len(_posts_of_notice(rig, "DUANNA", notice_id)) == 2  # the notice, and asked again
    assert not await _escalated(notice_id, "anna@acme.example")
    assert await _escalated(notice_id, "bo@acme.example")
    rig.clock.advance(days=3)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert len(_posts_of_notice(rig, "DUANNA", notice_id)) == 2  # and only once


async def test_a_scheduled_notice_corrected_before_it_goes_out_is_sent_and_acknowledged_as_the_original(
        rig: Rig) -> None:
    """Nobody had the uncorrected text: no revision history, no "edited" mark on the message, and
    acknowledgements bind to the text the members were sent. The correction is on the audit trail."""
    rig.clock.set(MONDAY_9_UTC)
    cam = await Staff.get(email="cam@vendor.example")
    command = parse_command("send must-know operations member:anna@acme.example at:2026-01-05T12:00Z | "
                            "Recall of LX-200 | Stop selling LX-200")
    preview = await notices.create_draft(cam, command, rig.herald.catalog, now=rig.clock.now())
    await notices.send_draft(preview.notice.id, cam, rig.herald.catalog, now=rig.clock.now())
    rig.clock.advance(hours=1)
    result = await edit_notice(preview.notice.id, cam, rig.herald.catalog, now=rig.clock.now(),
                               title="Recall of LX-210", body="Stop selling LX-210")
    assert result.revision is None and "corrected before it went out" in result.summary
    rig.clock.set(MONDAY_9_UTC + timedelta(hours=3))
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    (sent,) = [c for c in _posts_to(rig, "DUANNA")
               if (c.args.get("metadata") or {}).get("event_payload", {}).get("notice_id") == preview.notice.id]
    assert "LX-210" in str(sent.args["blocks"]) and "revision" not in str(sent.args["blocks"])
    await _ack(rig, preview.notice.id, "UANNA")
    notice = await Notice.get(id=preview.notice.id)
    assert (notice.revision, notice.title) == (1, "Recall of LX-210")
    assert await NoticeRevision.filter(notice_id=notice.id).count() == 0
    assert (await Acknowledgement.get(notice_id=notice.id)).revision == 1
    (edited,) = await AuditEvent.filter(notice_id=notice.id, kind="notice.edited")
    assert edited.data["before_send"] is True and "+Stop selling LX-210" in edited.data["diff"]


async def test_retract_replaces_copies_and_cancels_what_is_pending(rig: Rig) -> None:
    notice_id = await rig.broadcast("tier:gold")
    rig.fake.fail_next("chat.postMessage", status=500)
    await rig.herald.outbox.drain()
    pending = await Delivery.filter(notice_id=notice_id, status="pending").count()
    assert pending >= 1
    notice, flagged, cancelled = await retract_notice(notice_id, None, reason="wrong model number",
                                                      now=rig.clock.now(), operator="test")
    assert notice.status == "retracted" and cancelled == pending and flagged == 3 - pending
    await rig.herald.outbox.drain()
    updates = rig.fake.calls_to("chat.update")
    assert len(updates) == flagged
    assert all("Retracted: wrong model number" in str(u.args["blocks"]) for u in updates)
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()
    assert await Delivery.filter(notice_id=notice_id, status="delivered").count() == flagged  # nothing more sent
    delivered_user = (await Delivery.filter(notice_id=notice_id, status="delivered").first().values(
        "account__user_id"))["account__user_id"]
    with pytest.raises(UserError, match="retracted"):
        await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=delivered_user,
                               now=rig.clock.now())
    rig.clock.advance(days=2)
    assert (await rig.herald.tick())["reminders"] == 0
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.retracted").count() == 1
    from bot.core.compliance.verify import verify_chain

    assert (await verify_chain()).ok  # every step above went through the chain


# ---- a retraction racing the deadline's escalation ----------------------------------------------

async def _must_know_past_its_deadline(rig: Rig) -> int:
    rig.clock.set(MONDAY_9_UTC)
    deadline = MONDAY_9_UTC + timedelta(days=2)
    notice_id = await rig.broadcast("tier:gold", deadline=deadline)
    await rig.herald.outbox.drain()
    rig.clock.set(deadline)
    return notice_id


def _escalation_dms(rig: Rig) -> list:
    return [c for c in _posts_to(rig, "DUCAM1") if "Escalation" in str(c.args)]


async def test_a_notice_retracted_while_its_escalation_is_worked_out_is_not_escalated(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline's tick (any replica) reads the due notices (status sent) and who has not
    acknowledged; the CAM retracts the notice at that moment ("the deadline was wrong, it was for
    another tier"). The tick's claim looked only at `escalated_at IS NULL`, so the retracted notice
    was escalated: the CAM got "N members have not acknowledged" with a Remind now button for a
    notice they withdrew (README: retract: "pending sends and reminders stop"). The claim checks
    the status in the same statement now."""
    notice_id = await _must_know_past_its_deadline(rig)
    read, go = asyncio.Event(), asyncio.Event()
    real = escalations.unacknowledged_by_organisation

    async def tick_reads(notice: Notice, **kwargs: Any) -> dict:
        found = await real(notice, **kwargs)  # the tick's check is done ...
        read.set()
        await asyncio.wait_for(go.wait(), timeout=10)  # ... and it acts after the retraction committed
        return found
    monkeypatch.setattr(escalations, "unacknowledged_by_organisation", tick_reads)

    async def cam_retracts() -> None:
        await asyncio.wait_for(read.wait(), timeout=10)
        try:
            await retract_notice(notice_id, None, reason="wrong tier", now=rig.clock.now(), operator="test")
        finally:
            go.set()

    planned, _ = await asyncio.gather(escalations.plan_escalations(rig.clock.now()), cam_retracts())
    monkeypatch.undo()
    await escalations.send_escalations(rig.herald.channels, rig.clock.now())
    await rig.herald.outbox.drain()

    assert (await Notice.get(id=notice_id)).status == "retracted"
    assert planned == 0, f"{planned} escalations planned for a notice retracted before they were written"
    assert _escalation_dms(rig) == [], "the CAM was sent an escalation of a notice they had retracted"


async def test_a_notice_retracted_while_its_escalation_waits_in_the_outbox_is_not_escalated(rig: Rig) -> None:
    """The same race one step later: the escalation DM is queued (the CAM's workspace lane is
    paused by a 429, or busy with a broadcast) when the CAM retracts. The retraction cancelled the
    notice's pending copies and reminders, not its queued escalation DMs, and the outbox sent them.
    It cancels the DMs and their escalations too now, and its audit event counts them."""
    notice_id = await _must_know_past_its_deadline(rig)
    assert await escalations.plan_escalations(rig.clock.now()) == 2
    rows = await Escalation.filter(notice_id=notice_id).order_by("id")
    assert await escalations.send_escalations(rig.herald.channels, rig.clock.now(), batch=1) == 1  # one queued
    # the other is still to be queued when the CAM retracts

    await retract_notice(notice_id, None, reason="wrong tier", now=rig.clock.now(), operator="test")
    await escalations.send_escalations(rig.herald.channels, rig.clock.now())  # the next tick's
    await rig.herald.outbox.drain()

    assert _escalation_dms(rig) == [], "the CAM was sent an escalation of a notice they had retracted"
    assert [r.status for r in await Escalation.filter(notice_id=notice_id).order_by("id")] == ["cancelled"] * 2
    assert (await OutboundMessage.get(purpose="escalation", reference=rows[0].id)).status == "cancelled"
    retracted = await AuditEvent.get(notice_id=notice_id, kind="notice.retracted")
    assert retracted.data["escalations_cancelled"] == 2
    assert (await verify_chain()).ok


async def test_a_click_read_before_a_retraction_committed_is_not_recorded_after_it(rig: Rig, monkeypatch) -> None:
    """A group of clicks reads the notices outside its write's transaction: a retraction that
    commits in between (here: at the start of the write, every time) found the notice still sent
    at the read, and the acknowledgement was recorded on the retracted notice, after
    `notice.retracted` in the chain. The write checks again once it holds the chain head: that
    click is refused (and written nowhere), the group's other clicks are recorded."""
    from bot.core.compliance.verify import verify_chain

    first, second = await rig.broadcast("member:anna@acme.example"), await rig.broadcast("member:anna@acme.example")
    other = await rig.broadcast("member:bo@acme.example")
    await rig.herald.outbox.drain()
    store, retracting = acks._store, [first, second]

    async def retraction_commits_first(new):  # noqa: ANN001, ANN202
        if retracting:
            await retract_notice(retracting.pop(0), None, reason="wrong model", now=rig.clock.now(), operator="test")
        return await store(new)

    monkeypatch.setattr(acks, "_store", retraction_commits_first)
    with pytest.raises(UserError, match=f"Notice #{first} was retracted"):
        await _ack(rig, first, "UANNA")
    assert not await Acknowledgement.filter(notice_id=first).exists()
    assert not await AuditEvent.filter(notice_id=first, kind="notice.acknowledged").exists()

    # in one group with a click on another notice: that one is recorded, alone
    clicks = [acks._Click(n, "slack", TEAM, user, rig.clock.now(), contextvars.copy_context())
              for n, user in ((second, "UANNA"), (other, "UBO"))]
    refused, recorded = await acks._write_together(clicks)
    assert isinstance(refused, UserError) and f"Notice #{second} was retracted" in str(refused)
    assert isinstance(recorded, acks.AckResult) and recorded.newly_recorded
    assert await Acknowledgement.filter(notice_id=other).count() == 1
    assert not await Acknowledgement.filter(notice_id=second).exists()
    assert (await verify_chain()).ok


async def test_a_second_click_in_the_group_of_a_click_refused_as_retracted_is_refused_too(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same member presses twice in one group (a double click, or Slack and Teams at once) and
    the notice is retracted between the group's read and its write. The first click's new
    acknowledgement is refused ("retracted"); the second found that very acknowledgement as
    "already recorded" in the group and was answered as a success, for an acknowledgement never
    stored. Both are refused now."""
    notice_id = await rig.broadcast("member:anna@acme.example")
    await rig.herald.outbox.drain()
    store, retracting = acks._store, [notice_id]

    async def retraction_commits_first(new):  # noqa: ANN001, ANN202
        if retracting:
            await retract_notice(retracting.pop(0), None, reason="wrong model", now=rig.clock.now(), operator="test")
        return await store(new)

    monkeypatch.setattr(acks, "_store", retraction_commits_first)
    clicks = [acks._Click(notice_id, "slack", TEAM, "UANNA", rig.clock.now(), contextvars.copy_context())
              for _ in range(2)]
    outcomes = await acks._write_together(clicks)
    assert all(isinstance(o, UserError) and f"Notice #{notice_id} was retracted" in str(o) for o in outcomes), outcomes
    assert not await Acknowledgement.filter(notice_id=notice_id).exists()


async def test_failed_message_updates_are_retried(rig: Rig) -> None:
    notice_id = await rig.broadcast("member:anna@acme.example")
    await rig.herald.outbox.drain()
    rig.fake.fail_next("chat.update", status=500)
    await _ack(rig, notice_id, "UANNA")
    row = await Delivery.get(notice_id=notice_id)
    assert row.update_pending and "update pending" in row.error
    rig.clock.advance(minutes=2)
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    assert not row.update_pending and rig.fake.calls_to("chat.update")[-1].ok


def test_clock_type() -> None:
    assert isinstance(ManualClock().now(), datetime)
    assert CAM_USER == "UCAM1"


async def test_a_notice_can_carry_its_own_reminder_schedule(rig: Rig) -> None:
    from bot.core.commands.parser import parse_command

    rig.clock.set(MONDAY_9_UTC)
    command = parse_command("send must-know announcements member:anna@acme.example reminders:2,5 | Recall | Stop")
    preview = await notices.create_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await rig.herald.outbox.drain()
    for _ in range(8):
        rig.clock.advance(hours=1)
        await rig.herald.tick()
        await rig.herald.outbox.drain()
    sent = [r.delivered_at for r in await _reminders(preview.notice.id, "anna@acme.example")]
    assert [round((t - MONDAY_9_UTC).total_seconds() / 3600) for t in sent] == [2, 5]  # not the topic's 24 h
    with pytest.raises(UserError, match="only must-know notices have reminders"):
        await notices.create_draft(None, parse_command("send need-to-know announcements all reminders:2 | a | b"),
                                   rig.herald.catalog, now=rig.clock.now(), operator="test")


async def test_a_pause_is_part_of_the_report(rig: Rig) -> None:
    import json

    from bot.core.compliance.reports import report_chunks

    cam = await Staff.get(email="cam@vendor.example")
    await pause_organisation(cam, "acme", until=None, reason="site fire", now=rig.clock.now())
    notice_id = await rig.broadcast("tier:gold")
    await rig.herald.outbox.drain()
    document = json.loads("".join([c async for c in report_chunks(notice_id, "json", reader=None, now=rig.clock.now(), actor="t")]))
    acme = next(o for o in document["summary"]["organisations"] if o["organisation_id"] == "acme")
    assert acme["reminders_paused"]["reason"] == "site fire"
    keys = next(o for o in document["summary"]["organisations"] if o["organisation_id"] == "keys")
    assert "reminders_paused" not in keys
    csv_text = "".join([c async for c in report_chunks(notice_id, "csv", reader=None, now=rig.clock.now(), actor="t")])
    [acme_line] = [row[0] for row in csv.reader(io.StringIO(csv_text))
                   if row and row[0].startswith('# organisation: id="acme"')]
    assert 'reminders_paused_since=' in acme_line and 'reason="site fire"' in acme_line


async def test_the_report_records_a_pause_that_held_back_the_notices_reminders_after_it_was_resumed(
        slack_http: SlackHarness) -> None:
    """Acme is paused (flood at the depot) when a must-know recall goes out on Monday: its members get
    no reminders until the CAM resumes it on Thursday, while Bolt's do. The compliance officer pulls
    the report (HTTP reports API) after the deadline: Acme's entry must say its reminders were
    paused, and when, as it does while the pause lasts (reports.py: "reminders paused by the CAM:
    part of the record"; test_a_pause_is_part_of_the_report). Now the report reads only the
    organisation's current pause, so once resumed the pause is gone from every report of the
    notices it held back, and Acme's missing reminders have no explanation in the report."""
    from bot.core.compliance.api_tokens import create_token
    from bot.core.directory.staff import add_staff

    slack = slack_http
    slack.clock.set(MONDAY_9_UTC)
    assert "paused" in await slack.reply("pause acme flood at the depot")
    deadline = MONDAY_9_UTC + timedelta(days=7)
    notice_id = await _must_know(slack, "tier:gold,silver", deadline=deadline)
    await _hours(slack, 72)
    slack.clock.set(datetime(2026, 1, 8, 9, 0, tzinfo=UTC))
    assert "back on" in await slack.reply("resume acme")
    slack.clock.set(deadline + timedelta(hours=1))
    await slack.herald.tick()

    await add_staff("audit@vendor.example", "compliance", now=slack.clock.now(), actor="test")
    token = (await create_token("audit@vendor.example", now=slack.clock.now()))[1]
    url = str(slack.server.make_url(f"/api/v1/notices/{notice_id}/report?format=json"))
    async with slack.session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
        document = await response.json()
    acme = next(o for o in document["summary"]["organisations"] if o["organisation_id"] == "acme")
    assert "reminders_paused" in acme, (
        f"Acme's reminders were paused from 2026-01-05 to 2026-01-08 while this notice was out, "
        f"but its report entry says nothing of it: {acme}")
    assert acme["reminders_paused"] == {"since": "2026-01-05T09:00:00Z", "until": "2026-01-08T09:00:00Z",
                                        "reason": "flood at the depot"}
    bolt = next(o for o in document["summary"]["organisations"] if o["organisation_id"] == "bolt")
    assert "reminders_paused" not in bolt

    # a pause started after the deadline held nothing of this notice back: not on its report
    assert "paused" in await slack.reply("pause acme stocktake")
    async with slack.session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        later = await response.json()
    acme_later = next(o for o in later["summary"]["organisations"] if o["organisation_id"] == "acme")
    assert acme_later["reminders_paused"] == acme["reminders_paused"]


async def test_clicks_arriving_together_are_each_recorded_once(rig: Rig) -> None:
    """Clicks that arrive while a group is being written are written together (group commit):
    each member's first click records one acknowledgement and one audit event, a double click in
    the same group or a later one records nothing, and an outsider is refused alone."""
    import asyncio

    from bot.core.compliance.verify import verify_chain

    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    users = [r["account__user_id"] for r in await Delivery.filter(notice_id=notice_id, status="delivered",
                                                                   platform="slack").values("account__user_id")]
    assert len(users) >= 2
    clicks = [*users, users[0], "UOUTSIDER", *users]  # double clicks in the same group and after it

    async def click(user: str):  # noqa: ANN202
        try:
            return await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=user,
                                          now=rig.clock.now())
        except PermissionDenied as exc:
            return exc

    results = await asyncio.gather(*(click(u) for u in clicks))
    assert isinstance(results[len(users) + 1], PermissionDenied)
    answered = [r for r in results if not isinstance(r, Exception)]
    assert sum(r.newly_recorded for r in answered) == len(users)
    assert all([await acks.copies_of(r) for r in answered])
    assert await Acknowledgement.filter(notice_id=notice_id).count() == len(users)
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.acknowledged").count() == len(users)
    assert await Delivery.filter(notice_id=notice_id, update_pending=True).count() == len(users)
    again = await click(users[1])
    assert not again.newly_recorded and again.acknowledgement.member_id == again.member.id  # type: ignore[attr-defined]
    assert (await verify_chain()).ok


async def test_a_group_of_clicks_on_two_notices_settles_only_each_clicks_own_copies(rig: Rig) -> None:
    """One group, two notices, two members: each acknowledgement flags its own notice's copy to its
    own member for update, never the other notice's copy to the same member (the group's copies are
    settled by (notice, member) pairs in one statement on PostgreSQL)."""
    import asyncio

    first, second = await rig.broadcast("all"), await rig.broadcast("all")
    await rig.herald.outbox.drain()
    users = [r["account__user_id"] for r in await Delivery.filter(notice_id=first, status="delivered",
                                                                   platform="slack").order_by("id").values("account__user_id")]
    pressed = {(first, users[0]), (second, users[1])}
    await asyncio.gather(*(acks.acknowledge(n, platform="slack", workspace_id=TEAM, user_id=u, now=rig.clock.now())
                           for n, u in pressed))
    flagged = {(r["notice_id"], r["account__user_id"]) for r in await Delivery.filter(
        notice_id__in=[first, second], update_pending=True).values("notice_id", "account__user_id")}
    assert flagged == pressed
    assert {(a.notice_id, a.member_id) for a in await Acknowledgement.all()} == {  # type: ignore[attr-defined]
        (r["notice_id"], r["member_id"]) for r in await Delivery.filter(update_pending=True).values("notice_id", "member_id")}


async def test_a_click_is_matched_by_the_pressers_exact_account(rig: Rig) -> None:
    """The presser is found by platform, workspace and user id together: the same user id in
    another workspace is not them. A copy counts for the member it was delivered to, even when its
    account has since moved to another member (a directory merge)."""
    from storage.models import Member, PlatformAccount

    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    first, second = await Delivery.filter(notice_id=notice_id, status="delivered", platform="slack").order_by("id") \
        .limit(2).prefetch_related("account")
    with pytest.raises(PermissionDenied):
        await acks.acknowledge(notice_id, platform="slack", workspace_id="TELSEWHERE", user_id=first.account.user_id,
                               now=rig.clock.now())
    source = await Member.get(id=second.member_id)  # type: ignore[attr-defined]
    merged = await Member.create(organisation_id=source.organisation_id, email="merged@partner.example",  # type: ignore[attr-defined]
                                 name="Merged", role="operations", timezone="Europe/Berlin")
    await PlatformAccount.filter(id=second.account.id).update(member_id=merged.id)
    result = await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=second.account.user_id,
                                    now=rig.clock.now())
    assert result.newly_recorded and result.member.id == second.member_id  # type: ignore[attr-defined]
    assert result.acknowledgement.delivery_id == second.id  # type: ignore[attr-defined]
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1


async def test_deliveries_and_acknowledgements_record_the_members_organisation(rig: Rig) -> None:
    """The console's per-organisation counts read it from the rows (migration 0010)."""
    notice_id = await rig.broadcast(importance="must-know")
    await rig.herald.outbox.drain()
    await _ack(rig, notice_id, "UANNA")
    rows = await Delivery.filter(notice_id=notice_id, kind="notice").values_list(
        "organisation_id", "member__organisation_id")
    assert len(rows) == 5 and all(mine == theirs and mine is not None for mine, theirs in rows)
    [ack] = await Acknowledgement.filter(notice_id=notice_id).values_list("organisation_id", "member__organisation_id")
    assert ack[0] == ack[1] is not None


async def test_paired_reads_raise_the_first_error_and_leave_none_unretrieved() -> None:
    """A group's reads run two at a time: when both fail (the database closing under them), the
    caller gets the first error and the second is not left to be logged as a stray traceback."""
    import asyncio
    import gc

    loop = asyncio.get_running_loop()
    unretrieved: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))

    async def fails(message: str, turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        raise RuntimeError(message)

    async def pair() -> None:
        await acks._together(fails("first", 0), fails("second", 2))

    try:
        with pytest.raises(RuntimeError, match="first"):
            await pair()
        for _ in range(5):
            await asyncio.sleep(0)
        gc.collect()
        assert unretrieved == []
        assert await acks._together(asyncio.sleep(0, "a"), asyncio.sleep(0, "b")) == ("a", "b")
    finally:
        loop.set_exception_handler(None)


async def test_resuming_a_timed_pause_early_brings_its_reminders_back(rig: Rig) -> None:
    """The planner puts reminders due during a pause off to its end; resumed early, they are due again."""
    monday = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    rig.clock.set(monday)
    cam = await Staff.get(email="cam@vendor.example")
    await pause_organisation(cam, "acme", until=monday + timedelta(days=14), reason="site fire", now=rig.clock.now())
    notice_id = await rig.broadcast("member:anna@acme.example", deadline=monday + timedelta(days=10))
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=25)
    await rig.herald.tick()  # the first reminder is due while Acme is paused: put off to the pause's end
    assert (await Delivery.get(notice_id=notice_id, kind="notice")).next_reminder_at == monday + timedelta(days=14)

    rig.clock.set(monday + timedelta(days=2))
    await resume_organisation(cam, "acme", now=rig.clock.now())
    await rig.herald.tick()
    await rig.herald.outbox.drain()

    assert await Delivery.filter(notice_id=notice_id, kind="reminder").count() == 1




async def _must_know(slack: SlackHarness, audience: str, *, deadline: datetime | None = None,
                     title: str = "Recall LX-200") -> int:
    command = SendCommand(importance="must-know", topic="operations", audience=audience, title=title,
                          body="Stop selling LX-200", deadline=deadline)
    preview = await notices.create_draft(None, command, slack.herald.catalog, now=slack.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, slack.herald.catalog, now=slack.clock.now(), operator="test")
    await slack.herald.outbox.drain()
    return preview.notice.id


async def _hours(slack: SlackHarness, hours: int) -> None:
    """Let `hours` hours pass, the scheduler ticking every hour and the outbox sending what is due."""
    for _ in range(hours):
        slack.clock.advance(hours=1)
        await slack.herald.tick()
        await slack.herald.outbox.drain()


@pytest.mark.parametrize("then", ["runs out", "resumed"])
async def test_reminders_parked_by_an_open_ended_pause_come_back_after_the_cam_gives_it_an_end(
        slack_http: SlackHarness, then: str) -> None:
    """A CAM pauses Acme until resumed (`pause acme site fire`); Anna's must-know reminder falls
    due and is parked (`reminder.ended`, "they resume with it"). The CAM then gives the pause an end
    date (`pause acme until 2026-01-09 ...`). When that pause runs out, or the CAM resumes Acme,
    Anna's reminders must come back (README: "paused until resumed, ended (`reminder.ended`) and
    resumed with it"). Now they never do: `resume_organisation` only brings back parked reminders
    when the *current* pause has no end date, and a pause that runs out brings back nothing, so the
    unacknowledged must-know notice is never reminded again."""
    slack = slack_http
    slack.clock.set(MONDAY_9_UTC)
    assert "paused" in await slack.reply("pause acme site fire")
    notice_id = await _must_know(slack, "member:anna@acme.example")
    original = await Delivery.get(notice_id=notice_id, kind="notice")
    slack.clock.set(original.next_reminder_at)
    await slack.herald.tick()
    assert (await AuditEvent.filter(kind="reminder.ended").count()) == 1  # parked, to resume with the pause

    slack.clock.advance(hours=1)
    assert "paused until" in await slack.reply("pause acme until 2026-01-09 clean-up continues")
    if then == "resumed":
        slack.clock.set(datetime(2026, 1, 8, 9, 0, tzinfo=UTC))  # Thursday, 10:00 in Berlin
        assert "back on" in await slack.reply("resume acme")
    else:
        slack.clock.set(datetime(2026, 1, 12, 8, 0, tzinfo=UTC))  # the Monday after the pause ran out
    await _hours(slack, 24)

    reminders = await Delivery.filter(notice_id=notice_id, kind="reminder").count()
    resumed = await AuditEvent.filter(kind="reminder.resumed").count()
    assert reminders >= 1, (
        f"the pause {then}, but Anna's parked reminders never came back: {reminders} reminders, "
        f"{resumed} reminder.resumed events, next_reminder_at="
        f"{(await Delivery.get(id=original.id)).next_reminder_at}")


async def test_reminders_put_off_by_a_pause_follow_it_when_the_cam_shortens_it(slack_http: SlackHarness) -> None:
    """Acme is paused until 16 January; a must-know recall (deadline 14 January) goes out, and the
    planner puts Anna's and Bo's reminders off to the pause's end (16 January). On Tuesday the CAM
    shortens the pause (`pause acme until 2026-01-07 ...`). From Wednesday Acme is not paused, so
    its members must be reminded before the deadline. Now no reminder ever reaches them: their
    reminders stay put off to the first pause's end, which is after the deadline (re-pausing re-times
    nothing, and `resume` would only bring back rows put off to the *current* pause's end)."""
    slack = slack_http
    slack.clock.set(MONDAY_9_UTC)
    assert "paused until" in await slack.reply("pause acme until 2026-01-16 flood at the depot")
    deadline = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)
    notice_id = await _must_know(slack, "org:acme", deadline=deadline)
    await _hours(slack, 12)  # the first reminders (8 h) fall due during the pause: put off to its end
    assert "paused until" in await slack.reply("pause acme until 2026-01-07 water is gone, back soon")

    slack.clock.set(datetime(2026, 1, 7, 6, 0, tzinfo=UTC))
    await _hours(slack, 24 * 6)  # Wednesday to the deadline's eve: working days, Acme not paused
    reminders = await Delivery.filter(notice_id=notice_id, kind="reminder").count()
    parked = await Delivery.filter(notice_id=notice_id, kind="notice").values_list("next_reminder_at", flat=True)
    assert reminders >= 2, (
        f"the pause ended on 2026-01-07, yet Acme's members got {reminders} reminders before the deadline "
        f"on 2026-01-14; their next reminders are still set to {sorted({str(p) for p in parked})}")


async def test_a_pause_that_ran_out_is_not_reported_as_current(slack_http: SlackHarness) -> None:
    """Acme was paused until Tuesday 00:00 UTC; its members were reminded as usual from then on.
    At the deadline on Thursday the CAM's escalation still says "Automated reminders for Acme Locks
    are paused: stocktake", and `status` says "Reminders paused for: Acme Locks": both read
    `paused_at` only, not whether the pause has run out (reminders.is_paused does), so the CAM is
    told something false about why members have not acknowledged."""
    slack = slack_http
    slack.clock.set(MONDAY_9_UTC)
    assert "paused until" in await slack.reply("pause acme until 2026-01-06 stocktake")
    deadline = MONDAY_9_UTC + timedelta(days=3)
    notice_id = await _must_know(slack, "org:acme", deadline=deadline)
    await _hours(slack, 72)  # reminders go out on Tuesday and Wednesday: the pause is over
    assert await Delivery.filter(notice_id=notice_id, kind="reminder", status="delivered").count() >= 2

    await slack.herald.outbox.drain()
    escalations = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUCAM1" and c.ok
                   and "Acme Locks" in str(c.args.get("blocks"))]
    assert escalations, "no escalation reached the CAM"
    text = str(escalations[-1].args["blocks"])
    status = await slack.reply(f"status {notice_id}")
    assert "are paused" not in text and "Reminders paused for" not in status, (
        f"a pause that ended on 2026-01-06 is reported as current on {slack.clock.now():%Y-%m-%d}:\n"
        f"escalation: {text[text.find('Automated'):][:90]!r}\nstatus: {status!r}")


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)  # SQLite reads a report page by page
async def test_a_report_is_the_trail_as_of_the_head_it_names(rig: Rig) -> None:
    """A click that lands while a slow client is still downloading the report is in neither its
    summary nor its rows, and after its head (PostgreSQL reads the report in one snapshot; on
    SQLite a snapshot held for a whole download would stop its one connection)."""
    from bot.core.compliance.reports import report_chunks

    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    chunks = report_chunks(notice_id, "csv", reader=None, now=rig.clock.now(), actor="t", page_size=1)
    first = await anext(chunks)  # what the client has received so far
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UDI", now=rig.clock.now())
    text = first + "".join([c async for c in chunks])

    rows = list(csv.reader(io.StringIO(text)))
    meta = dict(row[0][2:].split(": ", 1) for row in rows if len(row) == 1 and row[0].startswith("# "))
    table = [row for row in rows if not (len(row) == 1 and row[0].startswith("# "))]
    acknowledged_at = table[0].index("acknowledged_at")
    assert [r for r in table[1:] if r[acknowledged_at]] == [] and meta["acknowledged"] == "0"
    event = await AuditEvent.get(kind="notice.acknowledged", notice_id=notice_id)
    assert event.seq > int(meta["audit_chain_head_seq"])


async def test_a_click_that_races_a_material_edit_leaves_the_new_revisions_reminders(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The click read revision 1; the CAM's material edit (revision 2) commits before the click is
    written. The click counts for revision 1; Anna still owes revision 2 and keeps its reminders."""
    from bot.core.notices import revisions

    notice_id = await rig.broadcast("member:anna@acme.example", deadline=rig.clock.now() + timedelta(days=10))
    await rig.herald.outbox.drain()
    store = acks._store

    async def edit_then_store(new):  # noqa: ANN001, ANN202
        await revisions.edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(),
                                    body="Stop selling LX-200 and LX-210", material=True, operator="test")
        return await store(new)

    monkeypatch.setattr(acks, "_store", edit_then_store)
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())

    assert (await Notice.get(id=notice_id)).ack_revision == 2
    assert await Acknowledgement.filter(notice_id=notice_id).values_list("revision", flat=True) == [1]
    assert (await Delivery.get(notice_id=notice_id, kind="notice")).next_reminder_at is not None


async def test_a_member_with_copies_on_both_platforms_counts_once(rig: Rig) -> None:
    """HERALD_PLATFORM_POLICY=all: Anna gets a Slack and a Teams copy. The report counts members:
    one recipient, delivered if any copy was, failed only if every copy failed."""
    from bot.core.commands.parser import SendCommand
    from bot.core.compliance.reports import notice_summary
    from storage.models import Member, PlatformAccount

    anna = await Member.get(email="anna@acme.example")
    await PlatformAccount.create(member=anna, platform="teams", workspace_external_id="tenant-1", user_id="aad-anna",
                                 dm_channel="a:conv", service_url="http://127.0.0.1:9/")
    preview = await notices.create_draft(None, SendCommand(
        importance="must-know", topic="announcements", audience="org:acme", title="Recall", body="Stop"),
        rig.herald.catalog, now=rig.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                             platform_policy="all")
    notice_id = preview.notice.id
    assert await Delivery.filter(notice_id=notice_id, member=anna).count() == 2
    await Delivery.filter(notice_id=notice_id, platform="slack").update(status="delivered", delivered_at=rig.clock.now())
    await Delivery.filter(notice_id=notice_id, platform="teams").update(status="failed", error="blocked")
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())

    summary = await notice_summary(notice_id)
    # Anna (Slack delivered, Teams failed) and Bo (Slack delivered): two members, both delivered
    assert {k: summary[k] for k in ("recipients", "delivered", "failed", "acknowledged", "rate")} == {
        "recipients": 2, "delivered": 2, "failed": 0, "acknowledged": 1, "rate": 0.5}
    # the console's funnel (its live refresh and the notices list) counts the same way
    from bot.core.insights.notices import NoticeFilters, list_notices, live_counts

    live = await live_counts(await Notice.get(id=notice_id))
    assert {k: live[k] for k in ("recipients", "delivered", "failed", "acknowledged")} == {
        "recipients": 2, "delivered": 2, "failed": 0, "acknowledged": 1}
    admin, _ = await add_staff("admin@vendor.example", "admin", now=rig.clock.now(), actor="test")
    [listed] = [r for r in (await list_notices(admin, NoticeFilters())).rows if r.notice.id == notice_id]
    assert (listed.recipients, listed.delivered, listed.failed, listed.acknowledged) == (2, 2, 0, 1)
    # and the summary of many notices (`herald report --since`)
    from bot.core.compliance.reports import summary_report

    [summed] = [n for n in await summary_report(since=rig.clock.now() - timedelta(days=1),
                                                until=rig.clock.now() + timedelta(days=1)) if n["id"] == notice_id]
    assert {k: summed[k] for k in ("recipients", "delivered", "failed", "acknowledged", "rate")} == {
        "recipients": 2, "delivered": 2, "failed": 0, "acknowledged": 1, "rate": 0.5}


async def test_a_member_in_two_slack_workspaces_gets_one_copy_per_platform(rig: Rig) -> None:
    """HERALD_PLATFORM_POLICY=all: Anna is in two Slack workspaces and on Teams. Each of her accounts
    got a row, two of them Slack ones, against the outbox's key (notice, member, platform, kind,
    sequence): the insert failed and nobody got the notice. Now one copy per platform, on the
    account reach.choose_account picks there (a workspace Herald was removed from comes last)."""
    from bot.core.commands.parser import SendCommand
    from storage.models import Member, PlatformAccount, Workspace

    anna = await Member.get(email="anna@acme.example")
    other = await PlatformAccount.create(member=anna, platform="slack", workspace_external_id="T-OTHER",
                                         user_id="UANNA2")
    await PlatformAccount.create(member=anna, platform="teams", workspace_external_id="tenant-1", user_id="aad-anna",
                                 dm_channel="a:conv", service_url="http://127.0.0.1:9/")

    async def send() -> dict[str, list[str]]:
        preview = await notices.create_draft(None, SendCommand(
            importance="must-know", topic="announcements", audience="org:acme", title="Recall", body="Stop"),
            rig.herald.catalog, now=rig.clock.now(), operator="test")
        await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                                 platform_policy="all")
        copies: dict[str, list[str]] = {}
        for row in await Delivery.filter(notice_id=preview.notice.id).order_by("id").values(
                "member__email", "platform", "workspace_external_id"):
            copies.setdefault(row["member__email"], []).append(f"{row['platform']}:{row['workspace_external_id']}")
        return copies

    assert await send() == {"anna@acme.example": [f"slack:{TEAM}", "teams:tenant-1"], "bo@acme.example": [f"slack:{TEAM}"]}
    await Workspace.filter(platform="slack", external_id=TEAM).update(active=False)  # Herald removed from it
    assert (await send())["anna@acme.example"] == [f"slack:{other.workspace_external_id}", "teams:tenant-1"]


async def test_the_previews_count_is_the_number_queued_when_members_left_the_topic(rig: Rig) -> None:
    """Anna left `incentives`: a need-to-know incentives notice to all previews the members it reaches."""
    from bot.core.commands.parser import SendCommand
    from bot.core.directory.preferences import update_preferences
    from storage.models import Member

    anna = await Member.get(email="anna@acme.example")
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), subscriptions={"incentives": False})
    command = SendCommand(importance="need-to-know", topic="incentives", audience="all", title="t", body="b")
    preview = await notices.create_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    result = await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(),
                                      operator="test")

    queued = await Delivery.filter(notice_id=preview.notice.id).values_list("member_id", flat=True)
    assert preview.recipients == result.recipients == len(set(queued)) and anna.id not in queued


# ---- reminders at scale ----------------------------------------------------------------------------

async def _due_first_reminders(n: int, *, acknowledged_every: int = 0) -> tuple[int, datetime, list[int]]:
    """A must-know notice delivered on Monday 10:00 UTC to `n` new members, each first reminder due
    24 h later; every `acknowledged_every`-th member has acknowledged. Returns (notice id, the
    moment the reminders are due, member ids)."""
    sent = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    ids = await bulk_members(n, joined_at=sent - timedelta(days=400))
    notice = await Notice.create(topic="announcements", importance="must-know", title="At scale", body="b",
                                 audience="all", status="sent", recipient_count=n, created_at=sent, sent_at=sent,
                                 deadline=sent + timedelta(days=5))
    due = sent + timedelta(hours=24)
    accounts = dict(await PlatformAccount.filter(member_id__in=ids).values_list("member_id", "id"))
    await Delivery.bulk_create([
        Delivery(notice_id=notice.id, member_id=m, platform="slack", status="delivered", next_attempt_at=sent,
                 created_at=sent, delivered_at=sent, next_reminder_at=due, workspace_external_id=TEAM,
                 account_id=accounts[m]) for m in ids], batch_size=500)
    if acknowledged_every:
        await Acknowledgement.bulk_create([
            Acknowledgement(notice_id=notice.id, member_id=m, platform="slack", revision=1, acknowledged_at=sent)
            for i, m in enumerate(ids) if i % acknowledged_every == 0], batch_size=500)
    return notice.id, due, ids


async def test_one_tick_plans_every_reminder_that_is_due(rig: Rig) -> None:
    """A must-know notice delivered to N members within minutes has N first reminders due 24 h
    later within the same minutes. `plan_reminders` took 500 a tick (60 s), each with its own
    acknowledgement query, conditional update and insert, each in its own transaction: a
    100,000-recipient notice's unacknowledged 40 % were planned over 80 minutes
    (bench/periodic_scale.py). It now plans batch after batch while the tick's time budget lasts,
    each batch one read of acknowledgements, one update and one insert. README: reminders "24 h
    and 72 h after delivery"."""
    n = 1000
    _, due, _ = await _due_first_reminders(n)

    planned = await plan_reminders(due + timedelta(minutes=1), rig.herald.catalog)

    assert planned == n, f"one tick planned {planned} of {n} reminders that were due"


async def test_a_tick_whose_time_budget_is_used_plans_one_batch_and_leaves_the_rest_due(rig: Rig) -> None:
    """With the tick's time budget used up a run still plans one batch; the rest stay due for the
    next tick. Members who acknowledged get no reminder and are not due again."""
    notice_id, due, ids = await _due_first_reminders(10, acknowledged_every=3)  # 4 of 10 acknowledged
    now = due + timedelta(minutes=1)

    first = await plan_reminders(now, rig.herald.catalog, batch=4, budget=TimeBudget(0, monotonic=lambda: 0.0))
    still_due = await Delivery.filter(notice_id=notice_id, kind="notice", next_reminder_at__lte=now).count()
    rest = await plan_reminders(now, rig.herald.catalog, batch=4, budget=TimeBudget(60, monotonic=lambda: 0.0))

    acked = {m for i, m in enumerate(ids) if i % 3 == 0}
    assert still_due == 6 and first + rest == 6
    reminded = await Delivery.filter(notice_id=notice_id, kind="reminder").values_list("member_id", "sequence")
    assert sorted(reminded) == [(m, 1) for m in ids if m not in acked]
    assert await Delivery.filter(notice_id=notice_id, kind="notice", next_reminder_at__lte=now).count() == 0


async def test_replicas_planning_the_same_reminders_at_once_create_each_once(rig: Rig) -> None:
    """Three replicas plan the same due reminders at the same moment, in batches: every reminder is
    created once, and each original counts one reminder."""
    notice_id, due, ids = await _due_first_reminders(120)
    now = due + timedelta(minutes=1)

    planned = await asyncio.gather(*(plan_reminders(now, rig.herald.catalog, batch=25) for _ in range(3)))

    assert sum(planned) == len(ids)
    reminded = await Delivery.filter(notice_id=notice_id, kind="reminder").values_list("member_id", flat=True)
    assert sorted(reminded) == ids
    assert set(await Delivery.filter(notice_id=notice_id, kind="notice").values_list("reminders_sent", flat=True)) == {1}


# ---- escalation reads at scale -----------------------------------------------------------------

async def test_unacknowledged_members_are_listed_once_per_organisation_and_read_for_one_alone(rig: Rig) -> None:
    """A member with a Slack and a Teams copy is listed once (the check was a `not in` a list:
    quadratic in the organisation's size, 4.8 s for 8,000 members in bench/periodic_scale.py);
    Remind now reads its one organisation in SQL, not the whole notice, and finds the same."""
    rig.clock.set(MONDAY_9_UTC)
    ids = await bulk_members(30, joined_at=MONDAY_9_UTC - timedelta(days=400), org_external_id="twice")
    org = await Organisation.get(external_id="twice")
    notice_id = await rig.broadcast("all", deadline=MONDAY_9_UTC + timedelta(days=2))
    notice = await Notice.get(id=notice_id)
    await Delivery.bulk_create([  # the same members on Teams as well
        Delivery(notice_id=notice_id, member_id=m, platform="teams", status="delivered", next_attempt_at=MONDAY_9_UTC,
                 created_at=MONDAY_9_UTC, delivered_at=MONDAY_9_UTC) for m in ids])
    await Acknowledgement.create(notice_id=notice_id, member_id=ids[0], platform="teams", revision=1,
                                 acknowledged_at=MONDAY_9_UTC)

    everyone = await unacknowledged_by_organisation(notice)
    alone = await unacknowledged_by_organisation(notice, organisation_id=org.id)

    assert sorted(everyone[org.id]) == ids[1:]
    assert alone == {org.id: everyone[org.id]}
    assert len(everyone) > 1  # the seeded partners too


async def test_an_escalation_for_a_partner_beyond_the_query_argument_limit_lists_40_and_counts_them_all(
        rig: Rig) -> None:
    """A partner with more unacknowledged members than asyncpg passes query arguments (32,767):
    the escalation DM loaded every one of them by an `id IN (...)` list to name 40, and failed on
    PostgreSQL. It now reads the 40 it names and counts the rest, with the ids as one parameter."""
    rig.clock.set(MONDAY_9_UTC)
    ids = await bulk_members(33_000, joined_at=MONDAY_9_UTC - timedelta(days=400), org_external_id="huge",
                             platform_account=False)
    org = await Organisation.get(external_id="huge")
    notice = await Notice.create(topic="announcements", importance="must-know", title="Recall", body="b",
                                 audience="org:huge", status="sent", recipient_count=len(ids),
                                 created_at=MONDAY_9_UTC, sent_at=MONDAY_9_UTC, deadline=MONDAY_9_UTC)
    row = await Escalation.create(notice=notice, organisation=org, member_ids=ids, created_at=MONDAY_9_UTC)
    row = await Escalation.get(id=row.id).select_related("notice", "organisation")

    message = await escalation_message(row, now=MONDAY_9_UTC)

    listed = [line for line in message.lines if line.startswith("• ")]
    assert "33000 members have not acknowledged it:" in message.lines[1]
    assert listed[0] == "• Member 00000 <m00000@bulk.example> (sales)" and len(listed) == 40
    assert message.lines[-1] == "… and 32960 more (see the report)."


async def test_the_ticks_sweep_for_escalations_to_send_reads_an_index_not_every_escalation_ever(db: str) -> None:
    """Every tick, on every replica, `send_escalations` looks for rows to send (pending with the
    claim free or expired, or sending with an expired claim) `.order_by("id").limit(50)`.
    escalation keeps one row per must-know notice per partner whose deadline passed, forever.
    With no index on status, the sweep read every escalation of the year every minute, though
    normally there is nothing to send; it now reads the index on (status, claimed_until)."""
    now = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
    indexed, seen = await uses_an_index_on(due_escalations(now, 50), "status")
    assert indexed, f"the tick's escalation sweep reads every escalation row ever written (no index on status): {seen}"
