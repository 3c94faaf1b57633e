"""A notice changes while one of its copies is on the wire: edited, retracted, acknowledged.

Each test drives the outbox's own steps (claim, send to the fake Slack API, record) and makes the
change at the await point where it races them, then lets the outbox drain and looks at what the
member's DM shows. The change must reach every copy, and nothing must be sent after it that it
was meant to stop."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tortoise import connections

from bot.core.commands.parser import parse_command
from bot.core.delivery.outbox import Job
from bot.core.notices import acks, sending
from bot.core.notices.reminders import remind_now
from bot.core.notices.revisions import edit_notice, retract_notice
from bot.core.ports import Outcome
from bot.core.surveys.answers import close_survey
from bot.core.surveys.creating import create_survey_draft
from storage import db as storage_db
from storage.models import AuditEvent, Delivery, DeliveryStatus, Notice
from tests.support import TEAM, Rig

LANE = ("slack", TEAM)


async def _claim_one(rig: Rig, token: str = "w:turn") -> Job:
    source, now = rig.herald.outbox.notices, rig.clock.now()
    await source.due_lanes(now)
    [job] = await source.claim(LANE, 1, token, now, now + timedelta(seconds=60))
    return job


async def _finish(rig: Rig, job: Job, outcome: Outcome | None = None) -> None:
    """The claimed job's request returns (with `outcome`, else as the fake answers it) and is recorded."""
    source = rig.herald.outbox.notices
    if outcome is None:
        outcome = await source.send(job, rig.herald.channels["slack"])
    await source.record([(job, outcome)], rig.clock.now())


async def _drain_later(rig: Rig) -> None:
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()


def _texts(rig: Rig, method: str) -> list[str]:
    return [c.args.get("text") or "" for c in rig.fake.calls_to(method)]


@pytest.mark.parametrize("outcome", [Outcome.retry("HTTP 500"), Outcome.deferred(5)], ids=["retry", "deferred"])
async def test_a_copy_in_flight_when_its_notice_is_retracted_is_not_sent_after_it(rig: Rig, outcome: Outcome) -> None:
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    job = await _claim_one(rig)
    await retract_notice(notice_id, None, reason="wrong product", now=rig.clock.now(), operator="test")
    await _finish(rig, job, outcome)  # the attempt did not land (or was never made)

    await _drain_later(rig)

    assert rig.fake.calls_to("chat.postMessage") == []
    row = await Delivery.get(id=job.row.id)
    assert (row.status, row.error) == (DeliveryStatus.CANCELLED.value, "retracted before it was sent")
    [event] = await AuditEvent.filter(kind="delivery.cancelled")
    assert (event.notice_id, event.data["delivery_id"], event.data["reason"]) == (
        notice_id, row.id, "retracted before it was sent")


async def test_a_retraction_during_an_edits_update_reaches_the_message(rig: Rig) -> None:
    notice_id = await rig.broadcast(audience="member:anna@acme.example", importance="need-to-know")
    await rig.herald.outbox.drain()
    await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test", body="LX-300")
    update = await _claim_one(rig)
    assert update.update
    await retract_notice(notice_id, None, reason="wrong product", now=rig.clock.now(), operator="test")
    await _finish(rig, update)  # the edit's chat.update lands after the retraction was stored

    await _drain_later(rig)

    assert "Retracted" in _texts(rig, "chat.update")[-1]
    assert not (await Delivery.get(id=update.row.id)).update_pending


async def test_an_edit_during_an_edits_update_reaches_the_message(rig: Rig) -> None:
    notice_id = await rig.broadcast(audience="member:anna@acme.example", importance="need-to-know")
    await rig.herald.outbox.drain()
    await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test", body="LX-300")
    update = await _claim_one(rig)
    await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test", body="LX-400")
    await _finish(rig, update)

    await _drain_later(rig)

    updated = rig.fake.calls_to("chat.update")
    assert len(updated) == 2 and "LX-400" in str(updated[-1].args)
    row, notice = await Delivery.get(id=update.row.id), await Notice.get(id=notice_id)
    assert (row.rendered_revision, row.update_pending) == (notice.revision, False)


async def _acknowledged_while_a_reminder_is_claimed(rig: Rig) -> tuple[Delivery, Job]:
    """Anna's notice delivered, a reminder claimed (on the wire), then Anna acknowledges."""
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    original = await Delivery.get(notice_id=notice_id)
    await remind_now(await Notice.get(id=notice_id), [original.member_id], now=rig.clock.now())
    reminder = await _claim_one(rig)
    assert reminder.row.kind == "reminder"
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
    return original, reminder


async def test_an_acknowledgement_while_a_reminder_is_in_flight_updates_the_reminder(rig: Rig) -> None:
    original, reminder = await _acknowledged_while_a_reminder_is_claimed(rig)
    await _finish(rig, reminder)  # the reminder lands, with its Acknowledge button

    await _drain_later(rig)

    sent = await Delivery.get(id=reminder.row.id)
    assert sent.status == DeliveryStatus.DELIVERED.value
    assert {c.args.get("ts") for c in rig.fake.calls_to("chat.update")} == {original.message_id, sent.message_id}


async def test_a_reminder_in_flight_when_the_member_acknowledges_is_not_sent_after_it(rig: Rig) -> None:
    _, reminder = await _acknowledged_while_a_reminder_is_claimed(rig)
    await _finish(rig, reminder, Outcome.retry("HTTP 503"))

    await _drain_later(rig)

    assert len(rig.fake.calls_to("chat.postMessage")) == 1  # the original only
    row = await Delivery.get(id=reminder.row.id)
    assert (row.status, row.error) == (DeliveryStatus.CANCELLED.value, "acknowledged before it was sent")


async def test_a_copy_sent_as_its_notice_was_edited_unseen_is_updated(rig: Rig) -> None:
    """The edit's flag misses a copy whose claim read the notice before the edit and marked it in
    flight after (see the next test): here the edit is written without the flag, on either database."""
    notice_id = await rig.broadcast(audience="member:anna@acme.example", importance="need-to-know")
    job = await _claim_one(rig)
    await connections.get("default").execute_query(
        storage_db.placeholders("UPDATE notice SET revision=revision+1, body=? WHERE id=?"), ["LX-300", notice_id])
    await _finish(rig, job)
    assert "LX-300" not in str(rig.fake.calls_to("chat.postMessage")[0].args)

    await _drain_later(rig)

    assert "LX-300" in str(rig.fake.calls_to("chat.update")[-1].args)
    row = await Delivery.get(id=job.row.id)
    assert (row.rendered_revision, row.update_pending) == ((await Notice.get(id=notice_id)).revision, False)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL claims in one statement
async def test_an_edit_between_the_claims_read_and_its_mark_reaches_the_copy(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite claims in two statements (read, then mark in flight); the edit commits between them,
    while the copy is still pending and so is not flagged by it. (Either database: the previous test.)"""
    notice_id = await rig.broadcast(audience="org:acme")
    await _claim_one(rig, "w:first")  # the notice's view is cached from here on
    client = type(connections.get("default"))
    read = client.execute_query_dict
    edited = False

    async def edit_after_the_read(self, query, values=None):  # noqa: ANN001, ANN202
        nonlocal edited
        rows = await read(self, query, values)
        if not edited and query.startswith("SELECT") and "prior_status" in query:
            edited = True
            await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                              body="LX-300")
        return rows

    monkeypatch.setattr(client, "execute_query_dict", edit_after_the_read)
    second = await _claim_one(rig, "w:second")
    monkeypatch.setattr(client, "execute_query_dict", read)
    assert edited and "LX-300" not in second.view.body
    await _finish(rig, second)

    await _drain_later(rig)

    row, notice = await Delivery.get(id=second.row.id), await Notice.get(id=notice_id)
    assert (row.rendered_revision, row.update_pending) == (notice.revision, False)
    assert any(c.args.get("ts") == row.message_id and "LX-300" in str(c.args) for c in rig.fake.calls_to("chat.update"))


async def test_a_survey_closed_while_a_copy_is_in_flight_takes_its_buttons_away(rig: Rig) -> None:
    command = parse_command("survey announcements member:anna@acme.example | Ready for Q1? | Yes | No")
    preview = await create_survey_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await sending.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    job = await _claim_one(rig)
    await close_survey(preview.notice.id, None, now=rig.clock.now(), operator="test")
    await _finish(rig, job)  # the copy lands with its answer buttons

    await _drain_later(rig)

    [update] = rig.fake.calls_to("chat.update")
    row = await Delivery.get(id=job.row.id)
    assert update.args.get("ts") == row.message_id and not row.update_pending
    assert "Yes" not in str(update.args.get("blocks"))  # no answer buttons on a closed survey


@pytest.mark.parametrize("outcome", [Outcome.retry("HTTP 500"), Outcome.deferred(5)], ids=["retry", "deferred"])
async def test_a_copy_in_flight_when_its_survey_closes_is_not_sent_after_it(rig: Rig, outcome: Outcome) -> None:
    command = parse_command("survey announcements member:anna@acme.example | Ready for Q1? | Yes | No")
    preview = await create_survey_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await sending.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    job = await _claim_one(rig)
    await close_survey(preview.notice.id, None, now=rig.clock.now(), operator="test")
    await _finish(rig, job, outcome)  # the attempt did not land (or was never made)

    await _drain_later(rig)

    assert rig.fake.calls_to("chat.postMessage") == []
    row = await Delivery.get(id=job.row.id)
    assert (row.status, row.error) == (DeliveryStatus.CANCELLED.value, "the survey closed before it was sent")
    [event] = await AuditEvent.filter(kind="delivery.cancelled")
    assert (event.notice_id, event.data["delivery_id"], event.data["reason"]) == (
        preview.notice.id, row.id, "the survey closed before it was sent")
