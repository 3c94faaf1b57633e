"""The survey form (→ a stored draft and the preview modal, whose Send is the notice preview's) and
the follow-up comment modal."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import message_modal
from bot.channels.slack_surveys import (
    SURVEY_COMMENT_CALLBACK,
    SURVEY_COMPOSE_CALLBACK,
    survey_preview_modal,
)
from bot.common.errors import FieldError, UserError
from bot.core.surveys.answers import comment_on_survey
from bot.core.surveys.creating import create_survey_draft, survey_from_form
from bot.handlers.slack.common import directory_ids, form_value, record_id, staff_of
from bot.service import Herald
from storage.models import Platform

_FIELDS = ("topic", "audience", "question", "kind", "options", "follow_up", "closes")


def _field_of(message: str) -> str:
    """The input a validation message without a field of its own is about (Slack shows it there)."""
    for field, words in (("options", ("option",)), ("question", ("question",)),
                         ("follow_up", ("follow-up",)), ("topic", ("topic",))):
        if any(w in message for w in words):
            return field
    return "audience"


def register(app: AsyncApp, herald: Herald) -> None:
    @app.view(SURVEY_COMPOSE_CALLBACK)
    async def on_compose(ack, body, view) -> None:  # noqa: ANN001
        values = view["state"]["values"]
        form = {name: form_value(values, name) for name in _FIELDS}
        checked = values.get("anonymous", {}).get("value", {}).get("selected_options") or []
        form["anonymous"] = "anonymous" if checked else ""
        try:
            command = survey_from_form(form)
            preview = await create_survey_draft(await staff_of(body), command, herald.catalog, now=herald.clock.now())
        except FieldError as exc:
            await ack(response_action="errors", errors={exc.field: str(exc)})
            return
        except UserError as exc:
            await ack(response_action="errors", errors={_field_of(str(exc)): str(exc)})
            return
        await ack(response_action="update", view=survey_preview_modal(preview))

    @app.view(SURVEY_COMMENT_CALLBACK)
    async def on_comment(ack, body, view) -> None:  # noqa: ANN001
        text = form_value(view["state"]["values"], "comment")
        try:
            await comment_on_survey(record_id(view.get("private_metadata")), text, platform=Platform.SLACK.value,
                                    **await directory_ids(body),
                                    now=herald.clock.now())
        except UserError as exc:
            await ack(response_action="errors", errors={"comment": str(exc)})
            return
        await ack(response_action="update", view=message_modal("Thank you", "Your comment is saved. You can change "
                                                               "it until the survey closes."))
