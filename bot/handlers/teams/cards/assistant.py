"""The onboarding assistant's buttons: Helpful / Not helpful / Ask my CAM under an answer; the CAM's
Reply (opens the reply card) and its Send."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from bot.channels.teams_replies import REPLY_SUBMIT_VERB, reply_card
from bot.channels.teams_cards import direct_message_card
from bot.core.onboarding.assistant import (
    ASK_CAM_ACTION,
    DID_YOU_MEAN_ACTION,
    HELPFUL_ACTION,
    NOT_HELPFUL_ACTION,
    ON_ITS_WAY,
    REPLY_ACTION,
    choose_runner_up,
    feedback_note,
    give_feedback,
    handoff_for,
    member_for,
)
from bot.core.onboarding.learning import (
    ENTRY,
    LEARN_ENTRY_ACTION,
    LEARN_PHRASING_ACTION,
    PHRASING,
    propose,
    proposal_note,
)
from bot.handlers.teams.turn import Invoke, VerbHandler, card_response, message_response
from storage.models import Platform


async def _asker(invoke: Invoke):  # noqa: ANN202
    return await member_for(Platform.TEAMS.value, invoke.turn.tenant_id, invoke.turn.aad_object_id)


async def feedback(invoke: Invoke) -> web.Response:
    helpful = invoke.verb == HELPFUL_ACTION
    question = await give_feedback(invoke.number("value"), await _asker(invoke), helpful=helpful,
                                   now=invoke.herald.clock.now())
    return message_response(feedback_note(question, helpful=helpful))


async def ask_cam(invoke: Invoke) -> web.Response:
    return message_response(await invoke.herald.hand_off_question(invoke.number("value"), await _asker(invoke)))


async def open_reply(invoke: Invoke) -> web.Response:
    question_id = invoke.number("value")
    return card_response(reply_card(question_id, await handoff_for(question_id, invoke.staff)))


async def submit_reply(invoke: Invoke) -> web.Response:
    """The reply form becomes the hand-off again, with the reply and the buttons usable after it
    (Add my reply as a KB entry, Reply again)."""
    question_id = invoke.number("question_id")
    await invoke.herald.relay_reply(question_id, invoke.staff, str(invoke.data.get("reply", "")))
    handoff = await handoff_for(question_id, invoke.staff)
    return card_response(direct_message_card(replace(handoff, lines=(*handoff.lines, ON_ITS_WAY))))


async def did_you_mean(invoke: Invoke) -> web.Response:
    chosen = await choose_runner_up(str(invoke.data.get("value", "")), await _asker(invoke),
                                    await invoke.herald.knowledge_base(), now=invoke.herald.clock.now())
    return card_response(direct_message_card(chosen.message))  # the pressed card becomes the entry, again or not


async def learn(invoke: Invoke) -> web.Response:
    kind = PHRASING if invoke.verb == LEARN_PHRASING_ACTION else ENTRY
    proposal, created = await propose(invoke.number("value"), invoke.staff, kind, now=invoke.herald.clock.now())
    return message_response(proposal_note(proposal, created))


VERBS: dict[str, VerbHandler] = {
    HELPFUL_ACTION: feedback, NOT_HELPFUL_ACTION: feedback, ASK_CAM_ACTION: ask_cam,
    REPLY_ACTION: open_reply, REPLY_SUBMIT_VERB: submit_reply,
    LEARN_PHRASING_ACTION: learn, LEARN_ENTRY_ACTION: learn, DID_YOU_MEAN_ACTION: did_you_mean,
}
