"""The edit modal of a sent notice: every delivered copy is updated in place."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import EDIT_CALLBACK, message_modal
from bot.common.errors import UserError
from bot.core.notices import revisions
from bot.handlers.slack.common import field_of, form_value, record_id, staff_of
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    @app.view(EDIT_CALLBACK)
    async def on_edit(ack, body, view) -> None:  # noqa: ANN001
        values = view["state"]["values"]
        staff = await staff_of(body)
        material = bool(values.get("material", {}).get("value", {}).get("selected_options"))
        try:
            result = await revisions.edit_notice(
                record_id(view.get("private_metadata")), staff, herald.catalog, now=herald.clock.now(),
                title=form_value(values, "title"), body=form_value(values, "body"), link=form_value(values, "link"),
                material=material)
        except UserError as exc:
            await ack(response_action="errors", errors={field_of(str(exc), default="body"): str(exc)})
            return
        herald.outbox.wake()
        await ack(response_action="update", view=message_modal(
            "Edited", f"Notice #{result.notice.id} {result.summary}."))
