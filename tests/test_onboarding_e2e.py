"""The onboarding assistant end to end in Slack and Teams: a question answered from the knowledge
base (or honestly not), feedback, hand-off to the CAM and the reply relayed; preferences."""

from __future__ import annotations

import logging
import time

import pytest

from bot.channels.slack_blocks import SEND_ACTION
from bot.core.directory.importer import import_directory
from bot.core.onboarding.assistant import ASK_CAM_ACTION, HELPFUL_ACTION, NOT_HELPFUL_ACTION, REPLY_ACTION
from bot.core.onboarding.learning import LEARN_ENTRY_ACTION, LEARN_PHRASING_ACTION
from storage.models import KBProposal, Member, OutboundMessage, Question, Staff
from tests.fakes.slack_signing import event_body
from tests.support import (
    CAM_USER, TEAM, SlackHarness, listeners_done, many_members_csv, slack_encoded, wait_until,
)

pytestmark = pytest.mark.usefixtures("warm_knowledge_base")  # questions are answered from it
PARKING = "is there parking for visitors at your headquarters"


async def _notice_in_annas_dm(slack: SlackHarness) -> str:
    """Send a notice to Acme; the ts of Anna's copy (a message partners reply under in a thread)."""
    _, _, key = await slack.command("send need-to-know announcements org:acme | Deal desk | Register deals early")
    (preview,) = await slack.responses(key)
    await slack.click(SEND_ACTION, next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                                        for e in b["elements"] if e["action_id"] == SEND_ACTION), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    (copy,) = slack.fake.messages("DUANNA")
    return copy["ts"]


def _buttons(blocks: list[dict]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def _dm(slack: SlackHarness, user: str, text: str, **extra: object) -> dict:
    """A direct message to Herald as Slack delivers it (a `message.im` event); returns Herald's reply."""
    before = slack.fake.call_count("chat.postMessage")
    event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user, "text": text,
             "ts": "1700000000.000100", **extra}
    response = await slack.post_signed(event_body(event, TEAM))
    assert response.status == 200
    await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="the answer")
    return slack.fake.calls_to("chat.postMessage")[-1].args


async def test_question_answered_with_source_and_buttons(slack: SlackHarness) -> None:
    answer = await _dm(slack, "UANNA", "how do i regsiter a deal with northwind")
    assert answer["channel"] == "DUANNA"
    text = str(answer["blocks"])
    assert "How do I register a deal?" in text and "https://partners.northwind.example/sales/deal-registration" in text
    assert [a for a, _ in _buttons(answer["blocks"])] == [HELPFUL_ACTION, NOT_HELPFUL_ACTION, ASK_CAM_ACTION]
    question = await Question.get()
    assert question.entry_id == "deal-registration-how" and not question.abstained

    await slack.click(HELPFUL_ACTION, str(question.id), user="UANNA")
    (thanks,) = await slack.responses(slack.last_click_key)
    assert "geholfen" in thanks.args["text"]  # Anna's directory locale is de: the assistant's words are German
    assert (await Question.get(id=question.id)).feedback == "helpful"


async def test_a_partners_question_is_stored_as_typed(slack_http: SlackHarness) -> None:
    """Slack's message events carry & < > as &amp; &lt; &gt; too. The question is what the partner
    typed: with the entities the CAM's hand-off and the console showed "T&amp;C", and the
    assistant searched for "amp", "lt" and "gt"."""
    typed = "Where are the T&C for MDF <funds>?"
    await _dm(slack_http, "UANNA", slack_encoded(typed))
    assert (await Question.get()).text == typed


async def test_slacks_retry_of_a_question_is_answered_once(slack: SlackHarness,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Slack sends an event again when it got no 200 within 3 s: a new request (over HTTP a new
    timestamp and signature) with the same event_id. The question is stored and answered once."""
    event = {"type": "message", "channel_type": "im", "channel": "DUANNA", "user": "UANNA",
             "text": "how do i register a deal", "ts": "1700000000.000200"}
    body = event_body(event, TEAM, event_id="EvRETRIED")
    assert (await slack.post_signed(body)).status == 200
    await wait_until(lambda: slack.fake.call_count("chat.postMessage") == 1, what="the answer")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bot.handlers.slack.app"):
        # signed 30 s earlier than the first: another signature, so only the event_id tells it apart
        assert (await slack.post_signed(body, timestamp=int(time.time()) - 30)).status == 200
    # decided before the acknowledgement, so before the request could reach the listener
    assert any("retry of event EvRETRIED" in r.getMessage() for r in caplog.records)
    await _dm(slack, "UBO", "how do i register a deal")  # a later question, answered after the retry was seen
    assert slack.fake.call_count("chat.postMessage") == 2
    assert await Question.all().count() == 2


async def test_unknown_question_says_so_and_hands_off_to_the_cam(slack: SlackHarness) -> None:
    answer = await _dm(slack, "UANNA", "what will the weather be like in lisbon on saturday")
    assert "Das weiß ich noch nicht" in str(answer["blocks"])  # "I don't know that one yet": Anna's locale is de
    assert [a for a, _ in _buttons(answer["blocks"])] == [ASK_CAM_ACTION]
    question = await Question.get()
    assert question.abstained and question.entry_id == ""

    await slack.click(ASK_CAM_ACTION, str(question.id), user="UBO")  # not Bo's question
    (refused,) = await slack.responses(slack.last_click_key)
    assert "Only the person who asked" in refused.args["text"]

    await slack.click(ASK_CAM_ACTION, str(question.id), user="UANNA")
    (passed,) = await slack.responses(slack.last_click_key)
    assert "Ich habe Ihre Frage an Casey CAM weitergeleitet" in passed.args["text"]
    await slack.herald.outbox.drain()  # the worker the hand-off wakes
    handoff = await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUCAM1"],
                               what="the CAM's DM")
    text = str(handoff[0].args["blocks"])
    assert "lisbon" in text and "Anna Berg" in text and "Acme Locks (gold)" in text
    assert _buttons(handoff[0].args["blocks"]) == [(REPLY_ACTION, str(question.id)),
                                                   (LEARN_ENTRY_ACTION, str(question.id))]  # test_qa_learning.py

    _, _, key = await slack.command("questions")
    (reply,) = await slack.responses(key)
    assert f"#{question.id}" in reply.args["text"] and "lisbon" in reply.args["text"]

    await slack.click(REPLY_ACTION, str(question.id), user=CAM_USER)
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="the reply form")
    view = opened.args["view"]
    answer = await slack.submit_view({"callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
                                      "state": {"values": {"reply": {"value": {"type": "plain_text_input",
                                                                               "value": "Sunny, 24 degrees <!channel>"}}}}})
    assert answer["response_action"] == "update" and "on its way" in str(answer["view"])
    assert await slack.herald.outbox.drain() == 1  # the worker the reply wakes: the relay alone
    relay = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUANNA"][-1]
    relayed = str(relay.args["blocks"])
    assert "Casey CAM hat Ihre Frage beantwortet" in relayed and "Sunny, 24 degrees &lt;!channel&gt;" in relayed
    stored = await Question.get(id=question.id)
    assert stored.handoff_status == "answered" and stored.replied_by == "cam@vendor.example"

    from bot.core.onboarding.assistant import unanswered_questions

    assert [q.id for q in await unanswered_questions()] == [question.id]  # for knowledge-base authors


async def test_the_slack_reply_form_shows_the_answer_a_colleague_already_sent(slack_http: SlackHarness) -> None:
    """Anna's question went to Casey, her CAM; an admin answered it from the console while Casey was
    away. Casey, back, pressed Reply on the hand-off in Slack: the form was an empty box, with no
    word that Anna had her answer, so Casey answered again and Anna got two answers (Teams' reply
    card shows the answer and who sent it). The Slack form now shows the hand-off as it stands,
    the answer sent and by whom; and a press by someone who may not answer opens no form at all."""
    from bot.core.directory.staff import add_staff

    slack = slack_http
    anna = await Member.get(email="anna@acme.example")
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=slack.clock.now(), abstained=True, channel_id="DUANNA")
    await slack.herald.hand_off_question(question.id, anna)
    admin, _ = await add_staff("ada@vendor.example", "admin", name="Ada Admin", now=slack.clock.now())
    await slack.herald.relay_reply(question.id, admin, "Page 4 of the partner portal.")
    await slack.herald.outbox.drain()

    await slack.click(REPLY_ACTION, str(question.id), user=CAM_USER)
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="the reply form")
    shown = str(opened.args["view"]["blocks"])
    assert "Where is the price list?" in shown and "Anna Berg" in shown
    assert 'Answered by Ada Admin: "Page 4 of the partner portal."' in shown, shown  # her name, not her email

    await slack.click(REPLY_ACTION, str(question.id), user="UBO")  # a partner contact, not staff
    (refused,) = await slack.responses(slack.last_click_key)
    assert "Only the partner's CAM or an admin" in refused.args["text"]
    assert len(slack.fake.calls_to("views.open")) == 1
    await Staff.filter(email="ada@vendor.example").update(name="")  # no name on file: her email says who
    await slack.click(REPLY_ACTION, str(question.id), user=CAM_USER)
    again = await wait_until(lambda: slack.fake.calls_to("views.open")[1:], what="the reply form again")
    assert 'Answered by ada@vendor.example: "Page 4' in str(again[0].args["view"]["blocks"])


async def test_a_question_while_no_knowledge_base_can_be_loaded_is_passed_on_not_left_unanswered(
        db: str, tmp_path, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    """`herald serve` checks the knowledge base at start-up; if its files become unusable before
    one was loaded, a partner's question used to raise and get no reply at all. It is recorded,
    the partner is told the knowledge base is not available and offered their CAM, and the log
    says why once, not for every question."""
    from tests.support import seed_directory, start_harness, stop_harness

    broken = tmp_path / "kb"
    broken.mkdir()
    (broken / "kb.yaml").write_text("vendor: Acme\nentries:\n  - id: a\n    title: A?\n    answr: B.\n",
                                    encoding="utf-8")
    slack = await start_harness(db, extra_settings={"kb_dir": broken, "kb_semantic": False})
    try:
        await seed_directory(slack.clock)
        with caplog.at_level(logging.ERROR, logger="bot.service"):
            answer = await _dm(slack, "UANNA", "how do i register a deal")
            await _dm(slack, "UBO", "how do i register a deal")
        assert "nicht verfügbar" in str(answer["blocks"])  # "not available", in Anna's German
        question = await Question.filter(member__email="anna@acme.example").get()
        assert question.abstained and _buttons(answer["blocks"]) == [(ASK_CAM_ACTION, str(question.id))]
        logged = [r.getMessage() for r in caplog.records if r.name == "bot.service"]
        assert len(logged) == 1 and "unknown field(s) answr" in logged[0], logged
    finally:
        await stop_harness(slack)


async def test_a_question_asked_in_a_thread_is_answered_in_that_thread(slack_http: SlackHarness) -> None:
    """A partner asks in the thread under a notice in Herald's DM. The answer, a reply that stayed
    to the text, and the CAM's relayed answer (queued later, from the question row, through the
    outbox) are replies in that thread (chat.postMessage's `thread_ts`), not at the DM's top level."""
    slack = slack_http
    thread = await _notice_in_annas_dm(slack)
    answer = await _dm(slack, "UANNA", "what will the weather be like in lisbon on saturday", thread_ts=thread)
    assert answer["channel"] == "DUANNA" and answer.get("thread_ts") == thread
    question = await Question.get()
    assert question.thread_id == thread
    refused = await _dm(slack, "UANNA", "send must-know operations all | x | y", thread_ts=thread)
    assert refused.get("thread_ts") == thread

    await slack.click(ASK_CAM_ACTION, str(question.id), user="UANNA")
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    handoff = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUCAM1"][-1]
    assert "thread_ts" not in handoff.args  # the CAM's own DM: a new message
    await slack.herald.relay_reply(question.id, await Staff.get(email="cam@vendor.example"), "Sunny, 24 degrees")
    await slack.herald.outbox.drain()
    relay = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUANNA"][-1]
    assert "Sunny, 24 degrees" in str(relay.args["blocks"]) and relay.args.get("thread_ts") == thread
    replies = [m for m in slack.fake.messages("DUANNA") if m.get("thread_ts") == thread and m["ts"] != thread]
    assert len(replies) == 3 and len(slack.fake.messages("DUANNA")) == 4  # the notice and its thread


async def test_an_answer_to_a_question_at_the_top_level_is_not_threaded(slack_http: SlackHarness) -> None:
    answer = await _dm(slack_http, "UANNA", "how do i register a deal")
    assert "thread_ts" not in answer and (await Question.get()).thread_id == ""


async def test_a_question_with_a_screenshot_attached_is_answered(slack_http: SlackHarness) -> None:
    """A question with a file attached is a `message` event with subtype `file_share` (the words in
    `text`), and one also sent to the conversation from a thread is `thread_broadcast`: Herald
    dropped every subtype, so the partner got no answer at all. A file with no words is answered
    with a sentence saying files are not read; edits and deletions are still not questions."""
    slack = slack_http
    screenshot = [{"id": "F0SCREEN", "name": "screenshot.png", "mimetype": "image/png"}]
    answer = await _dm(slack, "UANNA", "how do i register a deal", subtype="file_share", files=screenshot)
    assert answer["channel"] == "DUANNA" and "How do I register a deal?" in str(answer["blocks"])
    alone = await _dm(slack, "UANNA", "", subtype="file_share", files=screenshot)
    assert "I can only read text, not files" in alone["text"]
    assert await Question.all().count() == 1
    for subtype, extra in (("message_changed", {"message": {"text": "how do i register a deal"}}),
                           ("message_deleted", {"deleted_ts": "1700000000.000100"}), ("bot_message", {})):
        event = {"type": "message", "subtype": subtype, "channel_type": "im", "channel": "DUANNA", "user": "UANNA",
                 "text": "how do i register a deal", "ts": "1700000000.000700", **extra}
        assert (await slack.post_signed(event_body(event, TEAM))).status == 200
    await listeners_done(slack)
    assert await Question.all().count() == 1 and slack.fake.call_count("chat.postMessage") == 2
    thread = (await Question.get()).answer_message_id  # a thread under Herald's answer, also sent to the DM
    broadcast = await _dm(slack, "UANNA", "and who approves it?", subtype="thread_broadcast", thread_ts=thread)
    assert broadcast.get("thread_ts") == thread and await Question.all().count() == 2


async def test_entry_for_another_role_is_answered_saying_whom_it_is_for(slack: SlackHarness) -> None:
    # deal registration is tagged for sales; Bo is support: he still gets it, told it is mainly for sales
    answer = await _dm(slack, "UBO", "how do I register a deal with you?")
    text = str(answer["blocks"])
    assert "How do I register a deal?" in text and "This is mainly for sales." in text
    question = await Question.get()
    assert question.entry_id == "deal-registration-how" and not question.abstained


async def test_confidential_entry_is_withheld_and_the_cam_offered(slack: SlackHarness) -> None:
    # the volume rebate is confidential to executive/operations at gold/platinum partners; Anna is sales
    answer = await _dm(slack, "UANNA", "how does the volume rebate work")
    text = str(answer["blocks"])
    assert "vertraulich" in text and "2.5%" not in text and "volume rebate" not in text.lower()  # confidential
    assert [a for a, _ in _buttons(answer["blocks"])] == [ASK_CAM_ACTION]
    question = await Question.get()
    assert question.abstained and question.entry_id == "rebate-volume"

    await slack.click(ASK_CAM_ACTION, str(question.id), user="UANNA")
    (passed,) = await slack.responses(slack.last_click_key)
    assert "Ich habe Ihre Frage an Casey CAM weitergeleitet" in passed.args["text"]
    await slack.herald.outbox.drain()  # the worker the hand-off wakes
    handoff = await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUCAM1"],
                               what="the CAM's DM")
    assert "confidential answer (rebate-volume)" in str(handoff[0].args["blocks"])


async def test_app_home_shows_and_saves_preferences(slack: SlackHarness) -> None:
    response = await slack.post_signed(event_body({"type": "app_home_opened", "user": "UANNA", "tab": "home"}, TEAM))
    assert response.status == 200
    (published,) = await wait_until(lambda: slack.fake.calls_to("views.publish"), what="the home tab")
    view = published.args["view"]
    assert view["type"] == "home" and "Your Herald preferences" in str(view)
    payload = {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": "UANNA"}, "api_app_id": "AHERALD",
               "trigger_id": "t", "container": {"type": "view"}, "view": view,
               "actions": [{"action_id": "herald_pref_digest", "type": "static_select",
                            "selected_option": {"value": "weekly"}}]}
    from tests.fakes.slack_signing import interaction_body

    await slack.post_signed(interaction_body(payload))
    await wait_until(lambda: len(slack.fake.calls_to("views.publish")) >= 2, what="the updated home tab")
    assert (await Member.get(email="anna@acme.example")).digest_frequency == "weekly"
    assert "Saved." in str(slack.fake.calls_to("views.publish")[-1].args["view"])


def test_more_than_ten_optional_topics_fit_the_home_tab() -> None:
    """Block Kit: a checkboxes element holds at most 10 options; with more, Slack refuses the whole tab."""
    from bot.channels.slack_blocks import home_view
    from bot.core.directory.preferences import Preferences
    from bot.topics.catalog import parse_catalog

    keys = [f"topic-{i:02d}" for i in range(12)]
    catalog = parse_catalog({"roles": ["sales"], "topics": {k: {"title": k.title(), "opt_out": True} for k in keys}})
    prefs = Preferences("UTC", 20, 8, "daily", {k: k != "topic-11" for k in keys}, [])
    boxes = [b for b in home_view(prefs, catalog)["blocks"] if b.get("accessory", {}).get("type") == "checkboxes"]
    assert [len(b["accessory"]["options"]) for b in boxes] == [10, 2]
    assert len({b["block_id"] for b in boxes}) == 2
    assert [o["value"] for b in boxes for o in b["accessory"]["initial_options"]] == keys[:11]


async def test_a_topics_change_saves_only_the_topics_of_its_block(slack: SlackHarness) -> None:
    """The Home tab's topics come in blocks of ten; a change carries only its block's selection."""
    from tests.fakes.slack_signing import interaction_body

    await slack.post_signed(event_body({"type": "app_home_opened", "user": "UANNA", "tab": "home"}, TEAM))
    (published,) = await wait_until(lambda: slack.fake.calls_to("views.publish"), what="the home tab")
    view = published.args["view"]
    [block] = [b for b in view["blocks"] if b.get("accessory", {}).get("action_id") == "herald_pref_topics"]
    options = block["accessory"]["options"]
    other = {**block, "block_id": "pref_topics_1", "accessory": {**block["accessory"], "options": [
        {"text": {"type": "plain_text", "text": "Elsewhere"}, "value": "not-a-topic"}]}}
    view = {**view, "blocks": [other, *view["blocks"]]}  # another block of topics, before the one changed
    payload = {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": "UANNA"}, "api_app_id": "AHERALD",
               "trigger_id": "t", "container": {"type": "view"}, "view": view,
               "actions": [{"action_id": "herald_pref_topics", "type": "checkboxes", "block_id": block["block_id"],
                            "selected_options": options[1:]}]}
    await slack.post_signed(interaction_body(payload))
    await wait_until(lambda: len(slack.fake.calls_to("views.publish")) >= 2, what="the updated home tab")

    anna = await Member.get(email="anna@acme.example")
    assert anna.topic_opt_outs == [options[0]["value"]]  # the unknown topic of the other block was not sent


async def test_teams_question_hand_off_reply_and_preferences(db: str) -> None:
    from tests.teams_support import actions_of, card_of, start_teams_rig, stop_teams_rig

    teams = await start_teams_rig(db)
    try:
        await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
        answer = card_of(await teams.say("aad-fay", "how do i register a new deal"))
        assert "How do I register a deal?" in str(answer)
        verbs = [a["verb"] for a in actions_of(answer)]
        assert verbs == [HELPFUL_ACTION, NOT_HELPFUL_ACTION, ASK_CAM_ACTION]
        question_id = int(actions_of(answer)[2]["data"]["value"])

        told = await teams.invoke("aad-fay", ASK_CAM_ACTION, {"value": str(question_id)})
        assert "J'ai transmis votre question à Casey CAM" in told["value"]  # Fay's directory locale is fr
        await teams.herald.outbox.drain()  # the worker the hand-off wakes
        handoff = card_of(teams.connector.activities("a:conv-aad-cam")[-1])
        assert "Fay Roux" in str(handoff) and [a["verb"] for a in actions_of(handoff)] == [
            REPLY_ACTION, LEARN_PHRASING_ACTION, LEARN_ENTRY_ACTION]
        form = await teams.invoke("aad-cam", REPLY_ACTION, actions_of(handoff)[0]["data"])
        submit = actions_of(form["value"])[0]
        done = await teams.invoke("aad-cam", submit["verb"], {**submit["data"], "reply": "Use the portal, I'll call you"})
        assert "sent to the partner" in str(done["value"])
        assert await teams.herald.outbox.drain() == 1  # the worker the reply wakes: the relay alone
        relay = card_of(teams.connector.activities("a:conv-aad-fay")[-1])
        assert "Casey CAM a répondu à votre question" in str(relay) and "I'll call you" in str(relay)
        learned = await teams.invoke("aad-cam", LEARN_ENTRY_ACTION, actions_of(handoff)[2]["data"])
        assert "Proposed #" in str(learned["value"]) and "new entry with your reply" in str(learned["value"])

        # tags shape relevance: Gus (support) is answered the sales entry, told whom it is for;
        # Fay (sales) is not shown the confidential volume rebate entry, and is offered her CAM
        tagged = card_of(await teams.say("aad-gus", "how do I register a deal with you?"))
        assert "How do I register a deal?" in str(tagged) and "Ceci s'adresse surtout à sales." in str(tagged)
        withheld = card_of(await teams.say("aad-fay", "how does the volume rebate work"))
        assert "confidentielle" in str(withheld) and "2.5%" not in str(withheld)
        assert [a["verb"] for a in actions_of(withheld)] == [ASK_CAM_ACTION]

        prefs = card_of(await teams.say("aad-fay", "preferences"))
        assert "Your Herald preferences" in str(prefs)
        saved = await teams.invoke("aad-fay", "herald.preferences_save", {"timezone": "Mars/Olympus"})
        assert "Not saved" in str(saved["value"])
        saved = await teams.invoke("aad-fay", "herald.preferences_save",
                                   {"timezone": "Europe/Lisbon", "digest_frequency": "weekly", "topic:incentives": "false"})
        assert "Saved." in str(saved["value"])
        fay = await Member.get(email="fay@teamsco.example")
        assert fay.timezone == "Europe/Lisbon" and fay.digest_frequency == "weekly" and "incentives" in fay.topic_opt_outs
    finally:
        await stop_teams_rig(teams)


async def test_a_teams_hand_off_nobody_answers_is_reminded_once_and_the_partner_told(db: str) -> None:
    """In Teams as in Slack: Fay's hand-off waits a day unanswered; the tick reminds Casey CAM
    (a card with the wait, Fay, her question and Reply) and tells Fay, in French, that her question
    is still with Casey CAM. After a restart nothing is sent again."""
    from tests.teams_support import actions_of, card_of, restart_teams_rig, start_teams_rig, stop_teams_rig, texts_of

    teams = await start_teams_rig(db)
    try:
        await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
        answer = card_of(await teams.say("aad-fay", "how do i register a new deal"))
        question_id = int(actions_of(answer)[2]["data"]["value"])
        await teams.invoke("aad-fay", ASK_CAM_ACTION, {"value": str(question_id)})
        await teams.herald.outbox.drain()
        to_cam, to_fay = (len(teams.connector.activities(c)) for c in ("a:conv-aad-cam", "a:conv-aad-fay"))

        teams.clock.advance(hours=25)
        assert (await teams.herald.tick())["handoffs_reminded"] == 1
        await teams.herald.outbox.drain()
        await teams.herald.outbox.drain()  # the note to Fay, queued when the reminder went
        (reminder,) = [card_of(a) for a in teams.connector.activities("a:conv-aad-cam")[to_cam:]]
        text = " ".join(texts_of(reminder))
        assert "still waiting for your answer" in text and "Fay Roux has waited 25 hours" in text, text
        assert "how do i register a new deal" in text
        assert [a["verb"] for a in actions_of(reminder)][0] == REPLY_ACTION
        notes = [" ".join(texts_of(card_of(a))) for a in teams.connector.activities("a:conv-aad-fay")[to_fay:]]
        assert [n for n in notes if "toujours entre les mains de Casey CAM" in n], notes

        await restart_teams_rig(teams)
        teams.clock.advance(days=3)
        await teams.herald.tick()
        await teams.herald.outbox.drain()
        assert len(teams.connector.activities("a:conv-aad-cam")) == to_cam + 1
        assert len([a for a in teams.connector.activities("a:conv-aad-fay")[to_fay:]
                    if "toujours" in " ".join(texts_of(card_of(a)))]) == 1
    finally:
        await stop_teams_rig(teams)


async def test_the_teams_preferences_card_refuses_an_empty_time_zone_as_slack_does(teams) -> None:  # noqa: ANN001
    """Clearing the time zone on the Teams card and pressing Save must say why nothing was saved
    (Slack's Home tab answers "the time zone is empty"), not "Saved." with nothing changed."""
    before = (await Member.get(email="fay@teamsco.example")).timezone
    for cleared in ("", "   "):
        saved = await teams.invoke("aad-fay", "herald.preferences_save", {"timezone": cleared, "digest_frequency": "weekly"})
        assert "Not saved: the time zone is empty" in str(saved["value"]), saved["value"]
    fay = await Member.get(email="fay@teamsco.example")
    assert fay.timezone == before and fay.digest_frequency != "weekly"


async def test_a_picture_sent_to_herald_in_teams_without_words_is_answered_as_in_slack(teams) -> None:  # noqa: ANN001
    """A partner who pastes a screenshot (or shares a file) in their Teams chat with Herald sends a
    message with attachments and no text: Slack answers such a message with a sentence saying files
    are not read, Teams answered nothing at all. Words with the picture are still a question."""
    from tests.teams_support import card_of

    screenshot = [{"contentType": "image/*", "contentUrl": "https://smba.example/v3/attachments/1/views/original"},
                  {"contentType": "text/html", "content": '<div><img src="https://smba.example/1" alt="image"></div>'}]
    before = len(teams.connector.activities("a:conv-aad-fay"))
    status, _ = await teams.post(teams.activity("message", "aad-fay", attachments=screenshot))
    replies = teams.connector.activities("a:conv-aad-fay")[before:]
    assert status == 200 and len(replies) == 1, "Herald said nothing to a partner who sent a picture"
    assert "I can only read text, not files or images" in replies[0]["text"]
    assert await Question.all().count() == 0
    status, _ = await teams.post(teams.activity("message", "aad-fay", text="how do i register a new deal",
                                                attachments=screenshot))
    assert "How do I register a deal?" in str(card_of(teams.connector.activities("a:conv-aad-fay")[-1]))
    assert await Question.all().count() == 1


async def test_the_teams_reply_form_keeps_the_question_it_answers_in_view(db: str) -> None:
    """Pressing Reply in Teams replaces the hand-off card with the reply form: the question, the
    partner and the knowledge base's suggestion stay on it above the input (Slack's modal leaves
    the hand-off message in place)."""
    from tests.teams_support import start_teams_rig, stop_teams_rig, texts_of

    teams = await start_teams_rig(db, kb_semantic=False)
    try:
        await teams.say("aad-cam", "help")  # the CAM has talked to Herald: hand-offs reach them in Teams
        await teams.say("aad-fay", PARKING)
        question = await Question.get()
        await teams.invoke("aad-fay", ASK_CAM_ACTION, {"value": str(question.id)})
        await teams.herald.outbox.drain()
        form = await teams.invoke("aad-cam", REPLY_ACTION, {"value": str(question.id)})
        shown = " ".join(texts_of(form["value"]))
        assert PARKING in shown and "Fay Roux" in shown and "The knowledge base had no answer." in shown
        assert "Your answer to the partner" in shown
        refused = await teams.invoke("aad-fay", REPLY_ACTION, {"value": str(question.id)})  # not the CAM
        assert "Only the partner's CAM or an admin" in str(refused["value"]) and PARKING not in str(refused)
    finally:
        await stop_teams_rig(teams)


async def test_after_replying_in_teams_the_card_offers_the_reply_as_a_kb_entry(db: str) -> None:
    """README: under a handed-off question the CAM gets **Add my reply as a KB entry** (after
    replying). In Teams, Reply replaces the hand-off card with the reply form; after Send the card
    is the hand-off again, with the reply, "on its way", and the buttons usable now (it used to say
    only "on its way", so the button was gone exactly when it became usable)."""
    from tests.teams_support import actions_of, card_of, start_teams_rig, stop_teams_rig, texts_of

    teams = await start_teams_rig(db, kb_semantic=False)
    try:
        await teams.say("aad-cam", "help")  # the CAM has talked to Herald: hand-offs reach them in Teams
        answer = card_of(await teams.say("aad-fay", PARKING))
        assert [a["verb"] for a in actions_of(answer)] == [ASK_CAM_ACTION]
        question = await Question.get()
        await teams.invoke("aad-fay", ASK_CAM_ACTION, {"value": str(question.id)})
        await teams.herald.outbox.drain()
        handoff = card_of(teams.connector.activities("a:conv-aad-cam")[-1])
        assert [a["verb"] for a in actions_of(handoff)] == [REPLY_ACTION, LEARN_ENTRY_ACTION]

        form = await teams.invoke("aad-cam", REPLY_ACTION, {"value": str(question.id)})  # replaces the card
        submit = actions_of(form["value"])[0]
        shown = await teams.invoke("aad-cam", submit["verb"], {**submit["data"], "reply": "Yes, behind building B."})
        await teams.herald.outbox.drain()
        assert (await Question.get(id=question.id)).handoff_status == "answered"
        texts = " ".join(texts_of(shown["value"]))
        assert PARKING in texts and "Your answer:" in texts and "Yes, behind building B." in texts
        assert "on its way" in texts
        actions = actions_of(shown["value"])
        assert [a["verb"] for a in actions] == [REPLY_ACTION, LEARN_ENTRY_ACTION]
        assert await KBProposal.all().count() == 0

        learned = await teams.invoke("aad-cam", LEARN_ENTRY_ACTION, actions[1]["data"])
        assert "new entry with your reply" in str(learned["value"])
        assert (await KBProposal.get()).answer == "Yes, behind building B."
    finally:
        await stop_teams_rig(teams)


async def test_journey_step_done_button_and_progress_command(slack: SlackHarness) -> None:
    slack.clock.advance(days=1)
    await slack.herald.tick()
    await slack.herald.outbox.drain()  # the worker the tick wakes
    step_messages = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "DUANNA"]
    assert step_messages, "Anna's first onboarding step"
    ((action, step_id),) = [(a, v) for a, v in _buttons(step_messages[-1].args["blocks"]) if a == "herald_journey_done"]
    await slack.click(action, step_id, user="UBO")  # someone else's step
    (refused,) = await slack.responses(slack.last_click_key)
    assert ":warning:" in refused.args["text"]
    for _ in range(2):  # a double click answers the same
        await slack.click(action, step_id, user="UANNA")
        (done,) = await slack.responses(slack.last_click_key)
        # the step message is replaced: its title (not the internal key), no Done button any more
        assert done.args["replace_original"] is True and done.args["text"] == "Done: Activate your partner portal account"
        assert "portal-access" not in str(done.args["blocks"]) and _buttons(done.args["blocks"]) == []
    _, _, key = await slack.command("progress acme")
    (listing,) = await slack.responses(key)
    assert "Anna Berg" in listing.args["text"] and "1/" in listing.args["text"]


async def test_progress_for_many_members_is_not_cut_by_slack(slack: SlackHarness) -> None:
    """Slack keeps the first 40,000 characters of a message's text and drops the rest silently:
    `progress` for 1,200 members (~60,000 characters) lost its last third without a word. Now it
    keeps what fits and says how many more there are and where to see them."""
    result = await import_directory(many_members_csv(1_200), now=slack.clock.now(), actor="test")
    assert not result.rejected
    _, _, key = await slack.command("progress")
    (reply,) = await slack.responses(key)
    text = reply.args["text"]
    assert len(text) <= 40_000
    shown, managed = text.count("\n• "), await Member.filter(active=True, organisation__cam_email="cam@vendor.example").count()
    assert 100 < shown < 1_200 < managed
    assert text.endswith(f"\n… and {managed - shown} more members: `progress <org-id>` shows one partner's")


async def test_teams_journey_step_and_digest(db: str) -> None:
    from datetime import UTC, datetime

    from tests.teams_support import actions_of, card_of, sent_from_teams, start_teams_rig, stop_teams_rig

    teams = await start_teams_rig(db)
    try:
        await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
        await teams.post(teams.activity("conversationUpdate", "aad-eve", membersAdded=[{"id": "29:aad-eve"}]))
        await sent_from_teams(teams, "send nice-to-know announcements member:eve@teamsco.example | Newsletter | Read it")

        teams.clock.set(datetime(2026, 1, 6, 9, 30, tzinfo=UTC))  # Tuesday 10:30 in Paris
        counts = await teams.herald.tick()
        assert counts["digests"] == 1
        await teams.herald.outbox.drain()  # the worker the tick wakes
        cards = [card_of(a) for a in teams.connector.activities("a:conv-aad-eve") if a.get("attachments")]
        digest = next(c for c in cards if "Your Herald digest" in str(c))
        assert "Newsletter" in str(digest)
        step = next(c for c in cards if any(a.get("verb") == "herald_journey_done" for a in actions_of(c)))
        done = next(a for a in actions_of(step) if a["verb"] == "herald_journey_done")
        for _ in range(2):  # a double click answers the same
            answer = await teams.invoke("aad-eve", done["verb"], done["data"])
            # the card is replaced: the step's title (not its internal key), no Done button any more
            assert answer["type"] == "application/vnd.microsoft.card.adaptive", answer
            assert "Done: Activate your partner portal account" in str(answer["value"]) and actions_of(answer["value"]) == []
        refused = await teams.invoke("aad-fay", done["verb"], done["data"])
        assert "Done: " not in str(refused["value"])
    finally:
        await stop_teams_rig(teams)


async def test_a_teams_cam_is_told_a_command_that_works_in_teams_when_a_member_completes(db: str) -> None:
    """SPEC: the slash command's "same words work as messages to the bot in Teams". The note a CAM
    on Teams gets when a member completes onboarding names the command as they type it there
    (`progress <org>`, without backticks a card would show), not Slack's `/herald progress <org>`."""
    import re
    from datetime import UTC, datetime

    from bot.core.onboarding.journeys import complete_step, parse_journeys, run_journeys
    from storage.models import JourneyStep
    from tests.teams_support import card_of, start_teams_rig, stop_teams_rig, texts_of

    single = parse_journeys({"journeys": {"default": {"steps": [
        {"key": "portal", "after_days": 0, "title": "Do portal", "message": "Please do portal."}]}}}, source="test")
    teams = await start_teams_rig(db)
    try:
        await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
        await teams.post(teams.activity("conversationUpdate", "aad-eve", membersAdded=[{"id": "29:aad-eve"}]))
        monday_10_paris = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        teams.clock.set(monday_10_paris)
        await Member.all().update(joined_at=datetime(2030, 1, 1, tzinfo=UTC))
        await Member.filter(email="eve@teamsco.example").update(joined_at=monday_10_paris)
        await run_journeys(teams.herald.channels, teams.clock.now(), catalog=single)
        await teams.herald.outbox.drain()
        (row,) = await JourneyStep.filter(member__email="eve@teamsco.example", position__gte=1)
        await complete_step(row.id, platform="teams", workspace_id="tenant-1", user_id="aad-eve",
                            now=teams.clock.now(), catalog=single, channels=teams.herald.channels)
        await teams.herald.outbox.drain()

        notes = [card_of(a) for a in teams.connector.activities("a:conv-aad-cam") if a.get("attachments")]
        note = next(c for c in notes if "completed onboarding" in str(c))
        (hint,) = [t for t in texts_of(note) if "shows everyone" in t]
        assert "`" not in hint and "/herald" not in hint, hint
        typed = re.sub(r"[\\`]", "", hint.split(" shows everyone")[0])
        reply = await teams.say("aad-cam", typed)
        answer = str(reply.get("text") or reply.get("attachments"))
        assert "Onboarding progress" in answer and "Eve Moreau" in answer, (
            f"the note says {hint!r}; typing {typed!r} in Teams answers {answer[:160]!r}")
    finally:
        await stop_teams_rig(teams)


async def test_a_question_is_answered_off_the_event_loop(rig, warm_knowledge_base) -> None:  # noqa: ANN001
    """The model's forward pass runs in a thread, so the deliveries and clicks on the event loop are
    not held up meanwhile: here the answer waits until the loop has run a task of its own."""
    import asyncio
    import threading

    from bot.core.onboarding.assistant import ask

    loop_ran = threading.Event()
    seen: list[bool] = []

    class Watched:
        def answer(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            seen.append(loop_ran.wait(timeout=5))  # on the event loop itself this would time out
            return warm_knowledge_base.answer(*args, **kwargs)

    async def meanwhile() -> None:
        loop_ran.set()

    member = await Member.get(email="anna@acme.example").select_related("organisation")
    task = asyncio.ensure_future(meanwhile())
    asked = await ask(member, "how do I register a deal?", Watched(), platform="slack",  # type: ignore[arg-type]
                      channel_id="DUANNA", now=rig.clock.now())
    await task
    assert seen == [True]
    assert asked.answer.entry is not None and asked.answer.entry.id == "deal-registration-how"


async def test_a_question_longer_than_herald_reads_is_answered_with_a_word_about_it(rig, warm_knowledge_base) -> None:  # noqa: ANN001
    """A question is stored and answered from its first 2,000 characters (MAX_QUESTION): the rest
    was dropped without a word, though the partner's CAM, if asked, would see only that part too."""
    from bot.core.onboarding.assistant import MAX_QUESTION, ask

    member = await Member.get(email="anna@acme.example").select_related("organisation")
    text = "how do I register a deal? " + "Our situation in detail: " * 100 + "AND THE REAL QUESTION"
    asked = await ask(member, text, warm_knowledge_base, platform="slack", channel_id="DUANNA", now=rig.clock.now())
    assert len(asked.question.text) == MAX_QUESTION
    assert asked.message.lines[-1] == (f"(Ihre Nachricht hatte {len(text)} Zeichen; ich habe nur die ersten 2000 "
                                       "gelesen, und so ginge es auch Ihrem Channel Account Manager. Senden Sie den "
                                       "Rest als eigene Frage.)")  # in Anna's German
    short = await ask(member, "how do I register a deal?", warm_knowledge_base, platform="slack", channel_id="DUANNA",
                      now=rig.clock.now())
    assert "characters" not in short.message.lines[-1]


async def test_an_answer_slack_throttles_leaves_through_the_outbox(slack: SlackHarness) -> None:
    """The answer is sent at once while the partner waits; refused for now (429, e.g. during a
    broadcast that spent the workspace's budget), it is queued and leaves within the limits."""
    slack.fake.fail_next("chat.postMessage", status=429, retry_after=1)
    event = {"type": "message", "channel_type": "im", "channel": "DUANNA", "user": "UANNA",
             "text": "how do i register a deal", "ts": "1700000000.000400"}
    assert (await slack.post_signed(event_body(event, TEAM))).status == 200

    async def queued_answer() -> OutboundMessage | None:
        return await OutboundMessage.get_or_none(purpose="answer")

    queued = await wait_until(queued_answer, what="the queued answer")
    question = await Question.get()
    assert queued.reference == question.id and question.answer_message_id == ""
    assert [c.ok for c in slack.fake.calls_to("chat.postMessage")] == [False]
    await slack.herald.outbox.drain()
    (refused, sent) = slack.fake.calls_to("chat.postMessage")
    assert sent.ok and sent.channel == "DUANNA" and "register a deal" in str(sent.args).lower()
    (stored,) = slack.fake.messages("DUANNA")
    assert (await Question.get()).answer_message_id == stored["ts"]
    await slack.herald.outbox.drain()
    assert slack.fake.call_count("chat.postMessage") == 2  # once
