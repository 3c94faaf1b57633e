"""The survey form (→ a stored draft and the preview modal, whose Send is the notice preview's) and
the follow-up comment modal."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import message_modal
from bot.channels.slack_surveys import (
    SURVEY_COMMENT_CALLBACK,
    SURVEY_COMPOSE_CALLBACK,
    CommentOrigin,
    answered_message,
    read_comment_metadata,
    survey_preview_modal,
)
from bot.common.errors import FieldError, UserError
from bot.core.surveys.answers import AnswerResult, comment_on_survey
from bot.core.surveys.creating import create_survey_draft, survey_from_form
from bot.handlers.slack.common import directory_ids, form_value, record_id, staff_of
from bot.handlers.slack.respond import PooledRespond
from bot.service import Herald
from storage.models import Platform

log = logging.getLogger(__name__)

_FIELDS = ("topic", "audience", "question", "kind", "options", "follow_up", "closes")


def _field_of(message: str) -> str:
    """The input a validation message without a field of its own is about (Slack shows it there)."""
    for field, words in (("options", ("option",)), ("question", ("question",)),
                         ("follow_up", ("follow-up",)), ("topic", ("topic",))):
        if any(w in message for w in words):
            return field
    return "audience"


async def _show_comment(herald: Herald, result: AnswerResult, origin: CommentOrigin) -> None:
    """The survey message whose **Add a comment** was pressed shows the saved comment (and the
    answer), replaced through that press's response_url as the answer buttons' reply does (none of
    chat.update's Tier 3 budget). Left as it is when the modal carries no response_url (opened from
    the App Home, or before Herald carried it), for a copy still in doubt (the outbox finds it by
    what Herald posted, as for an answer), and when Slack refuses it (the response_url lasts 30
    minutes, 5 uses): the comment is stored either way and the modal said so."""
    if not origin.response_url or result.in_doubt:
        return
    reply = answered_message(result, herald.catalog, now=herald.clock.now())
    try:
        answer = await PooledRespond(origin.response_url, herald.slack_workspaces.session)(**reply)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        log.warning("could not show the comment on survey %s's message %s: %s", result.notice.id,
                    origin.message_ts or "?", exc)
        return
    if answer.status_code != 200:
        log.warning("Slack refused to show the comment on survey %s's message %s (HTTP %s: %s)", result.notice.id,
                    origin.message_ts or "?", answer.status_code, answer.body[:200])


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
        origin = read_comment_metadata(view.get("private_metadata"))
        try:
            result = await comment_on_survey(record_id(origin.notice), text, platform=Platform.SLACK.value,
                                             **await directory_ids(body),
                                             now=herald.clock.now())
        except UserError as exc:
            await ack(response_action="errors", errors={"comment": str(exc)})
            return
        await ack(response_action="update", view=message_modal("Thank you", "Your comment is saved. You can change "
                                                               "it until the survey closes."))
        await _show_comment(herald, result, origin)  # stored first; the message after Slack has its answer
