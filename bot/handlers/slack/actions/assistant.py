"""The onboarding assistant's buttons: Helpful / Not helpful / Ask my CAM under an answer, and the
CAM's Reply under a handed-off question (opens the reply modal)."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import escape, reply_modal
from bot.core.onboarding.assistant import (
    ASK_CAM_ACTION,
    HELPFUL_ACTION,
    NOT_HELPFUL_ACTION,
    REPLY_ACTION,
    give_feedback,
)
from bot.handlers.slack.common import member_of, record_id, respond_or_explain
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    @app.action(HELPFUL_ACTION)
    @app.action(NOT_HELPFUL_ACTION)
    async def on_feedback(ack, body, respond) -> None:  # noqa: ANN001
        await ack()
        action = body["actions"][0]

        async def work():
            helpful = action["action_id"] == HELPFUL_ACTION
            await give_feedback(record_id(action.get("value")), await member_of(body), helpful=helpful, now=herald.clock.now())
            text = "Thanks, glad it helped." if helpful else \
                "Thanks for telling me. Press *Ask my CAM* if you'd like a person to answer."
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
    async def on_reply_button(ack, body, client) -> None:  # noqa: ANN001
        await ack()
        question_id = record_id(body["actions"][0].get("value"))
        await client.views_open(trigger_id=body["trigger_id"], view=reply_modal(question_id))
