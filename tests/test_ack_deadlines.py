"""Slack wants every request acknowledged within 3 s (else it shows the person an error and sends
the event again) and Teams every request answered within 15 s. Herald answers before any call it makes
to the platform for that request has returned: here the fakes hold those calls unanswered (no
clock involved) while the test checks that the answer came, then let them go and check that the
work was done, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from bot.channels.slack_blocks import SEND_ACTION
from bot.core.notices.views import ACK_ACTION
from storage.models import Acknowledgement, Notice, Question
from tests.fakes.bot_connector import ROUTES as CONNECTOR_ROUTES
from tests.fakes.slack_signing import event_body
from tests.support import CAM_USER, TEAM, SlackHarness, hold_publish, listeners_done, modal_state, wait_until
from tests.teams_support import TeamsRig, actions_of, card_of, sent_from_teams

pytestmark = pytest.mark.usefixtures("warm_knowledge_base")  # the question is answered from it

# every Web API method Herald calls while handling a request, and the response_url
SLACK_CALLS = ("chat.postMessage", "chat.postEphemeral", "chat.update", "chat.delete", "views.open",
               "views.update", "views.publish", "conversations.open", "users.info", "response_url")
# Only when the answer does NOT come: the test fails here instead of hanging.
NO_ANSWER = 10.0

T = TypeVar("T")


async def answered(request: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(request, NO_ANSWER)
    except TimeoutError:
        raise AssertionError("no answer while the platform's calls were held: Herald waited for them") from None


async def _delivered_notice(slack: SlackHarness) -> int:
    _, _, key = await slack.command("send must-know operations all | Recall of LX-200 | Stop selling LX-200")
    (preview,) = await slack.responses(key)
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["action_id"] == SEND_ACTION))
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    # the click is answered at its ack; its listener queues the notice after, then says so
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    delivered = {c.channel for c in slack.fake.calls_to("chat.postMessage") if c.status == 200}
    assert {"DUANNA", "DUBO"} <= delivered, f"the notice was not delivered: {delivered}"
    return notice_id


async def test_slack_requests_are_acknowledged_before_slacks_api_answers(slack: SlackHarness) -> None:
    notice_id = await _delivered_notice(slack)
    await slack.command("send")  # the compose modal
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="views.open")
    await listeners_done(slack)
    slack.fake.hold(*SLACK_CALLS)
    try:
        status, _, key = await answered(slack.command(f"status {notice_id}"))
        assert status.status == 200
        click = await answered(slack.click(ACK_ACTION, str(notice_id), user="UANNA"))
        assert click.status == 200
        question = {"type": "message", "channel_type": "im", "channel": "DUBO", "user": "UBO",
                    "text": "how do i register a deal", "ts": "1700000000.000300"}
        event = await answered(slack.post_signed(event_body(question, TEAM, event_id="EvHELD")))
        assert event.status == 200
        # a modal's submission is answered in the acknowledgement itself (its next view)
        state = modal_state(("topic", "importance"), topic="operations", importance="must-know", audience="all",
                            title="Drill", body="Ignore", link="", deadline="")
        preview = await answered(slack.submit_view({"callback_id": opened.args["view"]["callback_id"],
                                                    "state": {"values": state}}))
        assert preview["response_action"] == "update"
        sent = await answered(slack.submit_view({"callback_id": preview["view"]["callback_id"],
                                                 "private_metadata": preview["view"]["private_metadata"],
                                                 "state": {"values": {}}}))
        assert "Queueing the notice" in sent["view"]["blocks"][0]["text"]["text"]  # the outcome: in a DM
        # the work is under way, waiting on Slack: the status reply and the answer were asked for
        await wait_until(lambda: [c for c in slack.fake.calls_to("response_url") if c.key == key],
                         what="the status reply, held")
        # (the answer to Bo's question: the modal's outcome, a DM to the CAM, is a chat.postMessage too)
        await wait_until(lambda: len([c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUBO"]) == 2,
                         what="the answer, held")
    finally:
        slack.fake.release()
    await listeners_done(slack)
    await slack.herald.settle()
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1
    assert await Question.filter(text="how do i register a deal").count() == 1
    await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == f"D{CAM_USER}"
                              and "Sending notice" in c.args["text"]], what="the modal's outcome, in a DM")
    answers = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUBO"]
    assert len(answers) == 2 and "deal" in json.dumps(answers[-1].args).lower()  # the notice, then the answer


async def test_a_stop_waits_for_the_work_slack_was_answered_for(slack: SlackHarness) -> None:
    """Bolt answers Slack at a listener's ack() and runs the rest in a task of its own, which
    nothing awaited: on SIGTERM `/herald report`'s upload and an assistant's answer were dropped,
    although Slack, answered, never sends those requests again. Every listener's task is handed
    to `Herald.settle`, which a stop awaits (bot.app): it returns only once that work is done."""
    notice_id = await _delivered_notice(slack)
    await listeners_done(slack)
    slack.fake.hold("conversations.open", "chat.postMessage")
    try:
        report = await answered(slack.command(f"report {notice_id}"))
        question = {"type": "message", "channel_type": "im", "channel": "DUBO", "user": "UBO",
                    "text": "how do i register a deal", "ts": "1700000000.000400"}
        event = await answered(slack.post_signed(event_body(question, TEAM, event_id="EvSTOP")))
        assert report[0].status == 200 and event.status == 200
        await wait_until(lambda: slack.fake.calls_to("conversations.open"), what="the report's DM, held")
        await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage")
                                  if c.channel == "DUBO" and "deal" in json.dumps(c.args).lower()],
                         what="the answer, held")
        settled = asyncio.create_task(slack.herald.settle())
        await asyncio.sleep(0)
        assert not settled.done(), "settle() returned while the answered listeners' work was still held"
    finally:
        slack.fake.release()
    await asyncio.wait_for(settled, NO_ANSWER)
    # settled: the work is done, nothing left to wait for
    assert [f["filename"] for f in slack.fake.shared_files] == [f"notice-{notice_id}-report.csv"]
    assert [c for c in slack.fake.calls_to("response_url") if c.key == report[2]]
    assert (await Question.get(text="how do i register a deal")).answer_message_id


async def test_the_preview_modals_send_is_answered_before_the_notice_is_queued(slack_http: SlackHarness,
                                                                               monkeypatch) -> None:  # noqa: ANN001
    """Send in the preview modal queues the notice, one delivery row per recipient: 3.9 s (SQLite) and
    2.9 s (PostgreSQL) for 50,000 recipients on a 2-core machine, more than Slack's 3 s (bolt then
    answers 404 and the CAM sees an error while the notice goes out). Here the queueing is held (a
    large audience) and Slack still gets its answer; the outcome then comes in a direct message."""
    slack = slack_http
    await slack.command("send")  # the compose modal
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="views.open")
    await listeners_done(slack)
    state = modal_state(("topic", "importance"), topic="operations", importance="must-know", audience="all",
                        title="Recall", body="Stop selling", link="", deadline="")
    preview = await slack.submit_view({"callback_id": opened.args["view"]["callback_id"], "state": {"values": state}})
    assert preview["response_action"] == "update"

    notice_id = int(preview["view"]["private_metadata"])
    gate, _ = hold_publish(monkeypatch)  # a big audience's rows being written
    try:  # the queueing is still under way (held) when Slack's request must be answered
        sent = await answered(slack.submit_view({"callback_id": preview["view"]["callback_id"],
                                                 "private_metadata": preview["view"]["private_metadata"],
                                                 "state": {"values": {}}}))
        # the send itself was stored before the answer: a kill now does not lose it
        assert (await Notice.get(id=notice_id)).status == "scheduled"
    finally:
        gate.set()
    assert sent["response_action"] == "update" and "Queueing the notice" in str(sent["view"])

    def told() -> list:
        return [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == f"D{CAM_USER}"]
    (dm,) = await wait_until(told, what="the outcome in the CAM's direct messages")
    assert f"Sending notice #{notice_id}" in dm.args["text"]
    assert (await Notice.get(id=notice_id)).status != "draft"


async def test_teams_requests_are_answered_before_the_bot_connector_answers(teams: TeamsRig) -> None:
    """An invoke's answer is the updated card, in the HTTP response; a message's replies go out
    through the Bot Connector after the request is answered (they were sent inside the request, so
    a slow or throttling connector made Teams wait for them)."""
    notice_id = await sent_from_teams(teams, "send must-know operations org:teamsco | Recall of LX-200 | Stop selling")
    second = await teams.say("aad-cam", "send nice-to-know operations org:teamsco | Drill | Ignore")
    second_id = actions_of(card_of(second))[0]["data"]["notice_id"]
    replies = len(teams.connector.activities("a:conv-aad-fay"))
    teams.connector.hold(*CONNECTOR_ROUTES)
    try:
        answer = await answered(teams.invoke("aad-eve", "herald.ack", {"notice_id": notice_id}))
        assert "Acknowledged by **Eve Moreau**" in str(answer["value"])
        # the Send has work after its answer (the outbox rows, then "is out" in the chat, held
        # here): only the answer is awaited
        press = teams.activity("invoke", "aad-cam", name="adaptiveCard/action",
                               value={"action": {"type": "Action.Execute", "verb": "herald.send",
                                                 "data": {"notice_id": second_id}}})
        status, sending = await answered(teams.post(press, settle=False))
        assert status == 200 and "Sending notice" in str(sending["value"])
        question = teams.activity("message", "aad-fay", text="how do i register a deal")
        status, _ = await answered(teams.post(question, settle=False))
        assert status == 200
        await wait_until(lambda: [c for c in teams.connector.calls if c.conversation_id == "a:conv-aad-fay"
                                  and c.route in ("send_activity", "reply_activity")][replies:],
                         what="the answer, held")
    finally:
        teams.connector.release()
    await teams.herald.settle()
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1
    answer = teams.connector.activities("a:conv-aad-fay")[-1]
    assert len(teams.connector.activities("a:conv-aad-fay")) == replies + 1
    assert "How do I register a deal?" in str(answer)
