"""The compose modal (→ a stored draft and its preview) and the preview modal (Send, or closed = cancel)."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import (
    COMPOSE_CALLBACK,
    PREVIEW_CALLBACK,
    message_modal,
    preview_modal,
)
from bot.common.errors import UserError
from bot.core.notices import sending
from bot.handlers.slack.common import (
    FieldError,
    command_from_form,
    direct_message_respond,
    field_of,
    record_id,
    respond_or_explain,
    send_previewed,
    staff_of,
)
from bot.service import Herald

log = logging.getLogger(__name__)

QUEUEING = (":hourglass_flowing_sand: Queueing the notice for its recipients. Herald tells you in your direct "
            "messages when it is on its way, or why not.")


def register(app: AsyncApp, herald: Herald) -> None:
    @app.view(COMPOSE_CALLBACK)
    async def on_compose(ack, body, view) -> None:  # noqa: ANN001
        values = view["state"]["values"]
        try:
            command = command_from_form(values)
        except FieldError as exc:
            await ack(response_action="errors", errors={exc.field: str(exc)})
            return
        staff = await staff_of(body)
        try:
            preview = await sending.create_draft(staff, command, herald.catalog, now=herald.clock.now())
        except UserError as exc:
            await ack(response_action="errors", errors={field_of(str(exc)): str(exc)})
            return
        await ack(response_action="update", view=preview_modal(
            preview.notice, preview.topic.title, preview.recipients, preview.warnings))

    @app.view(PREVIEW_CALLBACK)
    async def on_preview_send(ack, body, view, client) -> None:  # noqa: ANN001
        # The send is stored, then answered: queueing a large audience takes longer than the 3 s
        # Slack waits for the answer, so the rows are written after it. The outcome follows as the
        # preview message's Send button gives it, in a direct message.
        async def answer() -> None:
            await ack(response_action="update", view=message_modal("Sending", QUEUEING))
        await respond_or_explain(direct_message_respond(client, herald, body),
                                 send_previewed(herald, view.get("private_metadata"), body, answer))

    @app.view_closed(PREVIEW_CALLBACK)
    async def on_preview_closed(ack, body, view) -> None:  # noqa: ANN001
        await ack()
        staff = await staff_of(body)
        try:
            await sending.cancel_draft(record_id(view.get("private_metadata")), staff, now=herald.clock.now())
        except UserError:
            log.info("preview closed for a notice the user cannot cancel")
