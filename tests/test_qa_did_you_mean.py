"""Ask instead of guessing (issue 16 item 2): when two entries fit about equally well, the answer
carries the runner-up as a "Did you mean: ...?" button; pressing it gives that entry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.core.onboarding.assistant import (
    ASK_CAM_ACTION,
    DID_YOU_MEAN_ACTION,
    HELPFUL_ACTION,
    NOT_HELPFUL_ACTION,
    ask,
    choose_runner_up,
    hand_off,
)
from bot.core.onboarding.learning import LEARN_PHRASING_ACTION
from bot.core.onboarding.qa import ANY, KnowledgeBase, default_directory
from storage.models import AuditEvent, Member, Question
from tests.fakes.slack_signing import event_body
from tests.support import TEAM, Rig, SlackHarness, seed_directory, start_harness, stop_harness, wait_until

PORTAL_KB = """\
vendor: Acme
entries:
  - id: portal-password
    title: How do I reset my partner portal password?
    answer: Use "Forgot password" on the sign-in page of the partner portal.
  - id: portal-username
    title: How do I recover my partner portal username?
    answer: Your username is your work email address; ask your CAM if it changed.
  - id: price-list
    title: Where is the current price list?
    answer: The price list is in the portal under Sales > Prices.
"""
AMBIGUOUS = "I can't get into the partner portal"


@pytest.fixture
def portal_kb(tmp_path: Path) -> Path:
    directory = tmp_path / "kb"
    directory.mkdir()
    (directory / "portal.yaml").write_text(PORTAL_KB, encoding="utf-8")
    return directory


async def _bolt_listeners_done() -> None:
    """Wait for the Bolt listener tasks (run after the ack). `tests.support.listeners_done` looks
    for "bolt" in the coroutine's repr, which names only the function
    (`AsyncioListenerRunner.run.<locals>.run_ack_function_asynchronously`), so it waits for none."""
    current = asyncio.current_task()
    while pending := [t for t in asyncio.all_tasks() if t is not current and not t.done()
                      and "slack_bolt" in getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", "")]:
        await asyncio.wait(pending)


def test_a_close_runner_up_is_offered_and_a_clear_winner_has_none(portal_kb: Path) -> None:
    kb = KnowledgeBase.load(portal_kb, semantic=False)
    close = kb.answer(AMBIGUOUS, role=ANY, tier=ANY)
    assert not close.abstained and {close.entry.id, close.runner_up.id} == {"portal-password", "portal-username"}
    clear = kb.answer("reset partner portal password", role=ANY, tier=ANY)
    assert clear.entry.id == "portal-password" and clear.runner_up is None
    assert kb.answer("what's a good recipe for banana bread", role=ANY, tier=ANY).runner_up is None


def test_an_entry_with_the_same_answer_is_never_offered_as_did_you_mean(tmp_path: Path) -> None:
    """Two entries with one answer (a learned copy, or an author's paste) score alike: the answer
    used to offer the other as "Did you mean", i.e. what the member had just read."""
    (tmp_path / "kb.yaml").write_text(PORTAL_KB + """\
  - id: portal-password-copy
    title: How do I reset the password of my partner portal account?
    answer: Use "Forgot password" on the sign-in page of the partner portal!
""", encoding="utf-8")
    kb = KnowledgeBase.load(tmp_path, semantic=False)
    scores = dict(kb.answer("reset partner portal password", role=ANY, tier=ANY, check=False).candidates)
    assert abs(scores["portal-password"] - scores["portal-password-copy"]) <= 0.05  # close enough to offer
    answer = kb.answer("reset partner portal password", role=ANY, tier=ANY)
    assert answer.entry.id.startswith("portal-password") and answer.runner_up is None


async def test_the_member_presses_did_you_mean_and_gets_the_runner_up(db: str, portal_kb: Path) -> None:
    slack: SlackHarness = await start_harness(db, extra_settings={"kb_dir": portal_kb, "kb_semantic": False})
    await seed_directory(slack.clock)
    try:
        event = {"type": "message", "channel_type": "im", "channel": "DUANNA", "user": "UANNA", "text": AMBIGUOUS,
                 "ts": "1700000000.000400"}
        assert (await slack.post_signed(event_body(event, TEAM))).status == 200
        (answer,) = await wait_until(lambda: slack.fake.calls_to("chat.postMessage"), what="the answer")
        question = await Question.get()
        buttons = [(e["action_id"], e["value"]) for b in answer.args["blocks"] if b["type"] == "actions"
                   for e in b["elements"]]
        assert [a for a, _ in buttons] == [HELPFUL_ACTION, NOT_HELPFUL_ACTION, ASK_CAM_ACTION, DID_YOU_MEAN_ACTION]
        other = {"portal-password", "portal-username"} - {question.entry_id}
        (value,) = [v for a, v in buttons if a == DID_YOU_MEAN_ACTION]
        assert value == f"{question.id}:{other.pop()}"
        label = [e["text"]["text"] for b in answer.args["blocks"] if b["type"] == "actions" for e in b["elements"]][-1]
        assert label.startswith("Meinten Sie: How do I ") and label.endswith("?")  # Anna's locale is de

        await slack.click(DID_YOU_MEAN_ACTION, value, user="UBO")  # not Bo's question
        (refused,) = await slack.responses(slack.last_click_key)
        assert "Only the person who asked" in refused.args["text"]

        first = question.entry_id
        await slack.click(DID_YOU_MEAN_ACTION, value, user="UANNA")
        (given,) = await slack.responses(slack.last_click_key)
        chosen = value.split(":")[1]
        assert chosen != first and ("username" in str(given.args["blocks"]) or "Forgot password" in str(given.args["blocks"]))
        assert (await Question.get(id=question.id)).entry_id == chosen  # the entry that answered it
        event = await AuditEvent.get(kind="question.runner_up_chosen")
        assert event.data["entry"] == chosen and event.data["first_answer"] == first

        # pressed again (a double click): nothing recorded again, and the entry is not posted again
        await slack.click(DID_YOU_MEAN_ACTION, value, user="UANNA")
        await _bolt_listeners_done()
        assert not [c for c in slack.fake.calls_to("response_url") if c.key == slack.last_click_key]
        assert await AuditEvent.filter(kind="question.runner_up_chosen").count() == 1
    finally:
        await stop_harness(slack)


async def test_did_you_mean_in_teams_replaces_the_card_with_the_runner_up(db: str, portal_kb: Path) -> None:
    from tests.teams_support import actions_of, card_of, start_teams_rig, stop_teams_rig

    teams = await start_teams_rig(db, kb_dir=portal_kb, kb_semantic=False)
    try:
        answer = card_of(await teams.say("aad-fay", AMBIGUOUS))
        actions = actions_of(answer)
        assert [a["verb"] for a in actions] == [HELPFUL_ACTION, NOT_HELPFUL_ACTION, ASK_CAM_ACTION, DID_YOU_MEAN_ACTION]
        question = await Question.get()
        chosen = actions[3]["data"]["value"].split(":")[1]
        assert chosen != question.entry_id
        replaced = await teams.invoke("aad-fay", DID_YOU_MEAN_ACTION, actions[3]["data"])
        assert "Did you mean" not in str(replaced["value"])
        assert "username" in str(replaced["value"]) or "Forgot password" in str(replaced["value"])
        assert (await Question.get(id=question.id)).entry_id == chosen
        again = await teams.invoke("aad-fay", DID_YOU_MEAN_ACTION, actions[3]["data"])  # a double press
        assert again["value"] == replaced["value"]  # the same card, recorded once
        assert await AuditEvent.filter(kind="question.runner_up_chosen").count() == 1
    finally:
        await stop_teams_rig(teams)


async def test_a_hand_off_after_did_you_mean_names_the_chosen_entry_not_a_confidential_one(rig: Rig) -> None:
    """Anna (sales, gold) asks in German; the assistant is not sure and offers "Did you mean: Where
    is the current price list?". She presses it and then Ask my CAM: the CAM is told the knowledge
    base suggested the price list (no confidential entry, and it was shown to her), and may add
    the question to it."""
    rig.clock.set(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    kb = KnowledgeBase.load(default_directory(), semantic=False)
    anna = await Member.get(email="anna@acme.example").select_related("organisation")
    asked = await ask(anna, "Wo finde ich die aktuelle Preisliste?", kb, platform="slack", channel_id="DUANNA",
                      now=rig.clock.now())
    assert asked.answer.abstained and asked.answer.runner_up is not None
    entry = asked.answer.runner_up
    assert not entry.confidential
    await choose_runner_up(f"{asked.question.id}:{entry.id}", anna, kb, now=rig.clock.now())
    stored = await Question.get(id=asked.question.id)
    assert (stored.entry_id, stored.abstained) == (entry.id, False)  # answered by the entry she chose

    handoff = await hand_off(asked.question.id, anna, now=rig.clock.now(), channels=rig.herald.channels)
    text = " ".join(handoff.message.lines)
    assert "confidential" not in text and f"The knowledge base suggested: {entry.id}." in text
    assert LEARN_PHRASING_ACTION in [b.action_id for b in handoff.message.buttons]
