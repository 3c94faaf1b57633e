"""Pulse surveys and A/B variants in Slack, over real HTTP with signed requests: `/herald survey`,
one-click answers and changed answers, the comment modal, anonymous thresholds in the results,
variant balance, the winner's rollout with no double sends, and escaped user text."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.channels.slack_blocks import SEND_ACTION
from bot.core.notices.views import LINK_ACTION, SURVEY_COMMENT_ACTION
from storage.models import AuditEvent, Delivery, NoticeInteraction, Survey, SurveyAnswer, SurveyAnswerChange
from tests.fakes.slack_signing import interaction_body
from tests.fuzzing import fuzz
from tests.support import (
    CAM_USER, TEAM, SlackHarness, crashes, listeners_done, modal_state, seed_directory, start_harness, stop_harness,
    wait_until,
)
from tests.survey_support import big_directory, members

FUZZ = fuzz()
junk = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=3)), max_leaves=6)


@pytest.fixture
async def slack(db: str):
    harness = await start_harness(db)
    for _, _, user in members():
        harness.fake.add_user("T0PARTNER", user)
    await seed_directory(harness.clock, csv_text=big_directory())
    try:
        yield harness
    finally:
        await stop_harness(harness)


def _elements(blocks: list[dict]) -> list[dict]:
    found = []
    for block in blocks:
        found += block.get("elements", []) if block["type"] == "actions" else []
        if block.get("accessory"):
            found.append(block["accessory"])
    return found


async def _reply(slack: SlackHarness, text: str) -> dict:
    _, body, key = await slack.command(text)
    if body:
        return {"text": body}
    (call,) = await slack.responses(key)
    return call.args


async def _send_from_preview(slack: SlackHarness, preview: dict) -> int:
    (button,) = [e for e in _elements(preview["blocks"]) if e["action_id"] == SEND_ACTION]
    await slack.click(SEND_ACTION, button["value"], user=CAM_USER)
    (sent,) = await slack.responses(slack.last_click_key)
    assert "Sending notice" in sent.args["text"]
    await slack.herald.outbox.drain()
    return int(button["value"])


async def _click(slack: SlackHarness, action_id: str, value: str, user: str) -> dict:
    await slack.click(action_id, value, user=user)
    (reply,) = await slack.responses(slack.last_click_key)
    return reply.args


async def test_survey_answers_changes_comments_and_anonymous_results(slack: SlackHarness) -> None:
    preview = await _reply(slack, "survey announcements all anonymous | How useful is Herald? <!channel> | scale:0-10 "
                                  "| follow-up: What would you change?")
    summary = preview["blocks"][0]["text"]["text"]
    assert "12 recipients" in summary and "Net Promoter Score" in summary and "&lt;!channel&gt;" in summary
    survey_id = await _send_from_preview(slack, preview)

    posts = slack.fake.calls_to("chat.postMessage")
    assert len(posts) == 12 and len({p.channel for p in posts}) == 12
    buttons = [e for e in _elements(posts[0].args["blocks"]) if e["action_id"].startswith("herald_survey_answer")]
    assert [b["text"]["text"] for b in buttons] == [str(n) for n in range(11)]
    assert len({b["action_id"] for b in buttons}) == 11  # Slack wants distinct action ids in a block
    assert posts[0].args["text"] == "[Survey] How useful is Herald? &lt;!channel&gt;"

    answered = await _click(slack, "herald_survey_answer_9", f"{survey_id}:9", "UACME1")
    assert answered["replace_original"] is True and "Your answer: *9*" in str(answered["blocks"])
    for _ in range(2):  # a double click and a Slack retry of the same click
        await _click(slack, "herald_survey_answer_9", f"{survey_id}:9", "UACME1")
    changed = await _click(slack, "herald_survey_answer_4", f"{survey_id}:4", "UACME1")
    assert "Your answer: *4*" in str(changed["blocks"])
    assert await SurveyAnswer.all().count() == 1 and await SurveyAnswerChange.all().count() == 2
    assert (await SurveyAnswer.get()).member_id is None  # type: ignore[attr-defined]

    await slack.click(SURVEY_COMMENT_ACTION, str(survey_id), user="UACME1")
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="the comment form")
    modal = opened.args["view"]
    assert modal["blocks"][0]["label"]["text"] == "What would you change?"
    done = await slack.submit_view({"callback_id": modal["callback_id"], "private_metadata": modal["private_metadata"],
                                    "state": {"values": {"comment": {"value": {"type": "plain_text_input",
                                                                               "value": "Fewer <b>pings</b>"}}}}},
                                   user="UACME1")
    assert done["response_action"] == "update" and "comment is saved" in str(done["view"])
    assert (await SurveyAnswer.get()).comment == "Fewer <b>pings</b>"

    results = await _reply(slack, f"survey results {survey_id}")
    assert "answered *1* of 12" in results["text"] and "results appear once 5 people have answered" in results["text"]
    assert "Fewer" not in results["text"]  # comments stay hidden under the threshold as well
    for _, _, user in members()[1:6]:  # five more, all from acme
        await _click(slack, "herald_survey_answer_10", f"{survey_id}:10", user)
    results = (await _reply(slack, f"survey results {survey_id}"))["text"]
    assert "answered *6* of 12" in results and "NPS: *+67*" in results  # 5 promoters, 1 detractor of 6
    # two answers per role: every (organisation, role) cell is under five, so all are pooled
    assert "other segments (small groups pooled): 6/12" in results and "Acme" not in results
    assert "Fewer &lt;b&gt;pings&lt;/b&gt;" in results
    assert "UACME" not in results and "m1@acme" not in results

    status = (await _reply(slack, f"status {survey_id}"))["text"]
    assert "Answered: *6* of 12 delivered" in status and "Acknowledged" not in status
    refused = await _click(slack, "herald_survey_answer_3", f"{survey_id}:3", "UOUTSIDER")
    assert "not sent to you" in refused["text"] and refused["replace_original"] is False
    closed = await _reply(slack, f"survey close {survey_id}")
    assert f"Survey #{survey_id} is closed" in closed["text"]
    late = await _click(slack, "herald_survey_answer_3", f"{survey_id}:3", "UKEYS1")
    assert "closed" in late["text"]
    await slack.herald.outbox.drain()
    assert slack.fake.call_count("chat.update") == 12  # every copy lost its buttons
    kinds = Counter(await AuditEvent.filter(notice_id=survey_id).values_list("kind", flat=True))
    assert kinds["survey.answered"] == 6 and kinds["survey.answer_changed"] == 1 and kinds["survey.closed"] == 1
    assert kinds["survey.commented"] == 1  # the comment under the same answer is not a changed answer


def _answer_button(message: dict, label: str) -> dict:
    return next(e for e in _elements(message["blocks"]) if e.get("text", {}).get("text") == label)


async def test_a_member_who_got_the_survey_can_answer_it_while_its_send_is_in_doubt(slack: SlackHarness) -> None:
    """Slack posted the survey, but the answer to chat.postMessage was lost: the copy is in doubt
    (`sending`) until the retry looks for it. Its buttons only exist on a message that reached the
    member, so an answer is recorded, as an Acknowledge press is; it was refused ("This survey was
    not sent to you") and lost. The message is left as it is (the retry finds it by what Herald
    posted), so the member is told in a reply of their own, and the retry posts nothing twice."""
    slack.fake.fail_next("chat.postMessage", drop=True, landed=True)
    preview = await _reply(slack, "survey announcements member:m1@acme.example | Ready for Q1? | Yes | No")
    survey_id = await _send_from_preview(slack, preview)  # the post lands; its answer is lost
    (message,) = slack.fake.messages("DUACME1")
    assert (await Delivery.get(notice_id=survey_id)).status == "sending"  # in doubt

    button = _answer_button(message, "Yes")
    await slack.click(button["action_id"], button["value"], user="UACME1", message=message)
    (reply,) = await slack.responses(slack.last_click_key)
    assert reply.args["replace_original"] is False and reply.args["response_type"] == "ephemeral", reply.args
    assert f"Your answer to survey #{survey_id} is saved: Yes" in reply.args["text"]
    assert (await SurveyAnswer.get(survey__notice_id=survey_id)).value == 0

    slack.clock.advance(hours=1)
    await slack.herald.outbox.drain()  # the retry looks for the message first, and finds it
    row = await Delivery.get(notice_id=survey_id)
    assert (row.status, row.message_id) == ("delivered", message["ts"])
    assert slack.fake.call_count("chat.postMessage") == 1 and len(slack.fake.messages("DUACME1")) == 1


async def test_survey_form_preview_and_send(slack: SlackHarness) -> None:
    await slack.command("survey")
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="the survey form")
    form = opened.args["view"]

    def state(**values: str) -> dict:
        return modal_state(("topic", "kind"), **values)

    base = dict(topic="announcements", audience="org:bolt", question="Which format?", kind="options",
                options="Webinar", follow_up="", closes="")
    answer = await slack.submit_view({"callback_id": form["callback_id"], "state": {"values": state(**base)}})
    assert answer["response_action"] == "errors" and "2 to 5 options" in answer["errors"]["options"]
    answer = await slack.submit_view({"callback_id": form["callback_id"],
                                      "state": {"values": state(**{**base, "options": "Webinar\nWorkshop"})}})
    preview = answer["view"]
    assert "4 recipients" in preview["blocks"][0]["text"]["text"]
    sent = await slack.submit_view({"callback_id": preview["callback_id"], "private_metadata": preview["private_metadata"],
                                    "state": {"values": {}}})
    assert "Queueing the notice" in str(sent["view"])
    (told,) = await wait_until(lambda: slack.fake.calls_to("chat.postMessage"), what="the outcome, in a DM")
    assert told.channel == f"D{CAM_USER}" and "Sending notice" in told.args["text"]
    await slack.herald.outbox.drain()
    assert slack.fake.call_count("chat.postMessage") == 1 + 4


async def test_a_bad_close_date_in_the_survey_form_is_shown_under_closes(slack: SlackHarness) -> None:
    """"1 Dec 2026" in the form's Closes field was refused as "deadline '1 Dec 2026' is not an
    ISO-8601 date", under the Audience input (Slack shows each error under the block its key
    names): a "deadline" the form does not have, next to a field that is fine."""
    await slack.command("survey")
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="the survey form")
    form = opened.args["view"]
    base = dict(topic="announcements", audience="org:bolt", question="Which format?", kind="options",
                options="Webinar\nWorkshop", follow_up="")
    for closes, said in (("1 Dec 2026", "close date '1 Dec 2026' is not an ISO-8601 date"),
                         ("2020-01-01", "the close date is in the past")):
        state = modal_state(("topic", "kind"), **base, closes=closes)
        answer = await slack.submit_view({"callback_id": form["callback_id"], "state": {"values": state}})
        assert answer["response_action"] == "errors" and list(answer["errors"]) == ["closes"], answer
        assert answer["errors"]["closes"].startswith(said)


async def test_variants_balanced_then_the_winner_rolled_out_once(slack: SlackHarness) -> None:
    preview = await _reply(slack, "send need-to-know announcements all share:50% link:https://partners.example.com/q3 "
                                  "| Q3 rebate | Details <@U999> || Earn more in Q3 | The same, shorter")
    summary = preview["blocks"][0]["text"]["text"]
    assert "A/B test:* 2 variants" in summary and "first to 50%" in summary and "&lt;@U999&gt;" in summary
    notice_id = await _send_from_preview(slack, preview)
    first = slack.fake.calls_to("chat.postMessage")
    assert len(first) == 6
    assert Counter(p.args["blocks"][0]["text"]["text"] for p in first) == {"Q3 rebate": 3, "Earn more in Q3": 3}
    rows = await Delivery.filter(notice_id=notice_id).values("member__organisation__external_id", "variant", "status")
    sent = Counter((r["member__organisation__external_id"], r["variant"]) for r in rows if r["status"] == "delivered")
    assert sum(sent.values()) == 6  # half of 12, spread over the partners in proportion (3, 2, 1)
    assert {org: sent[(org, "A")] + sent[(org, "B")] for org in ("acme", "bolt", "keys")} == {"acme": 3, "bolt": 2,
                                                                                             "keys": 1}
    assert all(abs(sent[(org, "A")] - sent[(org, "B")]) <= 1 for org in ("acme", "bolt", "keys"))

    link = next(e for e in _elements(first[0].args["blocks"]) if e["action_id"] == LINK_ACTION)
    assert link["url"] == "https://partners.example.com/q3"
    reader = next(p.channel for p in first).replace("D", "", 1)
    await slack.click(LINK_ACTION, str(notice_id), user=reader)
    await wait_until(lambda: NoticeInteraction.filter(notice_id=notice_id).exists(), what="the press counted")

    status = (await _reply(slack, f"status {notice_id}"))["text"]
    assert "Held back for the A/B rollout: *6*" in status
    variants = (await _reply(slack, f"variants {notice_id}"))["text"]
    assert "not enough data yet" in variants and "pressed a button 1" in variants

    rollout = (await _reply(slack, f"rollout {notice_id} B"))["text"]
    assert "Rolling out variant B" in rollout and "6 held-back recipients" in rollout
    assert "already rolled out" in (await _reply(slack, f"rollout {notice_id} B"))["text"]
    assert "rolled out variant B" in (await _reply(slack, f"rollout {notice_id} A"))["text"]
    await slack.herald.outbox.drain()
    await slack.herald.outbox.drain()
    posts = slack.fake.calls_to("chat.postMessage")
    assert len(posts) == 12 and set(Counter(p.channel for p in posts).values()) == {1}
    assert Counter(p.args["blocks"][0]["text"]["text"] for p in posts) == {"Q3 rebate": 3, "Earn more in Q3": 9}
    assert "Held back" not in (await _reply(slack, f"status {notice_id}"))["text"]
    compared = (await _reply(slack, f"variants {notice_id}"))["text"]  # the rollout apart from the experiment
    assert "delivered 3 ·" in compared and "delivered 9" not in compared
    assert "Rollout of variant B to 6 held-back members (not counted above or in the tests): delivered 6" in compared


async def test_a_stop_waits_for_survey_answers_slack_was_already_answered_for(slack: SlackHarness,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack hears its 200 at ack(), before the answer is written, and never sends an answered
    click again: `Herald.settle` (run on SIGTERM before the database closes) waits for the write,
    which runs in the listener's task, handed to `Herald.answered` before the listener starts."""
    from bot.handlers.slack.actions import surveys

    preview = await _reply(slack, "survey announcements all anonymous | How useful is Herald? | scale:0-10")
    survey_id = await _send_from_preview(slack, preview)
    release = asyncio.Event()
    answer_survey = surveys.answer_survey

    async def held_answer(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        await release.wait()
        return await answer_survey(*args, **kwargs)

    monkeypatch.setattr(surveys, "answer_survey", held_answer)
    response = await slack.click("herald_survey_answer_9", f"{survey_id}:9", user="UACME1")
    assert response.status == 200 and await SurveyAnswer.all().count() == 0  # answered, not yet written
    settled = asyncio.create_task(slack.herald.settle())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not settled.done()
    release.set()
    await settled
    assert await SurveyAnswer.all().count() == 1


# ---- the comment modal: the saved comment shows on the survey message ------------------------------

async def _comment_form_of_answered_survey(slack: SlackHarness, *, press_key: str) -> tuple[int, dict, dict]:
    """A survey with a follow-up question, sent to m1@acme; the member answers Yes on its message and
    presses **Add a comment** there (its response_url under `press_key`): (survey id, the message,
    the comment modal Slack was asked to open)."""
    preview = await _reply(slack, "survey announcements member:m1@acme.example | Ready for Q1? | Yes | No "
                                  "| follow-up: What would help?")
    survey_id = await _send_from_preview(slack, preview)
    (message,) = slack.fake.messages("DUACME1")
    button = _answer_button(message, "Yes")
    await slack.click(button["action_id"], button["value"], user="UACME1", message=message)
    await slack.responses(slack.last_click_key)
    await slack.click(SURVEY_COMMENT_ACTION, str(survey_id), user="UACME1", message=message, key=press_key)
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="the comment form")
    return survey_id, message, opened.args["view"]


async def _submit_comment(slack: SlackHarness, modal: dict, text: str, *, metadata: str | None = None) -> dict:
    metadata = modal["private_metadata"] if metadata is None else metadata
    return await slack.submit_view({"callback_id": modal["callback_id"], "private_metadata": metadata,
                                    "state": {"values": {"comment": {"value": {"type": "plain_text_input",
                                                                               "value": text}}}}},
                                   user="UACME1")


async def test_a_comment_saved_in_slack_shows_on_the_survey_message(slack: SlackHarness) -> None:
    """In Teams the card comes back with the comment in its box; in Slack the member answers, presses
    Add a comment, writes it and presses Send: the modal said "Your comment is saved", but the survey
    message was never updated: it still offered "Add a comment" and showed no comment (SPEC:
    "whatever a person can do in Slack they can do in Teams"). The message the member pressed is
    now replaced through that press's response_url, with their answer and comment, spending none of
    chat.update's budget (Tier 3)."""
    survey_id, message, modal = await _comment_form_of_answered_survey(slack, press_key="comment-press")
    done = await _submit_comment(slack, modal, "A price list")
    assert done["response_action"] == "update" and "comment is saved" in str(done["view"])
    await listeners_done(slack)
    await slack.herald.outbox.drain()

    assert (await SurveyAnswer.get(survey__notice_id=survey_id)).comment == "A price list"
    shown = [c.args for c in slack.fake.calls_to("response_url") if c.key == "comment-press"]
    assert shown, "the survey message never showed the saved comment"
    (replaced,) = shown
    assert replaced["replace_original"] is True, replaced
    assert "Your comment: A price list" in str(replaced["blocks"]) and "Your answer: *Yes*" in str(replaced["blocks"])
    assert "Change your comment" in str(replaced["blocks"])
    assert slack.fake.call_count("chat.update") == 0  # the press's response_url, not the Tier 3 budget
    assert slack.fake.messages("DUACME1")[0]["ts"] == message["ts"]


async def test_a_comment_from_a_copy_in_doubt_leaves_the_message_as_it_is(slack: SlackHarness) -> None:
    """The copy's send is in doubt (`sending`: posted, the answer lost): the outbox finds it by what
    Herald posted, so its message is not replaced (as for an answer); the comment is stored and the
    modal says so."""
    slack.fake.fail_next("chat.postMessage", drop=True, landed=True)
    survey_id, _, modal = await _comment_form_of_answered_survey(slack, press_key="doubt-press")
    assert (await Delivery.get(notice_id=survey_id)).status == "sending"
    done = await _submit_comment(slack, modal, "A price list")
    assert "comment is saved" in str(done["view"])
    await listeners_done(slack)
    assert (await SurveyAnswer.get(survey__notice_id=survey_id)).comment == "A price list"
    assert not [c for c in slack.fake.calls_to("response_url") if c.key == "doubt-press"]


async def test_a_refused_response_url_or_an_old_modal_still_saves_the_comment(slack: SlackHarness,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The response_url is valid 30 minutes for 5 uses: a member who wrote longer finds it expired.
    Slack's refusal is logged and the comment stays saved (the modal says so); a modal opened before
    the message's response_url was carried (its metadata the bare survey id) saves it too."""
    survey_id, _, modal = await _comment_form_of_answered_survey(slack, press_key="late-press")
    slack.fake.fail_next("response_url", status=404, error="expired_url")
    assert "comment is saved" in str((await _submit_comment(slack, modal, "First"))["view"])
    await listeners_done(slack)
    assert [c.error for c in slack.fake.calls_to("response_url") if c.key == "late-press"] == ["expired_url"]
    assert (await SurveyAnswer.get(survey__notice_id=survey_id)).comment == "First"

    assert "comment is saved" in str((await _submit_comment(slack, modal, "Second", metadata=str(survey_id)))["view"])
    await listeners_done(slack)
    assert (await SurveyAnswer.get(survey__notice_id=survey_id)).comment == "Second"
    assert len([c for c in slack.fake.calls_to("response_url") if c.key == "late-press"]) == 1
    assert not crashes(caplog), crashes(caplog)


_SURVEY, _PRESS = "<the survey id>", "<the press's response_url>"
_metadata_fields = st.fixed_dictionaries({"notice": st.one_of(st.just(_SURVEY), junk)}, optional={
    "ts": st.one_of(st.just("1700000000.000100"), junk),
    "response_url": st.one_of(st.just(_PRESS), st.sampled_from(["", "ftp://127.0.0.1/x", "http://", "/response/x",
                                                                "http://127.0.0.1:1/x", "https://" + "x" * 3000]),
                              junk)})


@FUZZ
@given(metadata=st.one_of(_metadata_fields, _metadata_fields, junk, st.text(max_size=60),
                          st.lists(st.one_of(st.just(_SURVEY), junk), max_size=3)),
       as_json=st.booleans())
async def test_fuzz_the_comment_modals_private_metadata(slack: SlackHarness, caplog: pytest.LogCaptureFixture,
                                                        metadata, as_json: bool) -> None:  # noqa: ANN001
    """private_metadata comes back in a signed request but is parsed as untrusted input: whatever it
    holds, Slack gets an answer (no 500), nothing crashes, and only a response_url on Slack's side
    (here the fake's) is ever posted to."""
    if not await Survey.exists():
        await _comment_form_of_answered_survey(slack, press_key="fuzz-press")
    survey_id = (await Survey.first()).notice_id  # type: ignore[union-attr]
    press_url = slack.fake.response_url("fuzz-press")

    def filled(value):  # noqa: ANN001, ANN202
        if isinstance(value, dict):
            return {k: filled(v) for k, v in value.items()}
        if isinstance(value, list):
            return [filled(v) for v in value]
        return {_SURVEY: str(survey_id), _PRESS: press_url}.get(value, value) if isinstance(value, str) else value

    value = filled(metadata)
    text = json.dumps(value) if as_json or not isinstance(value, str) else value
    caplog.clear()
    posted = len(slack.fake.calls_to("response_url"))
    reply = await slack.post_signed(interaction_body({
        "type": "view_submission", "team": {"id": TEAM}, "user": {"id": "UACME1"}, "api_app_id": "AHERALD",
        "view": {"type": "modal", "id": "VFUZZ", "callback_id": "herald_survey_comment_submit",
                 "private_metadata": text, "state": {"values": {"comment": {"value": {
                     "type": "plain_text_input", "value": "More training"}}}}}}))
    await listeners_done(slack)
    assert reply.status == 200, reply.body
    assert not crashes(caplog), crashes(caplog)
    assert all(c.key == "fuzz-press" for c in slack.fake.calls_to("response_url")[posted:])
