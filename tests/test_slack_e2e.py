"""The foundation story in Slack, over real HTTP: directory → /herald send → preview → Send →
DMs at the fake → Acknowledge → chat.update → status."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest


from bot.core.notices.views import ACK_ACTION
from bot.core.onboarding.assistant import REPLY_ACTION
from bot.channels.slack_blocks import CANCEL_ACTION, SEND_ACTION, compose_modal
from bot.common.errors import UserError
from bot.core.commands.parser import SendCommand
from bot.core.notices import sending as notices
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.core.directory.workspaces import add_slack_workspace
from bot.core.notices import acks, revisions
from bot.core.notices.escalations import REMIND_NOW_ACTION
from storage.models import Acknowledgement, AuditEvent, Delivery, Member, Notice, Organisation, Question, Staff
from tests.fakes.slack_signing import event_body, slash_command_body
from tests.query_plans import captured
from tests.support import (
    CAM_USER, TEAM, SlackHarness, broadcast, directory_csv, hold_publish, listeners_done, modal_state, restart_harness,
    seed_directory, slack_encoded, start_harness, stop_harness, updates_pushed, wait_until,
)



def _texts(blocks: list[dict]) -> str:
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            out.append(element.get("text", {}).get("text", "") if isinstance(element.get("text"), dict) else element.get("text", ""))
    return "\n".join(out)


async def _preview(slack: SlackHarness, text: str) -> int:
    response, _, key = await slack.command(text)
    assert response.status == 200
    (call,) = await slack.responses(key)
    send_button = next(e for b in call.args["blocks"] if b["type"] == "actions" for e in b["elements"]
                       if e["action_id"] == SEND_ACTION)
    return int(send_button["value"])


async def test_must_know_broadcast_acknowledged_end_to_end(slack: SlackHarness) -> None:
    started = time.monotonic()
    response, _, key = await slack.command(
        "send must-know operations tier:gold deadline:2026-02-01 | Recall of LX-200 | Stop selling LX-200 now <!channel> <@U999> <http://evil.example|click>")
    assert response.status == 200 and time.monotonic() - started < 3
    (preview,) = await slack.responses(key)
    summary = _texts(preview.args["blocks"])
    assert "4 recipients" in summary and "Must know" in summary and "Recall of LX-200" in summary
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions" for e in b["elements"]
                         if e["action_id"] == SEND_ACTION))
    assert slack.fake.call_count("chat.postMessage") == 0  # a preview sends nothing

    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    (sent,) = await slack.responses(slack.last_click_key)
    assert sent.args["replace_original"] is True and "4 recipients" in sent.args["text"]
    assert await Delivery.filter(notice_id=notice_id).count() == 4  # the outbox, written before sending

    await slack.herald.outbox.drain()
    posts = slack.fake.calls_to("chat.postMessage")
    assert sorted(c.channel for c in posts) == ["DUANNA", "DUBO", "DUDI"]
    blocks = posts[0].args["blocks"]
    rendered = _texts(blocks)
    assert "&lt;!channel&gt;" in rendered and "<!channel>" not in rendered
    assert "&lt;@U999&gt;" in rendered and "<http://evil.example|click>" not in rendered
    assert "CRITICAL" in blocks[0]["text"]["text"]
    assert any(e.get("action_id") == ACK_ACTION for b in blocks if b["type"] == "actions" for e in b["elements"])
    assert posts[0].args["metadata"]["event_payload"]["notice_id"] == notice_id

    ed = await Delivery.get(notice_id=notice_id, member__email="ed@keys.example")
    assert ed.status == "failed" and "no Slack or Teams account" in ed.error
    anna = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example")
    assert anna.status == "delivered" and anna.channel_id == "DUANNA" and anna.message_id

    for _ in range(3):  # double clicks and Slack retries
        response = await slack.click(ACK_ACTION, str(notice_id), user="UANNA")
        assert response.status == 200
    await wait_until(lambda: slack.fake.call_count("chat.update") >= 1, what="chat.update")
    await slack.herald.outbox.drain()
    assert slack.fake.call_count("chat.update") == 1  # the copy is updated once, not per click
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.acknowledged").count() == 1
    update = slack.fake.calls_to("chat.update")[0]
    assert update.channel == "DUANNA" and update.args["ts"] == anna.message_id
    updated = _texts(update.args["blocks"])
    assert "Acknowledged by *Anna Berg*" in updated
    assert not any(b["type"] == "actions" for b in update.args["blocks"])

    await slack.click(ACK_ACTION, str(notice_id), user="UOUTSIDER")
    (refusal,) = await slack.responses(slack.last_click_key)
    assert "not sent to you" in refusal.args["text"] and refusal.args["replace_original"] is False
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1

    response, _, key = await slack.command("status")
    (status,) = await slack.responses(key)
    text = status.args["text"]
    assert "Recipients: *4*" in text and "Delivered: *3*" in text and "Failed: *1*" in text
    assert "Pending: *0*" in text and "Acknowledged: *1*" in text and "no Slack or Teams account" in text
    assert (await Notice.get(id=notice_id)).status == "sent"
    kinds = set(await AuditEvent.filter(notice_id=notice_id).values_list("kind", flat=True))
    assert {"notice.created", "notice.sent", "delivery.delivered", "delivery.failed", "notice.acknowledged"} <= kinds


async def _delivered_copies(slack: SlackHarness, audience: str = "tier:gold") -> tuple[int, dict[str, Delivery]]:
    notice_id = await broadcast(slack.herald, slack.clock, audience)
    await slack.herald.outbox.drain()
    rows = await Delivery.filter(notice_id=notice_id, status="delivered").prefetch_related("account")
    return notice_id, {row.account.user_id: row for row in rows}


async def test_acknowledges_shown_through_the_response_url_cost_no_chat_update(slack: SlackHarness) -> None:
    """The response_url already replaced the pressed message with its acknowledged form: the outbox
    does not spend the workspace's chat.update budget (Tier 3) sending it the same view again."""
    notice_id, copies = await _delivered_copies(slack)
    assert len(copies) == 3
    for user, row in copies.items():
        await slack.click(ACK_ACTION, f"{notice_id}:1", user=user, message={"ts": row.message_id})
        (shown,) = await slack.responses(slack.last_click_key)
        assert shown.args["replace_original"] is True and "Acknowledged by" in _texts(shown.args["blocks"])
    await listeners_done(slack)
    await updates_pushed(slack.herald)

    assert await Acknowledgement.filter(notice_id=notice_id).count() == 3
    assert slack.fake.call_count("chat.update") == 0
    assert not await Delivery.filter(notice_id=notice_id, update_pending=True).exists()


async def test_a_new_acknowledgement_knows_its_pressed_copy_without_reading_it_again(
        slack: SlackHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statement that records a click returns the copies it flagged, with the notice as it saw
    it: the answer through the response_url needs no second read of the pressed copy (a round trip
    per click, at 250 Slack clicks a second), and the copy is still marked shown."""
    notice_id, copies = await _delivered_copies(slack, "member:anna@acme.example")
    anna = copies["UANNA"]

    async def click() -> None:
        await slack.click(ACK_ACTION, f"{notice_id}:1", user="UANNA", message={"ts": anna.message_id})
        await slack.responses(slack.last_click_key)
        await listeners_done(slack)

    statements = await captured(monkeypatch, click)
    assert not [sql for sql, _ in statements if "FROM delivery d JOIN notice n" in sql], statements
    await updates_pushed(slack.herald)
    assert slack.fake.call_count("chat.update") == 0
    assert not await Delivery.filter(notice_id=notice_id, update_pending=True).exists()


async def test_an_edit_racing_an_acknowledge_still_reaches_the_pressed_copy(slack: SlackHarness) -> None:
    notice_id, copies = await _delivered_copies(slack, "member:anna@acme.example")
    anna = copies["UANNA"]
    slack.fake.hold("response_url")
    await slack.click(ACK_ACTION, f"{notice_id}:1", user="UANNA", message={"ts": anna.message_id})
    await slack.responses(slack.last_click_key)  # the acknowledged form is on its way, drawn before the edit
    await revisions.edit_notice(notice_id, None, slack.herald.catalog, now=slack.clock.now(),
                                title="Recall of LX-200 and LX-210", operator="test")
    slack.fake.release("response_url")
    await listeners_done(slack)
    await updates_pushed(slack.herald)

    [update] = slack.fake.calls_to("chat.update")
    assert update.args["ts"] == anna.message_id and "LX-210" in _texts(update.args["blocks"])
    assert "Acknowledged by" in _texts(update.args["blocks"])


async def test_send_click_twice_writes_one_outbox(slack: SlackHarness) -> None:
    notice_id = await _preview(slack, "send need-to-know announcements org:acme | Hello | Welcome")
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    first_key = slack.last_click_key
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(first_key)
    (second,) = await slack.responses(slack.last_click_key)
    assert "already" in second.args["text"]
    assert await Delivery.filter(notice_id=notice_id).count() == 2
    await slack.herald.outbox.drain()
    posts = slack.fake.calls_to("chat.postMessage")
    assert len(posts) == 2  # 10:00 in Berlin: no quiet hours to wait for
    assert not any(b["type"] == "actions" for b in posts[0].args["blocks"])  # need-to-know: no button


async def test_a_send_acknowledged_before_a_crash_is_finished_and_told_after_the_restart(
        slack_http: SlackHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 between Slack's 200 for Send and the outbox rows: the CAM saw the press accepted, and
    Slack never sends an answered click again. The send is stored before the ack, so the next
    process's tick publishes the notice and tells the CAM in a direct message that it is out."""
    slack = slack_http
    notice_id = await _preview(slack, "send must-know operations org:acme | Recall | Stop")
    release, tasks = hold_publish(monkeypatch)
    try:
        click = await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
        assert click.status == 200
        status = (await Notice.get(id=notice_id)).status
        assert status == "scheduled", f"Slack was answered while the notice was still a {status}: a kill loses it"
        await wait_until(lambda: tasks, what="the rows being written")
    finally:
        for task in tasks:
            task.cancel()  # the process dies: the rows are never written by it
        release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    monkeypatch.undo()
    assert await Delivery.filter(notice_id=notice_id).count() == 0

    await restart_harness(slack)
    grace = notices.requested_send_grace(slack.herald.settings.delivery_lease_seconds)
    assert (await slack.herald.tick())["published"] == 0  # a Send so young is left to its own process
    slack.clock.advance(seconds=grace.total_seconds())
    assert (await slack.herald.tick())["published"] == 1
    assert await Delivery.filter(notice_id=notice_id).count() == 2
    assert await AuditEvent.filter(kind="notice.sent", notice_id=notice_id).count() == 1
    await slack.herald.outbox.drain()
    told = [str(c.args) for c in slack.fake.calls_to("chat.postMessage") if c.channel == f"D{CAM_USER}"]
    assert any(f"#{notice_id}" in t and "is out: 2 recipients" in t for t in told), told
    assert {c.channel for c in slack.fake.calls_to("chat.postMessage")} == {"DUANNA", "DUBO", f"D{CAM_USER}"}


async def test_cancel_sends_nothing(slack: SlackHarness) -> None:
    notice_id = await _preview(slack, "send must-know operations all | Drill | Ignore")
    await slack.click(CANCEL_ACTION, str(notice_id), user=CAM_USER)
    (reply,) = await slack.responses(slack.last_click_key)
    assert "cancelled" in reply.args["text"]
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    (late,) = await slack.responses(slack.last_click_key)
    assert "already cancelled" in late.args["text"]
    assert await Delivery.filter(notice_id=notice_id).count() == 0


async def test_nice_to_know_is_kept_for_the_digest_not_sent(slack: SlackHarness) -> None:
    notice_id = await _preview(slack, "send nice-to-know announcements all | Newsletter | Read at leisure")
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    assert slack.fake.call_count("chat.postMessage") == 0
    assert await Delivery.filter(notice_id=notice_id, status="digest").count() == 4


@pytest.mark.parametrize("slack", ["http"], indirect=True)  # Socket Mode envelopes carry no signature
async def test_forged_or_stale_signature_is_rejected_and_nothing_happens(slack: SlackHarness) -> None:
    body = slash_command_body(text="send must-know operations all | X | Y", user_id=CAM_USER, team_id=TEAM,
                              response_url=slack.fake.response_url("forged"))
    forged = await slack.post_signed(body, secret="not-the-secret")
    stale = await slack.post_signed(body, timestamp=int(time.time()) - 600)
    assert forged.status == 401 and stale.status == 401
    assert await Notice.all().count() == 0 and slack.fake.calls_to("response_url") == []


async def test_non_staff_cannot_send(slack: SlackHarness) -> None:
    response, _, key = await slack.command("send must-know operations all | X | Y", user="UANNA")
    (reply,) = await slack.responses(key)
    assert "Only channel account managers and admins" in reply.args["text"]
    response, text, _ = await slack.command("send", user="UANNA")
    assert "Only channel account managers and admins" in text
    assert slack.fake.call_count("views.open") == 0
    assert await Notice.all().count() == 0


async def test_bad_audience_gets_a_precise_error(slack: SlackHarness) -> None:
    response, _, key = await slack.command("send must-know operations teir:gold | X | Y")
    (reply,) = await slack.responses(key)
    assert "unknown attribute 'teir' (did you mean 'tier'?)" in reply.args["text"]
    response, _, key = await slack.command("status abc")
    assert "not a notice id" in await response.text()


async def test_a_link_too_long_to_store_is_refused_with_a_clear_message(slack: SlackHarness) -> None:
    """Notice.link holds 1,000 characters: a longer link (a pre-signed download, a SafeLinks-wrapped
    address) is refused by name, not with "Sorry, something went wrong" and a ValidationError in
    the log; the compose and edit forms cannot take more than that in the first place."""
    link = "https://files.vendor.example/recall.pdf?X-Amz-Signature=" + "a" * 1_150
    # refused as the command is read, so in the slash command's own answer (no response_url)
    _, text, _ = await slack.command(f"send must-know announcements all link:{link} | Recall of LX-200 | Stop")
    assert f"the link is {len(link):,} characters; keep it to 1,000" in text
    assert await Notice.all().count() == 0
    command = SendCommand(importance="must-know", topic="announcements", audience="all", title="Recall",
                          body="Stop", link=link)
    with pytest.raises(UserError, match="the link is"):  # a caller that skips the parser (console, CLI)
        notices.validate(command, slack.herald.catalog, now=slack.clock.now())
    modal = compose_modal(slack.herald.catalog)
    assert next(b for b in modal["blocks"] if b["block_id"] == "link")["element"]["max_length"] == 1000


async def test_a_slash_command_whose_text_says_payload_is_read_as_a_command(slack_http: SlackHarness) -> None:
    """Bolt reads any form body in which the word "payload" appears for an interaction, and with no
    `payload` field as an empty body: "/herald send ... | New payload limits | ..." was answered
    "Herald is not connected to this Slack workspace yet". Herald hands Bolt the body it has read."""
    slack = slack_http
    notice_id = await _preview(slack, "send need-to-know product-updates org:acme | New payload limits | "
                                      "The API payload limit is now 10 MB.")
    notice = await Notice.get(id=notice_id)
    assert (notice.title, notice.body) == ("New payload limits", "The API payload limit is now 10 MB.")
    response, text, _ = await slack.command("help payload")
    assert response.status == 200 and "Herald commands" in text


async def test_slash_command_text_is_decoded_before_it_becomes_a_notice(slack_http: SlackHarness) -> None:
    """Slack sends a slash command's & < > as &amp; &lt; &gt;. The notice keeps what the CAM
    typed: "Q&amp;A session" would be shown so in Teams and reports (and escaped twice in Slack),
    and a tracking link `?a=1&amp;b=2` is another URL."""
    slack = slack_http
    notice_id = await _preview(slack, slack_encoded("send need-to-know announcements org:acme "
                                                    "link:https://partners.example/q?a=1&b=2 | Q&A session | "
                                                    "Prices < 100 EUR & more"))
    notice = await Notice.get(id=notice_id)
    assert (notice.title, notice.body, notice.link) == (
        "Q&A session", "Prices < 100 EUR & more", "https://partners.example/q?a=1&b=2")


async def test_every_slash_command_reads_the_text_as_typed_and_escapes_it_when_quoting_it(
        slack_http: SlackHarness) -> None:
    """Retract and pause reasons, inline edits and help's echo read the decoded text too; a reply
    that quotes it (an error, help) escapes it again, so a typed "<!channel>" stays words."""
    slack = slack_http
    notice_id = await _sent_notice(slack, "send need-to-know announcements org:acme | Webinar | Join us")
    await slack.reply(slack_encoded(f"edit {notice_id} | Q&A <live> |"))
    assert (await Notice.get(id=notice_id)).title == "Q&A <live>"
    reply = await slack.reply(slack_encoded(f"retract {notice_id} wrong date & time <sorry>"))
    assert "Retracted: wrong date &amp; time &lt;sorry&gt;" in reply  # escaped once, shown as typed
    assert (await Notice.get(id=notice_id)).retract_reason == "wrong date & time <sorry>"
    await slack.reply(slack_encoded("pause acme R&D freeze"))
    assert (await Organisation.get(external_id="acme")).pause_reason == "R&D freeze"
    assert "I don't know the command `&lt;!channel&gt;`" in await slack.reply(slack_encoded("<!channel> hi"))
    refused = await slack.reply(slack_encoded("status <@U999>"))
    assert "'&lt;@U999&gt;' is not a notice id" in refused and "<@U999>" not in refused


async def test_help_and_unknown_subcommands(slack: SlackHarness) -> None:
    _, text, _ = await slack.command("help")
    assert "send <importance> <topic> <audience>" in text
    assert "correct a sent notice (form)" in text and "CSV in your DM" in text  # what Slack does
    _, text, _ = await slack.command("frobnicate now")
    assert "I don't know the command `frobnicate`" in text and "status [notice-id]" in text


async def test_help_is_each_persons_own(slack_http: SlackHarness) -> None:
    """`/herald help` gave a partner contact the staff commands only, none of which they may use,
    and nothing about what they can do: Acknowledge, questions in the Messages tab, the Home tab's
    preferences. A partner gets that; someone not in the directory is told how to be added."""
    _, text, _ = await slack_http.command("help", user="UANNA")
    assert "Herald for partners" in text and "*Messages* tab" in text and "*Home* tab" in text
    assert "send <importance>" not in text
    _, text, _ = await slack_http.command("frobnicate", user="UANNA")
    assert text.startswith("I don't know the command `frobnicate`") and "Herald for partners" in text
    _, text, _ = await slack_http.command("help", user="UOUTSIDER")
    assert "don't recognise you as a partner contact" in text


async def test_compose_modal_preview_and_send(slack: SlackHarness) -> None:
    response, _, _ = await slack.command("send")
    assert response.status == 200
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="views.open")
    view = opened.args["view"]
    block_ids = [b.get("block_id") for b in view["blocks"]]
    assert block_ids == ["topic", "importance", "audience", "title", "body", "link", "deadline"]

    def state(**values: str) -> dict:
        return modal_state(("topic", "importance"), **values)

    base = dict(topic="incentives", importance="must-know", audience="region:emea", title="Q3 rebate",
                body="New rebate tiers", link="", deadline="")
    answer = await slack.submit_view({"callback_id": view["callback_id"],
                                      "state": {"values": state(**{**base, "audience": "regoin:emea"})}})
    assert answer["response_action"] == "errors" and "did you mean 'region'" in answer["errors"]["audience"]
    answer = await slack.submit_view({"callback_id": view["callback_id"],
                                      "state": {"values": state(**{**base, "deadline": "soon"})}})
    assert answer["response_action"] == "errors" and "deadline" in answer["errors"]

    answer = await slack.submit_view({"callback_id": view["callback_id"], "state": {"values": state(**base)}})
    assert answer["response_action"] == "update"
    preview = answer["view"]
    assert "1 recipient*" in preview["blocks"][0]["text"]["text"]  # incentives → sales in EMEA: Anna
    answer = await slack.submit_view({"callback_id": preview["callback_id"],
                                      "private_metadata": preview["private_metadata"], "state": {"values": {}}})
    assert "Queueing the notice" in answer["view"]["blocks"][0]["text"]["text"]  # answered before it is queued
    (told,) = await wait_until(lambda: slack.fake.calls_to("chat.postMessage"),  # then the outcome, in a DM
                               what="the outcome in the CAM's direct messages")
    assert told.channel == f"D{CAM_USER}" and "Sending notice" in told.args["text"]
    assert not slack.fake.calls_to("conversations.open")  # posted to the user id (Tier 3 spared)
    await slack.herald.outbox.drain()
    assert [c.channel for c in slack.fake.calls_to("chat.postMessage")][1:] == ["DUANNA"]


async def test_the_preview_modals_outcome_reaches_the_cam_after_a_429(slack_http: SlackHarness) -> None:
    """The preview modal's Send answers "Queueing ... Herald tells you in your direct messages when
    it is on its way, or why not", and posts that outcome straight from the listener. When Slack
    answers it 429 (the DM's 1 a second, or the workspace's budget a broadcast is spending), it was
    logged and dropped; now it is queued as an outbound message to the CAM (as a throttled
    assistant's answer is) and reaches them once the Retry-After has passed, once."""
    slack = slack_http
    await slack.command("send")  # the compose modal
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="views.open")
    await listeners_done(slack)
    state = modal_state(("topic", "importance"), topic="operations", importance="must-know", audience="all",
                        title="Recall", body="Stop selling", link="", deadline="")
    preview = await slack.submit_view({"callback_id": opened.args["view"]["callback_id"], "state": {"values": state}})
    assert preview["response_action"] == "update"
    slack.fake.fail_next("chat.postMessage", retry_after=5)  # Slack: 429, Retry-After: 5
    sent = await slack.submit_view({"callback_id": preview["view"]["callback_id"],
                                    "private_metadata": preview["view"]["private_metadata"],
                                    "state": {"values": {}}})
    assert "Queueing the notice" in str(sent["view"])
    throttled = await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage") if c.status == 429],
                                 what="the outcome's direct message, refused with 429")
    await listeners_done(slack)
    assert "Sending notice" in throttled[0].args["text"]  # the outcome, refused by Slack
    for _ in range(3):  # the Retry-After passes; the outbox runs as its worker would
        slack.clock.advance(seconds=10)
        await slack.herald.outbox.drain()
        await listeners_done(slack)
    told = [c for c in slack.fake.calls_to("chat.postMessage")
            if c.status == 200 and c.channel == f"D{CAM_USER}" and "Sending notice" in c.args.get("text", "")]
    assert len(told) == 1, "the CAM was never told the outcome of Send: the direct message Slack throttled was dropped"
    assert "*" not in told[0].args["text"] and "Recall" in told[0].args["text"]  # plain text, as a DM's title


async def test_a_form_slack_would_not_open_is_explained_to_the_cam(slack_http: SlackHarness) -> None:
    """`/herald send` opens the compose modal with views.open after the acknowledgement; Slack
    refuses it when the trigger id is more than 3 s old (`expired_trigger_id`) or the view is
    invalid. The CAM, who typed a command or pressed a button and saw nothing, is told so
    (ephemeral); the reply form under a hand-off goes through the same helper."""
    slack = slack_http
    slack.fake.fail_next("views.open", error="expired_trigger_id")
    slack.fake.hold("views.open")  # Slack's answer comes after the acknowledgement, as over the internet
    response, _, key = await slack.command("send")
    assert response.status == 200
    await wait_until(lambda: slack.fake.calls_to("views.open"), what="views.open")
    slack.fake.release("views.open")
    (told,) = await slack.responses(key)
    assert "did not open the form in time; please try again" in told.args["text"]
    assert told.args["response_type"] == "ephemeral"

    anna = await Member.get(email="anna@acme.example")  # a hand-off the CAM may answer
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=slack.clock.now(), abstained=True, channel_id="DUANNA")
    await slack.herald.hand_off_question(question.id, anna)
    slack.fake.fail_next("views.open", error="invalid_arguments")
    await slack.click(REPLY_ACTION, str(question.id), user=CAM_USER)
    (told,) = await slack.responses(slack.last_click_key)
    assert "could not open the form" in told.args["text"] and told.args["replace_original"] is False


async def test_closing_the_preview_cancels_the_draft(slack: SlackHarness) -> None:
    notice_id = await _preview(slack, "send must-know operations all | Drill | Ignore")
    await slack.submit_view({"callback_id": "herald_preview", "private_metadata": str(notice_id)},
                            kind="view_closed")
    await wait_until(lambda: Notice.filter(id=notice_id, status="cancelled").exists(), what="cancel")


async def test_background_worker_delivers_without_help(db: str) -> None:
    harness = await start_harness(db, run_worker=True)
    try:
        await seed_directory(harness.clock)
        notice_id = await _preview(harness, "send must-know operations all | Heads up | Depot closed Friday")
        await harness.click(SEND_ACTION, str(notice_id), user=CAM_USER)
        await wait_until(lambda: harness.fake.call_count("chat.postMessage") == 4, what="background delivery")
        await wait_until(lambda: Notice.filter(id=notice_id, status="sent").exists(), what="notice sent")
        # the assistant's knowledge base is built at start-up, so the first question does not wait for it
        await wait_until(lambda: harness.herald._kb is not None, timeout=300, what="knowledge base warmed up")
    finally:
        await stop_harness(harness)


async def _sent_notice(slack: SlackHarness, text: str) -> int:
    notice_id = await _preview(slack, text)
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    return notice_id




async def test_edit_retract_pause_schedule_by_slash_command(slack: SlackHarness) -> None:
    notice_id = await _sent_notice(slack, "send must-know operations tier:gold | Recall LX-200 | Stop selling")
    reply = await slack.reply(f"edit {notice_id} material | Recall LX-200 and LX-210 |")
    assert f"Notice #{notice_id} is now revision 2" in reply and "updating 3 delivered copies" in reply
    assert "acknowledge it again" in reply
    await slack.herald.outbox.drain()
    assert all("LX-210" in str(u.args["blocks"]) for u in slack.fake.calls_to("chat.update"))
    assert "Stop selling" in str(slack.fake.calls_to("chat.update")[0].args["blocks"])  # empty part kept the body

    assert "Only the notice's author or an admin" in await slack.reply(f"edit {notice_id} | x |", user="UANNA")

    reply = await slack.reply(f"retract {notice_id} wrong model number")
    assert "retracted" in reply and "Retracted: wrong model number" in reply
    await slack.herald.outbox.drain()
    assert "Retracted: wrong model number" in str(slack.fake.calls_to("chat.update")[-1].args["blocks"])
    assert "Retracted: wrong model number" in await slack.reply(f"status {notice_id}")

    paused = await slack.reply("pause acme until 2026-02-01 flood at the depot")
    assert "paused until <!date^" in paused and "|2026-02-01 00:00 UTC>" in paused
    assert "Only Herald staff can pause" in await slack.reply("pause acme", user="UANNA")
    assert "back on" in await slack.reply("resume acme")
    assert "no partner organisation has the id 'nope'" in await slack.reply("pause nope")

    scheduled_id = await _preview(slack, "send need-to-know announcements all at:2026-03-01T09:00Z | Webinar | Join us")
    await slack.click(SEND_ACTION, str(scheduled_id), user=CAM_USER)
    (confirmation,) = await slack.responses(slack.last_click_key)
    # staff read times in their own zone: Slack's date token, the UTC text as its fallback
    local = f"<!date^{int(datetime(2026, 3, 1, 9, 0, tzinfo=UTC).timestamp())}^{{date_short_pretty}} {{time}}" \
            "|2026-03-01 09:00 UTC>"
    assert f"is scheduled for {local}" in confirmation.args["text"]
    assert (await Notice.get(id=scheduled_id)).status == "scheduled"
    listing = await slack.reply("scheduled")
    assert f"#{scheduled_id} {local}" in listing and "Webinar" in listing
    assert "cancelled" in await slack.reply(f"cancel {scheduled_id}")
    assert "No notices are scheduled." == await slack.reply("scheduled")


async def test_edit_form_opens_prefilled_and_updates(slack: SlackHarness) -> None:
    notice_id = await _sent_notice(slack, "send need-to-know support all | Portal down | Use the phone line")
    response, _, _ = await slack.command(f"edit {notice_id}")
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="edit form")
    view = opened.args["view"]
    assert view["private_metadata"] == str(notice_id)
    assert view["blocks"][1]["element"]["initial_value"] == "Portal down"
    values = {"title": {"value": {"type": "plain_text_input", "value": "Portal back"}},
              "body": {"value": {"type": "plain_text_input", "value": "All fixed"}},
              "link": {"value": {"type": "plain_text_input", "value": None}}}
    answer = await slack.submit_view({"callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
                                      "state": {"values": values}})
    assert answer["response_action"] == "update" and "revision 2" in str(answer["view"])
    await slack.herald.outbox.drain()
    assert all("Portal back" in str(u.args["blocks"]) for u in slack.fake.calls_to("chat.update"))


async def test_help_written_to_herald_tells_a_partner_what_they_can_do(slack: SlackHarness) -> None:
    """As in Teams, where typing is the only way to ask: a partner who writes `help` to Herald gets
    their help (as `/herald help` gives it), not the assistant's "I don't know that one yet" with an
    Ask my CAM button that would pass the word "help" to their channel account manager."""
    event = {"type": "message", "channel_type": "im", "channel": "DUANNA", "user": "UANNA", "text": "help",
             "ts": "1700000000.000200"}
    response = await slack.post_signed(event_body(event, TEAM))
    assert response.status == 200
    (reply,) = await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUANNA"],
                                what="the reply to help")
    assert "Herald for partners" in reply.args["text"] and "*Home* tab" in reply.args["text"]
    assert "blocks" not in reply.args  # a plain answer: no assistant buttons under it


async def test_a_stranger_is_told_how_to_get_added(slack: SlackHarness) -> None:
    from tests.fakes.slack_signing import event_body

    event = {"type": "message", "channel_type": "im", "channel": "DUOUTSIDER", "user": "UOUTSIDER",
             "text": "how do I register a deal?", "ts": "1700000000.000100"}
    response = await slack.post_signed(event_body(event, TEAM))
    assert response.status == 200
    (reply,) = await wait_until(lambda: slack.fake.calls_to("chat.postMessage"), what="reply")
    assert reply.channel == "DUOUTSIDER" and "don't recognise you as a partner contact" in reply.args["text"]


async def _dm(slack: SlackHarness, user: str, text: str) -> dict:
    """A direct message to Herald as Slack delivers it (a `message.im` event); returns Herald's reply."""
    before = slack.fake.call_count("chat.postMessage")
    event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user, "text": text,
             "ts": "1700000000.000900"}
    assert (await slack.post_signed(event_body(event, TEAM))).status == 200
    await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="Herald's reply")
    return slack.fake.calls_to("chat.postMessage")[-1].args


async def test_a_cam_writing_to_herald_is_pointed_to_the_slash_command(slack_http: SlackHarness) -> None:
    """A CAM who writes `status 4` in Herald's Messages tab (or types an answer under a hand-off)
    was told "ask your channel account manager to add you to the partner directory". Staff are
    pointed to `/herald`, with their words as the command when they read as one."""
    slack = slack_http
    reply = await _dm(slack, CAM_USER, "status 4")
    assert reply["channel"] == f"D{CAM_USER}" and "partner directory" not in reply["text"]
    assert "`/herald status 4`" in reply["text"] and "press *Reply*" in reply["text"]
    reply = await _dm(slack, CAM_USER, slack_encoded("thanks <3"))
    assert "`/herald help` lists them" in reply["text"] and "/herald thanks" not in reply["text"]


async def test_a_cams_app_home_says_how_to_use_herald(slack_http: SlackHarness) -> None:
    """Staff have no partner preferences: their Home tab lists the commands they use, not the
    "once your channel account manager has added you" text a stranger gets."""
    slack = slack_http
    await slack.post_signed(event_body({"type": "app_home_opened", "user": CAM_USER, "tab": "home"}, TEAM))
    (published,) = await wait_until(lambda: slack.fake.calls_to("views.publish"), what="the home tab")
    home = str(published.args["view"])
    assert "Herald for vendor staff" in home and "/herald send" in home and "partner directory" not in home


def _ack_value(message: dict) -> str:
    return next(e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == ACK_ACTION)


async def test_a_press_on_a_copy_older_than_a_material_edit_does_not_acknowledge_the_new_wording(
        slack: SlackHarness) -> None:
    """A material edit asks everyone to acknowledge again. Anna presses Acknowledge on her copy
    before its in-place update reaches it: she was never shown the new wording, so nothing is
    recorded and she is told to read the updated message; its own button then acknowledges it."""
    notice_id = await _preview(slack, "send must-know operations member:anna@acme.example | Recall | Stop selling LX-200")
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)  # queued
    await slack.herald.outbox.drain()
    (old_copy,) = slack.fake.messages("DUANNA")
    assert _ack_value(old_copy) == f"{notice_id}:1"
    cam = await Staff.get(email="cam@vendor.example")
    await revisions.edit_notice(notice_id, cam, slack.herald.catalog, now=slack.clock.now(),
                                body="Stop selling LX-200 and LX-300", material=True)

    await slack.click(ACK_ACTION, _ack_value(old_copy), user="UANNA", message=old_copy)
    (refusal,) = await slack.responses(slack.last_click_key)
    assert "was changed after this copy was sent" in refusal.args["text"]
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 0

    await slack.herald.outbox.drain()  # the in-place update
    (updated,) = slack.fake.messages("DUANNA")
    assert "LX-300" in str(updated["blocks"]) and _ack_value(updated) == f"{notice_id}:2"
    await slack.click(ACK_ACTION, _ack_value(updated), user="UANNA", message=updated)
    await wait_until(lambda: Acknowledgement.filter(notice_id=notice_id, revision=2).exists(), what="the ack")


async def test_a_cam_cannot_read_another_cams_notice_through_status(slack: SlackHarness) -> None:
    """status follows the report's rule (compliance.reports.can_read_notice): a CAM sees their own."""
    await add_staff("other.cam@vendor.example", "cam", name="Olga Other", slack_user="UOUTSIDER", slack_team=TEAM,
                    now=slack.clock.now(), actor="test")
    notice_id = await _sent_notice(slack, "send must-know operations tier:gold | Confidential recall of LX-200 | Stop")
    assert "Only compliance, admins and the notice's CAM" in await slack.reply(f"report {notice_id}", user="UOUTSIDER")
    status = await slack.reply(f"status {notice_id}", user="UOUTSIDER")
    assert "Confidential recall" not in status and "another CAM's" in status
    assert "Confidential recall" in await slack.reply(f"status {notice_id}")


async def test_the_cam_who_sent_a_notice_keeps_its_report_after_the_partner_gets_another_cam(
        slack: SlackHarness) -> None:
    """The directory hands Acme, Bolt and Keys to another CAM after Casey sent them a must-know
    notice. Casey still pulls its report and status (README: a CAM reads the notices they sent;
    compliance asks the sender what they sent and who acknowledged), while the new CAM, who got no
    escalation of it, does not."""
    from bot.core.directory.importer import import_directory
    from tests.support import SAMPLE_DIRECTORY

    notice_id = await _sent_notice(slack, "send must-know operations tier:gold | Recall of LX-200 | Stop selling")
    await add_staff("nia@vendor.example", "cam", name="Nia New", slack_user="UNIA", slack_team=TEAM,
                    now=slack.clock.now(), actor="test")
    handed = SAMPLE_DIRECTORY.replace("cam@vendor.example", "nia@vendor.example")
    assert not (await import_directory(handed, now=slack.clock.now(), actor="test")).rejected

    report = await slack.reply(f"report {notice_id}")
    assert "Only compliance" not in report and "full CSV report is in your direct messages" in report
    assert "Recall of LX-200" in await slack.reply(f"status {notice_id}")
    assert "Only compliance, admins and the notice's CAM" in await slack.reply(f"report {notice_id}", user="UNIA")


async def test_send_on_a_preview_whose_deadline_has_passed_is_refused(slack: SlackHarness) -> None:
    slack.clock.set(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    notice_id = await _preview(slack, "send must-know operations tier:gold deadline:2026-01-05T12:00Z | Recall | Stop")
    slack.clock.set(datetime(2026, 1, 5, 14, 0, tzinfo=UTC))  # back from lunch, the preview still open
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    (answer,) = await slack.responses(slack.last_click_key)
    assert "deadline (2026-01-05 12:00 UTC) has passed since the preview" in answer.args["text"]
    assert (await Notice.get(id=notice_id)).status == "draft"
    assert await Delivery.filter(notice_id=notice_id).count() == 0


async def test_the_partners_cam_can_open_the_report_of_a_colleagues_notice_escalated_to_them(
        slack: SlackHarness) -> None:
    """The escalation goes to each partner's CAM with Remind now and Open report: both work for them,
    although a colleague wrote the notice."""
    from bot.core.notices.escalations import OPEN_REPORT_ACTION

    slack.clock.set(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    await add_staff("launch.cam@vendor.example", "cam", name="Lee Launch", slack_user="UOUTSIDER", slack_team=TEAM,
                    now=slack.clock.now(), actor="test")
    response, _, key = await slack.command(
        "send must-know operations tier:gold deadline:2026-01-06T17:00Z | Recall | Stop", user="UOUTSIDER")
    (preview,) = await slack.responses(key)
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["action_id"] == SEND_ACTION))
    await slack.click(SEND_ACTION, str(notice_id), user="UOUTSIDER")
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    slack.clock.set(datetime(2026, 1, 6, 18, 0, tzinfo=UTC))
    await slack.herald.tick()
    await slack.herald.outbox.drain()
    escalation = next(c for c in slack.fake.calls_to("chat.postMessage")
                      if c.channel == f"D{CAM_USER}" and "Escalation" in str(c.args))
    buttons = {e["action_id"]: e["value"] for b in escalation.args["blocks"] if b["type"] == "actions"
               for e in b["elements"]}
    await slack.click(OPEN_REPORT_ACTION, buttons[OPEN_REPORT_ACTION], user=CAM_USER)
    (answer,) = await slack.responses(slack.last_click_key)
    assert "Only compliance" not in answer.args["text"] and f"#{notice_id}" in str(answer.args)


# ---- the topic catalog vs Block Kit's menus -------------------------------------------------

LONG_TITLE = "Product updates: Industrial Automation, Building Technologies & Smart Infrastructure"  # 84


def _topics_file(tmp_path: Path, topics: dict[str, str]) -> Path:
    lines = ["roles: [sales, support, marketing, technical, executive, operations]", "topics:"]
    for key, title in topics.items():
        lines += [f"  {key}:", f"    title: \"{title}\"", "    roles: [all]", "    opt_out: true"]
    path = tmp_path / "topics.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def _slack_with_topics(db: str, tmp_path: Path, topics: dict[str, str]) -> AsyncIterator[SlackHarness]:
    harness = await start_harness(db, extra_settings={"topics_file": _topics_file(tmp_path, topics)})
    await seed_directory(harness.clock)
    try:
        yield harness
    finally:
        await stop_harness(harness)


CATALOGS = {
    # a vendor with a topic per product line: 101 topics
    "101-topics": {"announcements": "Announcements", **{f"line-{i:03d}": f"Product line {i:03d}" for i in range(100)}},
    # one descriptive topic title longer than an option's 75 characters
    "long-title": {"announcements": "Announcements", "automation": LONG_TITLE},
}


def _menu_options(element: dict) -> list[dict]:
    return element.get("options") or [o for group in element.get("option_groups", []) for o in group["options"]]


@pytest.mark.parametrize("catalog", sorted(CATALOGS))
async def test_the_compose_modals_open_whatever_the_topic_catalog(db: str, tmp_path: Path, catalog: str) -> None:
    """Block Kit: a static_select holds at most 100 options (or 100 groups of 100) and an option's
    text at most 75 characters; Slack refuses a view that breaks either, and the CAM could not
    compose a notice or a survey at all. Over 100 topics the menu is grouped by hundreds; a long
    title is shortened with an ellipsis; every topic stays selectable."""
    topics = CATALOGS[catalog]
    async with _slack_with_topics(db, tmp_path, topics) as slack:
        for command in ("send", "survey"):
            before = len(slack.fake.calls_to("views.open"))
            await slack.command(command)
            (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open")[before:], what="views.open")
            assert opened.error is None, f"Slack refused the `{command}` modal ({opened.error})"
            options = _menu_options(opened.args["view"]["blocks"][0]["element"])
            assert [o["value"] for o in options] == list(topics)
            assert all(len(o["text"]["text"]) <= 75 for o in options)
        if catalog == "long-title":
            assert options[-1]["text"]["text"] == LONG_TITLE[:74] + "…"


async def test_the_home_tab_shows_a_topic_with_a_long_title(db: str, tmp_path: Path) -> None:
    """The App Home's topic checkboxes: an option's text is at most 75 characters, or views.publish
    fails and the member's Home tab (their only place to change preferences in Slack) stays empty."""
    async with _slack_with_topics(db, tmp_path, CATALOGS["long-title"]) as slack:
        await slack.post_signed(event_body({"type": "app_home_opened", "user": "UANNA", "tab": "home"}, TEAM))
        (published,) = await wait_until(lambda: slack.fake.calls_to("views.publish"), what="the home tab")
        assert published.error is None, f"Slack refused the Home tab: {published.error}"


# ---- the `report` reply ---------------------------------------------------------------------

async def test_the_report_reply_states_the_acknowledgement_rates(slack_http: SlackHarness) -> None:
    """`/herald report N`: the reply states the acknowledgement rate in total and per partner
    (it read a key the summary does not have, `acknowledgement_rate`, and never showed one), and a
    partner's failed copies on its line."""
    from bot.core.compliance import reports
    from bot.core.notices import acks

    slack = slack_http
    slack.clock.set(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    notice_id = await _sent_notice(slack, "send must-know operations tier:gold | Recall of LX-200 | Stop selling")
    # anna, bo and di delivered (ed has no account); anna acknowledges
    result = await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=slack.clock.now())
    assert result.newly_recorded
    summary = await reports.notice_summary(notice_id)
    assert (summary["delivered"], summary["acknowledged"], summary["rate"]) == (3, 1, 0.3333)

    text = await slack.reply(f"report {notice_id}")
    assert "Recipients 4 · delivered 3 · failed 1 · acknowledged 1 (33%)" in text, text
    assert "• Keys &amp; Co: 0/1 (0%) · 1 failed\n• Acme Locks: 1/2 (50%)\n" in text, text  # least acknowledged first
    assert text.endswith("The full CSV report is in your direct messages with Herald.")


async def test_the_report_reply_says_how_many_organisations_it_left_out(slack_http: SlackHarness) -> None:
    """A CAM with 27 partners: the reply names 20, those that need attention first (here the 25
    whose one contact has no chat account, every copy failed: "none delivered · 1 failed", not a
    bland 0/0), and says that 7 more are in the CSV. It named the first 20 by id and dropped the
    rest without a word, so the list read as complete."""
    from bot.core.compliance import reports
    from bot.core.directory.importer import import_directory
    from tests.support import directory_csv

    slack = slack_http
    slack.clock.set(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    rows = [f"p{i:02d},Partner {i:02d},gold,emea,de,retail,small,reseller,cam@vendor.example,"
            f"x{i:02d}@p{i:02d}.example,Person {i:02d},operations,Europe/Berlin,en,,,," for i in range(25)]
    assert not (await import_directory(directory_csv(rows), now=slack.clock.now(), actor="test")).rejected
    notice_id = await _sent_notice(slack, "send must-know operations tier:gold | Recall of LX-200 | Stop selling")
    assert len((await reports.notice_summary(notice_id))["organisations"]) == 27  # acme, keys and the 25

    text = await slack.reply(f"report {notice_id}")
    listed = [line for line in text.splitlines() if line.startswith("•")]
    assert listed == [f"• Partner {i:02d}: none delivered · 1 failed" for i in range(20)], text
    assert "\n… and 7 more organisations (see the CSV)\n" in text, text


async def test_a_reminder_once_acknowledged_no_longer_says_the_member_has_not_acknowledged(
        slack_http: SlackHarness) -> None:
    """Anna gets a reminder (a thread reply broadcast to the DM: the latest message she sees) and
    presses Acknowledge on it. Every copy, the reminder too, is updated in place to show the
    acknowledgement, and the reminder stops asking: no "You have not acknowledged ... yet" above
    "Acknowledged by Anna Berg", no "Reminder: please acknowledge" in its notification text."""
    from bot.core.notices.reminders import remind_now

    slack = slack_http
    notice_id = await broadcast(slack.herald, slack.clock, "member:anna@acme.example")
    await slack.herald.outbox.drain()
    original = await Delivery.get(notice_id=notice_id, kind="notice")
    assert await remind_now(await Notice.get(id=notice_id), [original.member_id], now=slack.clock.now()) == 1
    await slack.herald.outbox.drain()
    reminder_row = await Delivery.get(notice_id=notice_id, kind="reminder")
    reminder = next(m for m in slack.fake.messages("DUANNA") if m["ts"] == reminder_row.message_id)
    assert "You have not acknowledged" in str(reminder["blocks"])

    await slack.click(ACK_ACTION, _ack_value(reminder), user="UANNA", message=reminder)
    await listeners_done(slack)
    await wait_until(lambda: Acknowledgement.filter(notice_id=notice_id).exists(), what="the acknowledgement")
    await updates_pushed(slack.herald)

    # the pressed reminder is replaced through the click's response_url, the original by chat.update
    (shown,) = await slack.responses(slack.last_click_key)
    text = str(shown.args["blocks"])
    assert shown.args["replace_original"] is True and "Acknowledged by" in text
    assert "You have not acknowledged" not in text and "Reminder" not in text, text
    assert "please acknowledge" not in shown.args["text"]
    assert [c.args["ts"] for c in slack.fake.calls_to("chat.update")] == [original.message_id]
    updated = next(m for m in slack.fake.messages("DUANNA") if m["ts"] == original.message_id)
    assert "Acknowledged by" in str(updated["blocks"])


async def test_every_slack_member_who_presses_acknowledge_sees_it_taken_without_waiting_for_the_update_budget(
        slack_http: SlackHarness) -> None:
    """A recall to a partner with 50 people on Slack; they all press Acknowledge within the same
    minute. chat.update is Tier 3 and Herald budgets it (HERALD_SLACK_UPDATES_PER_MINUTE: 45 in a
    burst, then ~0.8 a second per workspace), so the outbox's in-place updates of the later copies
    wait seconds to minutes. Each click is answered through its own response_url instead
    (`replace_original`, no chat.update budget): every member's pressed message turns into
    "Acknowledged by <name> at <time>" at once (SPEC), as Teams answers the click with the card."""
    from tests.support import bulk_members

    slack = slack_http
    ids = await bulk_members(50, joined_at=slack.clock.now())
    for member_id in ids:
        slack.fake.add_user(TEAM, f"UB{member_id}")
    notice_id = await broadcast(slack.herald, slack.clock, "org:bulk")
    await slack.herald.outbox.drain()
    assert await Delivery.filter(notice_id=notice_id, status="delivered").count() == 50

    keys = {}
    for member_id in ids:  # everyone presses within the same minute (the clock does not move)
        (message,) = slack.fake.messages(f"DUB{member_id}")
        await slack.click(ACK_ACTION, _ack_value(message), user=f"UB{member_id}", message=message)
        keys[member_id] = slack.last_click_key
    await listeners_done(slack)
    await updates_pushed(slack.herald)  # everything due now is sent: only the budget holds updates back
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 50
    assert slack.fake.call_count("chat.update") < 50  # the budget holds some of the outbox's updates back

    for member_id in ids:
        (answer,) = await slack.responses(keys[member_id])
        assert answer.args.get("replace_original") is True and "Acknowledged by" in str(answer.args["blocks"])
        assert _ack_value_or_none(answer.args) is None  # no Acknowledge button left to press


async def test_acknowledge_clicks_are_answered_over_kept_open_connections(slack_http: SlackHarness) -> None:
    """Each click is answered through its response_url. bolt's own respond() opens a new HTTP
    session, so a new TCP (and in production TLS) connection to hooks.slack.com, per call: at
    hundreds of clicks a second a connection set up and torn down per click. Herald's answers go
    through the connection pool of its Web API calls (bot/handlers/slack/respond.py), so each
    answer comes over a connection that carried other requests too (here the fake stands for both
    hosts, slack.com and hooks.slack.com)."""
    from tests.support import bulk_members

    slack = slack_http
    ids = await bulk_members(3, joined_at=slack.clock.now())
    for member_id in ids:
        slack.fake.add_user(TEAM, f"UB{member_id}")
    await broadcast(slack.herald, slack.clock, "org:bulk")
    await slack.herald.outbox.drain()

    keys = []
    for member_id in ids:  # one after the other: a kept-open connection is free again for the next
        (message,) = slack.fake.messages(f"DUB{member_id}")
        await slack.click(ACK_ACTION, _ack_value(message), user=f"UB{member_id}", message=message)
        keys.append(slack.last_click_key)
        await listeners_done(slack)

    answers = [a for key in keys for a in await slack.responses(key)]
    assert len(answers) == 3 and all("Acknowledged by" in str(a.args["blocks"]) for a in answers)
    uses = Counter(c.peer for c in slack.fake.calls)  # requests per connection, Web API calls too
    assert all(uses[a.peer] > 1 for a in answers), {a.peer: uses[a.peer] for a in answers}  # none opened for one answer


async def test_a_slack_click_that_could_not_be_recorded_tells_the_member_so(slack_http: SlackHarness,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The database refuses the acknowledgement's write (SQLite "database is locked", a PostgreSQL
    failover). Slack already heard its 200 (the listener acks first), so only a response_url
    message can tell the member: the apology every other button gives (SORRY, as the Teams
    Acknowledge answers), so nobody believes an acknowledgement was recorded that was not."""
    from tortoise.exceptions import OperationalError

    from bot.core.notices import acks
    from bot.handlers.slack.common import SORRY

    slack = slack_http
    notice_id = await broadcast(slack.herald, slack.clock, "member:anna@acme.example")
    await slack.herald.outbox.drain()
    (message,) = slack.fake.messages("DUANNA")

    async def database_unavailable(new):  # noqa: ANN001, ANN202 - the storage layer failing, not the handler
        raise OperationalError("database is locked")
    monkeypatch.setattr(acks, "_store", database_unavailable)

    await slack.click(ACK_ACTION, _ack_value(message), user="UANNA", message=message)
    (told,) = await slack.responses(slack.last_click_key)

    assert await Acknowledgement.filter(notice_id=notice_id).count() == 0
    assert told.args["text"] == SORRY and told.args.get("replace_original") is False
    assert told.args.get("response_type") == "ephemeral"


def _ack_value_or_none(message: dict) -> str | None:
    return next((e["value"] for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]
                 if e.get("action_id") == ACK_ACTION), None)


async def test_a_compliance_officer_cannot_press_remind_now(slack_http: SlackHarness) -> None:
    """README: compliance "reads every notice, report and the audit chain but changes nothing".
    The CAM who wrote a delivered must-know notice to Acme is made a compliance officer; pressing
    the escalation's Remind now (a signed Slack click whose value they could edit) is refused and
    queues no reminder, though they are still the notice's author and the directory still names
    them as Acme's CAM: the role is checked first (`permissions.may_act_for_partner`)."""
    slack = slack_http
    monday_9 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, a working hour
    slack.clock.set(monday_9)
    cam = await Staff.get(email="cam@vendor.example")
    command = SendCommand(importance="must-know", topic="announcements", audience="org:acme", title="Recall",
                          body="Stop selling LX-200", deadline=monday_9 + timedelta(days=2))
    preview = await notices.create_draft(cam, command, slack.herald.catalog, now=slack.clock.now())
    await notices.send_draft(preview.notice.id, cam, slack.herald.catalog, now=slack.clock.now())
    await slack.herald.outbox.drain()
    assert await Delivery.filter(notice_id=preview.notice.id, status="delivered").count() == 2
    await add_staff("cam@vendor.example", "compliance", now=slack.clock.now(), actor="ops")

    slack.clock.advance(hours=3)
    await slack.click(REMIND_NOW_ACTION, f"{preview.notice.id}:acme", user=CAM_USER)
    (answer,) = await slack.responses(slack.last_click_key)
    reminders = await Delivery.filter(notice_id=preview.notice.id, kind="reminder").count()
    assert "Queued" not in answer.args["text"] and reminders == 0, (
        f"a compliance officer's Remind now was carried out: {answer.args['text']!r}, {reminders} reminders queued")
    assert "Only the partner's CAM" in answer.args["text"]


async def test_remind_now_says_why_it_queued_fewer_reminders_than_members_waiting(slack_http: SlackHarness) -> None:
    """The deadline of a must-know notice to Keys & Co passes: Di has not acknowledged, and Ed never
    received it (no Slack account on file). The CAM presses the escalation's Remind now twice, a
    minute apart, then once more after Di acknowledged. Herald answered "Queued 1 reminder", then
    "Queued 0 reminders" twice, with nothing on why: the CAM could not tell a button that did
    nothing from one that had just been used, or from a partner with nobody left to remind. Each
    answer now says why fewer reminders were queued than members are waiting."""
    slack = slack_http
    monday_9 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    slack.clock.set(monday_9)
    cam = await Staff.get(email="cam@vendor.example")
    command = SendCommand(importance="must-know", topic="announcements", audience="org:keys", title="Recall",
                          body="Stop selling LX-200", deadline=monday_9 + timedelta(days=2))
    preview = await notices.create_draft(cam, command, slack.herald.catalog, now=slack.clock.now())
    await notices.send_draft(preview.notice.id, cam, slack.herald.catalog, now=slack.clock.now())
    await slack.herald.outbox.drain()
    slack.clock.set(monday_9 + timedelta(days=2))
    await slack.herald.tick()
    await slack.herald.outbox.drain()
    notice_id = preview.notice.id

    async def press() -> str:
        await slack.click(REMIND_NOW_ACTION, f"{notice_id}:keys", user=CAM_USER)
        (answer,) = await slack.responses(slack.last_click_key)
        return answer.args["text"]

    unreached = "1 member never received it (it could not be delivered): a reminder cannot reach them."
    assert await press() == f":bell: Queued 1 reminder for notice #{notice_id}. {unreached}"
    slack.clock.advance(minutes=1)
    assert await press() == (
        f":bell: No reminder was queued for notice #{notice_id}. 1 member of Keys &amp; Co who has not acknowledged "
        f"was reminded in the last 15 minutes and is left alone. {unreached}")
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UDI", now=slack.clock.now())
    assert await press() == f":bell: No reminder was queued for notice #{notice_id}. {unreached}"
    await Member.filter(email="ed@keys.example").update(active=False)  # Ed left Keys & Co
    assert await press() == (f":bell: Nobody at Keys &amp; Co still has to acknowledge notice #{notice_id}: "
                             "no reminder was queued.")
    assert await Delivery.filter(notice_id=notice_id, kind="reminder").count() == 1


async def test_listeners_done_returns_only_once_the_listeners_work_after_the_ack_is_done(
        slack: SlackHarness) -> None:
    """`listeners_done` is what the tests use to wait for bolt's listener tasks (their work runs
    after the ack, so after Slack's request was answered). It looked for "bolt" in each task's
    coroutine, which names only the function (`run_ack_function_asynchronously`), so it waited for
    none; it now waits for every task the app handed to `Herald.answered`, as a stop does."""
    slack.fake.hold("response_url")  # the listener's reply is asked for only after the ack
    reply, _, key = await slack.command("status")
    assert reply.status == 200
    waiting = asyncio.create_task(listeners_done(slack))
    try:
        await wait_until(lambda: [c for c in slack.fake.calls_to("response_url") if c.key == key],
                         what="the reply, held")
        await asyncio.sleep(0)
        assert not waiting.done(), "listeners_done returned while a listener's reply to Slack was still held"
    finally:
        slack.fake.release()
    await asyncio.wait_for(waiting, 10)
    assert slack.herald._answered == set()


# ---- Slack Connect: people of other teams in shared conversations -----------------------------------

STRANGER_TEAM, CONNECTED_TEAM = "T0STRANGER", "T0BOLTHOME"


async def test_a_slack_connect_user_of_a_team_herald_is_not_connected_to_is_refused(slack_http: SlackHarness) -> None:
    """Someone of another company, in a conversation shared with the partner's workspace over Slack
    Connect, acts in that workspace, but their `user.team_id` / `user_team` is their own team. The
    directory's entry for that user id filed under the partner's workspace is not theirs to use:
    their press and their message are refused with a short reason, and nothing is recorded."""
    slack = slack_http
    slack.fake.add_user(TEAM, "UEXT1")
    await import_directory(directory_csv([
        f"acme,Acme Locks,gold,emea,de,security,large,distributor,cam@vendor.example,ext@acme.example,Ex Ternal,"
        f"sales,UTC,en,{TEAM},UEXT1,,"]), now=slack.clock.now(), actor="test")
    notice_id = await broadcast(slack.herald, slack.clock, "org:acme")
    await slack.herald.outbox.drain()
    assert (await Delivery.get(notice_id=notice_id, member__email="ext@acme.example")).status == "delivered"

    response = await slack.click(ACK_ACTION, str(notice_id), user="UEXT1", key="ext-ack",
                                 extra={"user": {"id": "UEXT1", "team_id": STRANGER_TEAM}})
    assert response.status == 200
    (answer,) = await slack.responses("ext-ack")
    assert "Slack Connect" in answer.args["text"] and answer.args.get("replace_original") is False, answer.args
    await listeners_done(slack)
    assert not await Acknowledgement.filter(notice_id=notice_id).exists()

    event = {"type": "message", "channel_type": "im", "channel": "DUEXT1", "user": "UEXT1", "text": "help",
             "ts": "1700000000.000500", "team": TEAM, "user_team": STRANGER_TEAM, "source_team": STRANGER_TEAM}
    before = len(slack.fake.calls_to("chat.postMessage"))  # the notice itself went to DUEXT1
    assert (await slack.post_signed(event_body(event, TEAM, is_ext_shared_channel=True))).status == 200
    (reply,) = await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage")[before:]
                                         if c.channel == "DUEXT1"], what="the reply")
    assert "Slack Connect" in reply.args["text"] and "Herald for partners" not in reply.args["text"]


async def test_a_slack_connect_user_of_a_connected_partner_workspace_is_that_partners_member(
        slack_http: SlackHarness) -> None:
    """The same person's home team is a partner workspace Herald is connected to: they are the
    directory's member filed under their home team, wherever they write from."""
    slack = slack_http
    await add_slack_workspace(CONNECTED_TEAM, "xoxb-bolt-home", now=slack.clock.now(), actor="test")
    await import_directory(directory_csv([
        f"bolt,Bolt Supply,silver,amer,us,retail,small,reseller,cam@vendor.example,val@bolt.example,Val Kim,"
        f"operations,UTC,en,{CONNECTED_TEAM},UVAL,,"]), now=slack.clock.now(), actor="test")
    event = {"type": "message", "channel_type": "im", "channel": "DUVAL", "user": "UVAL", "text": "help",
             "ts": "1700000000.000600", "team": TEAM, "user_team": CONNECTED_TEAM, "source_team": CONNECTED_TEAM}
    slack.fake.add_user(TEAM, "UVAL")
    assert (await slack.post_signed(event_body(event, TEAM, is_ext_shared_channel=True))).status == 200
    (reply,) = await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUVAL"],
                                what="the reply")
    assert "Herald for partners" in reply.args["text"], reply.args["text"]
    assert reply.team_id == TEAM  # answered where they wrote, with that workspace's token
