"""The onboarding assistant's buttons: Helpful / Not helpful / Ask my CAM under an answer, and the
CAM's Reply under a handed-off question (opens the reply modal) and its "add to the knowledge base"
buttons."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import direct_message_blocks, escape, reply_modal
from bot.common.errors import UserError
from bot.core.onboarding.assistant import (
    ASK_CAM_ACTION,
    DID_YOU_MEAN_ACTION,
    HELPFUL_ACTION,
    NOT_HELPFUL_ACTION,
    REPLY_ACTION,
    choose_runner_up,
    feedback_note,
    give_feedback,
    handoff_for,
)
from bot.core.onboarding.learning import (
    ENTRY,
    LEARN_ENTRY_ACTION,
    LEARN_PHRASING_ACTION,
    PHRASING,
    propose,
    proposal_note,
)
from bot.handlers.slack.common import member_of, open_form, record_id, respond_or_explain, staff_of
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    @app.action(HELPFUL_ACTION)
    @app.action(NOT_HELPFUL_ACTION)
    async def on_feedback(ack, body, respond) -> None:  # noqa: ANN001
        await ack()
        action = body["actions"][0]

        async def work():
            helpful = action["action_id"] == HELPFUL_ACTION
            question = await give_feedback(record_id(action.get("value")), await member_of(body), helpful=helpful,
                                           now=herald.clock.now())
            text = feedback_note(question, helpful=helpful, emphasis=lambda label: f"*{label}*")  # Herald's words
            return {"replace_original": False, "text": text}
        await respond_or_explain(respond, work())

    @app.action(ASK_CAM_ACTION)
    async def on_ask_cam(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            text = await herald.hand_off_question(record_id(body["actions"][0].get("value")), await member_of(body))
            return {"replace_original": False, "text": escape(text)}
        await respond_or_explain(respond, work())

    @app.action(REPLY_ACTION)
    async def on_reply_button(ack, body, client, respond) -> None:  # noqa: ANN001
        await ack()
        question_id = record_id(body["actions"][0].get("value"))
        try:  # who may answer, and the hand-off as it stands (answered already? by whom?)
            handoff = await handoff_for(question_id, await staff_of(body))
        except UserError as exc:
            await respond(text=f":warning: {escape(str(exc))}", response_type="ephemeral", replace_original=False)
            return
        await open_form(client, body["trigger_id"], reply_modal(question_id, handoff), respond)

    @app.action(LEARN_PHRASING_ACTION)
    @app.action(LEARN_ENTRY_ACTION)
    async def on_learn(ack, body, respond) -> None:  # noqa: ANN001
        await ack()
        action = body["actions"][0]

        async def work():
            kind = PHRASING if action["action_id"] == LEARN_PHRASING_ACTION else ENTRY
            proposal, created = await propose(record_id(action.get("value")), await staff_of(body), kind, now=herald.clock.now())
            return {"replace_original": False, "text": escape(proposal_note(proposal, created))}
        await respond_or_explain(respond, work())

    @app.action(DID_YOU_MEAN_ACTION)
    async def on_did_you_mean(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            chosen = await choose_runner_up(body["actions"][0]["value"], await member_of(body),
                                            await herald.knowledge_base(), now=herald.clock.now())
            if chosen.already:  # pressed again: the entry is in the conversation already
                return None
            return {"replace_original": False, "text": escape(chosen.message.title),
                    "blocks": direct_message_blocks(chosen.message)}
        await respond_or_explain(respond, work())
