"""The CAM's reply to a handed-off question: recorded and relayed to the partner."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import REPLY_CALLBACK, message_modal
from bot.common.errors import UserError
from bot.core.onboarding.assistant import ON_ITS_WAY
from bot.handlers.slack.common import form_value, record_id, staff_of
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    @app.view(REPLY_CALLBACK)
    async def on_reply(ack, body, view) -> None:  # noqa: ANN001
        staff = await staff_of(body)
        text = form_value(view["state"]["values"], "reply")
        try:
            await herald.relay_reply(record_id(view.get("private_metadata")), staff, text)
        except UserError as exc:
            await ack(response_action="errors", errors={"reply": str(exc)})
            return
        await ack(response_action="update", view=message_modal("Sent", ON_ITS_WAY))
