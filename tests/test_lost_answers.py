"""A send whose answer is lost after Slack may have posted it is not posted twice.

A timeout, a dropped connection or a gateway's 504 lose the answer whatever happened. Such a retry
is in doubt: it looks for the earlier message (by the delivery id in its metadata) before posting
again, as after a crash. The fake Slack API posts the message and then answers with the fault
(`landed=True`), or closes the connection (`drop=True`). A fast error (500 `internal_error`, a 503
page) is taken as not posted: see `_classify` in bot/channels/slack.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core.commands.parser import parse_command
from bot.core.notices import sending
from bot.core.notices.revisions import retract_notice
from bot.core.surveys.answers import close_survey
from bot.core.notices.views import ACK_ACTION
from bot.core.surveys.creating import create_survey_draft
from storage.models import Acknowledgement, AuditEvent, Delivery, DeliveryStatus
from tests.fakes.slack_limits import SlackLimits
from tests.support import TEAM, Rig, SlackHarness, broadcast, listeners_done, updates_pushed, wait_until

DM = "DUANNA"


async def _send_twice(rig: Rig) -> Delivery:
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()  # the first attempt, whose answer is lost
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()  # the retry
    return await Delivery.get(notice_id=notice_id)


@pytest.mark.parametrize("fault", [dict(status=504, html=True), dict(drop=True)], ids=["gateway-timeout", "dropped"])
async def test_a_message_posted_before_its_answer_was_lost_is_not_posted_again(rig: Rig, fault: dict) -> None:
    rig.fake.fail_next("chat.postMessage", landed=True, **fault)

    row = await _send_twice(rig)

    [message] = rig.fake.messages(DM)
    assert (row.status, row.message_id, row.channel_id) == (DeliveryStatus.DELIVERED.value, message["ts"], DM)
    assert len(rig.fake.calls_to("chat.postMessage")) == 1
    assert len(rig.fake.calls_to("conversations.history")) == 1


def _copies(rig: Rig, delivery_id: int) -> list[dict]:
    return [m for m in rig.fake.messages(DM)
            if (m.get("metadata") or {}).get("event_payload", {}).get("delivery_id") == delivery_id]


async def test_a_copy_in_doubt_behind_a_busy_dm_is_found_not_posted_again(rig: Rig) -> None:
    """Outside the Marketplace Slack's history pages hold 15 messages (docs/platform-limits.md):
    the look reads back to the first attempt, past the 20 notices the DM got since."""
    rig.fake.set_non_marketplace(TEAM)
    rig.fake.fail_next("chat.postMessage", drop=True, landed=True)
    first = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()  # the answer is lost: in doubt
    for _ in range(20):
        await rig.broadcast(audience="member:anna@acme.example")
        await rig.herald.outbox.drain()
    assert len(rig.fake.messages(DM)) == 21
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()  # the retry looks first

    row = await Delivery.get(notice_id=first)
    copies = _copies(rig, row.id)
    assert len(copies) == 1, f"the copy in doubt was posted {len(copies)} times"
    assert (row.status, row.message_id) == (DeliveryStatus.DELIVERED.value, copies[0]["ts"])
    assert len(rig.fake.calls_to("chat.postMessage")) == 21
    [look, *pages] = rig.fake.calls_to("conversations.history")
    assert float(look.args["oldest"]) < float(copies[0]["ts"])  # read back to the first attempt only
    assert pages and all(page.args.get("cursor") for page in pages)


async def _in_doubt_behind_40_under_slacks_limits(rig: Rig) -> int:
    """Anna's DM outside the Marketplace: a copy posted whose answer was lost (in doubt), then 40
    notices posted after it; Slack's rate limits on from here, on Herald's clock, an hour later
    (the retry is due). Returns the notice in doubt."""
    rig.fake.set_non_marketplace(TEAM)
    rig.fake.fail_next("chat.postMessage", drop=True, landed=True)
    first = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()  # the answer is lost: in doubt
    for _ in range(40):
        await rig.broadcast(audience="member:anna@acme.example")
        await rig.herald.outbox.drain()
    rig.fake.clock = lambda: rig.clock.now().timestamp()
    rig.fake.set_limits(SlackLimits())  # Slack's figures, on Herald's clock
    rig.clock.advance(hours=1)
    return first


async def test_a_look_through_a_busy_dm_cut_short_by_the_rate_limit_goes_on_where_it_stopped(rig: Rig) -> None:
    """1 history request a minute outside the Marketplace: the look needs three pages, one a
    minute, and each minute reads the next page instead of the newest one again."""
    first = await _in_doubt_behind_40_under_slacks_limits(rig)
    for _ in range(3):  # a page a minute
        await rig.herald.outbox.drain()
        rig.clock.advance(seconds=61)

    row = await Delivery.get(notice_id=first)
    copies = _copies(rig, row.id)
    assert len(copies) == 1, f"the copy in doubt was posted {len(copies)} times"
    assert (row.status, row.message_id) == (DeliveryStatus.DELIVERED.value, copies[0]["ts"])
    looks = rig.fake.calls_to("conversations.history")
    assert [call.status for call in looks] == [200, 429, 200, 429, 200]
    read = [call for call in looks if call.status == 200]
    assert "latest" not in read[0].args and all(call.args.get("latest") for call in read[1:])
    assert float(read[1].args["latest"]) > float(read[2].args["latest"])  # on from where it stopped


async def test_a_look_cut_short_by_the_rate_limit_goes_on_where_it_stopped_in_another_process(rig: Rig) -> None:
    """Where a look paused by the rate limit goes on is stored with the copy, not in one process:
    another replica taking over the lane (or Herald restarted) during the minute's pause reads the
    next page, not the newest one again (which, at a page a minute, could take many minutes per copy)."""
    first = await _in_doubt_behind_40_under_slacks_limits(rig)
    await rig.herald.outbox.drain()  # the first page, then a 429 on the second
    assert [call.status for call in rig.fake.calls_to("conversations.history")] == [200, 429]

    other = rig.another_worker()  # a new Herald on the same database
    try:
        for _ in range(2):  # a page a minute
            rig.clock.advance(seconds=61)
            await other.outbox.drain()
    finally:
        await other.close()

    looks = rig.fake.calls_to("conversations.history")
    assert "latest" not in looks[0].args
    assert looks[2].args.get("latest"), "the second process began the look again with the newest page"
    assert [call.status for call in looks] == [200, 429, 200, 429, 200]  # three pages in all, one a minute
    row = await Delivery.get(notice_id=first)
    copies = _copies(rig, row.id)
    assert len(copies) == 1, f"the copy in doubt was posted {len(copies)} times"
    assert (row.status, row.message_id) == (DeliveryStatus.DELIVERED.value, copies[0]["ts"])
    assert row.history_read_to == ""  # the look concluded


@pytest.mark.parametrize("landed", [True, False], ids=["posted", "not-posted"])
async def test_a_copy_in_doubt_of_a_notice_retracted_since_is_updated_if_it_landed_and_cancelled_if_not(
        rig: Rig, landed: bool) -> None:
    """Nobody is sent "Retracted: ..." for a notice they never had."""
    rig.fake.fail_next("chat.postMessage", drop=True, landed=landed)
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()  # the answer is lost: in doubt
    await retract_notice(notice_id, None, reason="wrong part number", now=rig.clock.now(), operator="test")
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()  # the retry looks first

    row = await Delivery.get(notice_id=notice_id)
    assert len(rig.fake.calls_to("chat.postMessage")) == 1 and len(rig.fake.calls_to("conversations.history")) == 1
    if landed:
        [message] = rig.fake.messages(DM)
        assert (row.status, row.message_id, row.update_pending) == (DeliveryStatus.DELIVERED.value, message["ts"], False)
        assert "Retracted" in str(message["blocks"])  # updated in place
    else:
        assert rig.fake.messages(DM) == []
        assert (row.status, row.error) == (DeliveryStatus.CANCELLED.value, "retracted before it was sent")
        assert await AuditEvent.filter(notice_id=notice_id, kind="delivery.cancelled").count() == 1


@pytest.mark.parametrize("landed", [True, False], ids=["posted", "not-posted"])
async def test_a_copy_in_doubt_of_a_survey_closed_since_is_updated_if_it_landed_and_cancelled_if_not(
        rig: Rig, landed: bool) -> None:
    """Nobody is sent "This survey closed ..." for a survey they never had."""
    rig.fake.fail_next("chat.postMessage", drop=True, landed=landed)
    command = parse_command("survey announcements member:anna@acme.example | Ready for Q1? | Yes | No")
    preview = await create_survey_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await sending.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await rig.herald.outbox.drain()  # the answer is lost: in doubt
    await close_survey(preview.notice.id, None, now=rig.clock.now(), operator="test")
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()  # the retry looks first

    row = await Delivery.get(notice_id=preview.notice.id)
    assert len(rig.fake.calls_to("chat.postMessage")) == 1 and len(rig.fake.calls_to("conversations.history")) == 1
    if landed:
        [message] = rig.fake.messages(DM)
        assert (row.status, row.message_id, row.update_pending) == (DeliveryStatus.DELIVERED.value, message["ts"], False)
        assert "This survey closed" in str(message["blocks"])  # updated in place
    else:
        assert rig.fake.messages(DM) == []
        assert (row.status, row.error) == (DeliveryStatus.CANCELLED.value, "the survey closed before it was sent")


async def test_a_message_slack_did_not_post_is_posted_by_the_retry(rig: Rig) -> None:
    rig.fake.fail_next("chat.postMessage", status=500, error="internal_error")

    row = await _send_twice(rig)

    [message] = rig.fake.messages(DM)
    assert (row.status, row.message_id) == (DeliveryStatus.DELIVERED.value, message["ts"])
    assert len(rig.fake.calls_to("chat.postMessage")) == 2


async def test_a_refused_message_is_retried_without_looking(rig: Rig) -> None:
    """A rate limit says the message was not posted: no history call (its limit is tight)."""
    rig.fake.fail_next("chat.postMessage", retry_after=1)

    row = await _send_twice(rig)

    assert row.status == DeliveryStatus.DELIVERED.value
    assert rig.fake.calls_to("conversations.history") == []


async def test_a_rate_limited_look_waits_in_doubt_while_the_workspace_sends_on(rig: Rig) -> None:
    """conversations.history allows 1 call a minute to an app distributed outside the Marketplace:
    its 429 holds up the row in doubt, not the workspace's chat.postMessage."""
    rig.fake.fail_next("chat.postMessage", drop=True, landed=True)
    rig.fake.fail_next("conversations.history", retry_after=60)
    first = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()  # the look is refused for 60 s

    row = await Delivery.get(notice_id=first)
    assert (row.status, row.attempts) == (DeliveryStatus.SENDING.value, 1)
    assert row.claimed_until == rig.clock.now() + timedelta(seconds=60)
    second = await rig.broadcast(audience="member:bo@acme.example")
    await rig.herald.outbox.drain()
    assert (await Delivery.get(notice_id=second)).status == DeliveryStatus.DELIVERED.value  # not paused

    rig.clock.advance(seconds=61)
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=first)
    [message] = rig.fake.messages(DM)
    assert (row.status, row.message_id) == (DeliveryStatus.DELIVERED.value, message["ts"])


async def test_an_update_slack_refuses_for_good_is_not_tried_again(rig: Rig) -> None:
    """The member deleted the message (chat.update answers message_not_found): recorded, not retried
    every minute for ever."""
    from bot.core.notices.revisions import edit_notice

    notice_id = await rig.broadcast(audience="member:anna@acme.example", importance="need-to-know")
    await rig.herald.outbox.drain()
    rig.fake.fail_next("chat.update", error="message_not_found")
    await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test", body="LX-300")
    for _ in range(3):
        await rig.herald.outbox.drain()
        rig.clock.advance(minutes=2)

    assert len(rig.fake.calls_to("chat.update")) == 1
    row = await Delivery.get(notice_id=notice_id)
    assert not row.update_pending and row.error == "update failed: Slack refused the update (message_not_found)"


async def test_chat_post_messages_rate_limited_error_is_a_pause_not_a_failure(rig: Rig) -> None:
    """chat.postMessage's reference documents `rate_limited` ("Application has posted too many
    messages"), here with HTTP 200: the copy is sent after the pause, not failed for good."""
    rig.fake.fail_next("chat.postMessage", error="rate_limited")

    row = await _send_twice(rig)

    assert row.status == DeliveryStatus.DELIVERED.value and len(rig.fake.messages(DM)) == 1


async def test_a_member_who_got_the_message_can_acknowledge_it_while_its_send_is_in_doubt(
        slack_http: SlackHarness) -> None:
    """Slack posted the notice (Anna has it, with its Acknowledge button) but the answer to
    chat.postMessage was lost: the row is in doubt (`sending`) until the retry looks for it in the
    history, seconds to minutes later. Anna presses Acknowledge meanwhile: the click itself proves
    the copy reached her, so it is recorded, once (SPEC: "a click is recorded exactly once"), not
    refused with "This notice was not sent to you". The retry then finds the message instead of
    posting it again, records its id, and updates it to show the acknowledgement."""
    slack = slack_http
    slack.fake.fail_next("chat.postMessage", drop=True, landed=True)
    notice_id = await broadcast(slack.herald, slack.clock, "member:anna@acme.example")
    await slack.herald.outbox.drain()  # the post lands; its answer is lost
    (message,) = slack.fake.messages(DM)
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == DeliveryStatus.SENDING.value  # in doubt, as designed

    for _ in range(2):  # a double click too
        await slack.click(ACK_ACTION, _ack_value(message), user="UANNA", message=message)
        await wait_until(lambda: Acknowledgement.filter(notice_id=notice_id).exists(), what="the acknowledgement")
        await listeners_done(slack)
        (answer,) = await slack.responses(slack.last_click_key)
        assert "acknowledged by Anna Berg" in answer.args["text"], answer.args
        # told in a reply of its own: the message in doubt is left as posted, for the retry's look
        assert answer.args.get("replace_original") is False and answer.args.get("response_type") == "ephemeral"
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1

    slack.clock.advance(hours=1)
    await updates_pushed(slack.herald)  # the retry looks, finds the message, and then updates it
    row = await Delivery.get(notice_id=notice_id)
    (message,) = slack.fake.messages(DM)
    assert (row.status, row.message_id, row.channel_id) == (DeliveryStatus.DELIVERED.value, message["ts"], DM)
    assert len(slack.fake.calls_to("chat.postMessage")) == 1  # never posted again
    assert "Acknowledged by" in str(message["blocks"]) and not row.update_pending


def _ack_value(message: dict) -> str:
    return next(e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == ACK_ACTION)
