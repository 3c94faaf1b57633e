"""Survey buttons: an answer (one click, changeable until the survey closes), **Add a comment**
(opens the follow-up modal), and a notice's link button (counted for A/B tests)."""

from __future__ import annotations

import logging
import re

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import escape
from bot.channels.slack_surveys import CommentOrigin, answered_message, comment_modal
from bot.common.errors import UserError
from bot.core.notices.interactions import LINK, record_press
from bot.core.notices.views import (
    LINK_ACTION,
    SURVEY_ANSWER_ACTION,
    SURVEY_COMMENT_ACTION,
)
from bot.core.surveys.answers import AnswerResult, answer_survey, comment_form
from bot.handlers.slack.common import directory_ids, open_form, pressed_message_ts, record_id
from bot.service import Herald
from storage.models import Platform

log = logging.getLogger(__name__)
ANSWER = re.compile(rf"^{SURVEY_ANSWER_ACTION}_\d+$")
ANSWERED = "Your answer to survey #{id} is saved: {answer}. You can change it until the survey closes."


async def _show_answer(herald: Herald, result: AnswerResult, respond) -> None:  # noqa: ANN001
    """The clicked message shows the answer at once, through response_url (no chat.update budget).
    A copy still in doubt is not touched, as for an acknowledgement (notices._show_acknowledged):
    the outbox finds it by what Herald posted before recording it, so the member is told in a
    reply of their own instead."""
    if result.in_doubt:
        await respond(text=f":white_check_mark: {escape(ANSWERED.format(id=result.notice.id, answer=result.label))}",
                      response_type="ephemeral", replace_original=False)
        return
    await respond(**answered_message(result, herald.catalog, now=herald.clock.now()))


def register(app: AsyncApp, herald: Herald) -> None:
    @app.action(ANSWER)
    async def on_answer(ack, body, respond) -> None:  # noqa: ANN001
        await ack()
        notice_id, _, value = (body["actions"][0].get("value") or "").partition(":")
        try:
            # after the ack: a stop waits for this listener's task (Herald.answered), so for the write
            result = await answer_survey(
                record_id(notice_id), int(value), platform=Platform.SLACK.value, **await directory_ids(body),
                now=herald.clock.now())
        except (UserError, ValueError) as exc:
            text = str(exc) if isinstance(exc, UserError) else "That button's data is not valid any more."
            await respond(text=f":warning: {escape(text)}", response_type="ephemeral", replace_original=False)
            return
        await _show_answer(herald, result, respond)

    @app.action(SURVEY_COMMENT_ACTION)
    async def on_comment(ack, body, client, respond) -> None:  # noqa: ANN001
        try:  # the modal needs the trigger id within 3 s, so the checks run before the ack
            follow_up, current = await comment_form(record_id(body["actions"][0].get("value")), platform=Platform.SLACK.value,
                                                    **await directory_ids(body),
                                                    now=herald.clock.now())
        except (UserError, ValueError) as exc:
            await ack()
            text = str(exc) if isinstance(exc, UserError) else "That button's data is not valid any more."
            await respond(text=f":warning: {escape(text)}", response_type="ephemeral", replace_original=False)
            return
        await ack()
        # the pressed message and its response_url go with the modal: its submission shows the comment there
        origin = CommentOrigin(str(record_id(body["actions"][0].get("value"))),
                               response_url=str(body.get("response_url") or ""), message_ts=pressed_message_ts(body))
        await open_form(client, body["trigger_id"], comment_modal(origin, follow_up, current), respond)

    @app.action(LINK_ACTION)
    async def on_link(ack, body) -> None:  # noqa: ANN001
        await ack()  # Slack opens the link itself; Herald only counts the press
        try:
            await record_press(record_id(body["actions"][0].get("value")), LINK, platform=Platform.SLACK.value,
                               **await directory_ids(body), now=herald.clock.now())
        except UserError as exc:  # e.g. a crafted or old button value: nothing to count
            log.warning("a link press was not counted: %s", exc)
        except Exception:  # noqa: BLE001 - counting must never bother the person
            log.exception("could not count a link press")
