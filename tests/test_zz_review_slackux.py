"""Review (slackux): what an experienced Slack user or admin would find broken, against Slack's
documented behaviour. Each test fails on the current code for the reason its docstring states."""

from __future__ import annotations

import pytest

from bot.channels.slack_blocks import SEND_ACTION
from storage.models import Notice, Question
from tests.fakes.slack_signing import event_body
from tests.support import CAM_USER, TEAM, SlackHarness, listeners_done, modal_state, wait_until


def _slack_encoded(text: str) -> str:
    """What Slack puts in a slash command's or a message event's `text` for what the person typed:
    "&", "<" and ">" are Slack's control characters and arrive as HTML entities (api.slack.com/docs/formatting:
    "All text in Slack uses the same system of escaping ... & replaced with &amp; < with &lt; > with &gt;")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def _preview_id(slack: SlackHarness, typed: str) -> int:
    response, _, key = await slack.command(_slack_encoded(typed))
    assert response.status == 200
    (call,) = await slack.responses(key)
    return int(next(e["value"] for b in call.args["blocks"] if b["type"] == "actions" for e in b["elements"]
                    if e["action_id"] == SEND_ACTION))


async def _dm(slack: SlackHarness, user: str, text: str, **extra: str) -> dict:
    """A direct message to Herald as Slack delivers it (a `message.im` event); returns the reply."""
    before = slack.fake.call_count("chat.postMessage")
    event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user, "text": text,
             "ts": "1700000000.000900", **extra}
    response = await slack.post_signed(event_body(event, TEAM))
    assert response.status == 200
    await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="Herald's reply")
    return slack.fake.calls_to("chat.postMessage")[-1].args


async def test_a_bad_close_date_in_the_survey_form_is_shown_under_closes(slack_http: SlackHarness) -> None:
    """The survey form's Closes field takes a date. "1 Dec 2026" is refused with "deadline '1 Dec
    2026' is not an ISO-8601 date ...", and Herald's `response_action: errors` puts it under the
    **Audience** input (Slack shows each error under the input block whose block_id is its key):
    the CAM is told about a "deadline" the form does not have, next to a field that is fine."""
    slack = slack_http
    await slack.command("survey")
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="the survey form")
    form = opened.args["view"]
    state = modal_state(("topic", "kind"), topic="announcements", audience="org:acme", question="Which format?",
                        kind="options", options="Webinar\nWorkshop", follow_up="", closes="1 Dec 2026")
    answer = await slack.submit_view({"callback_id": form["callback_id"], "state": {"values": state}})
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == ["closes"], answer["errors"]
