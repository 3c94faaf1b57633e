"""Survey cards: an answer button (Action.Execute; the card comes back with the answer marked, and
any follow-up text typed in the card is saved with it), Send comment, and the survey form's Preview."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.channels.teams_cards import (
    COMMENT_INPUT,
    SURVEY_ANSWER_VERB,
    SURVEY_COMMENT_VERB,
    notice_card,
)
from bot.channels.teams_surveys import (
    SURVEY_COMPOSE_VERB,
    survey_compose_card,
    survey_preview_card,
)
from bot.common.errors import UserError
from bot.core.surveys.answers import answer_survey, comment_on_survey
from bot.core.surveys.creating import create_survey_draft, survey_from_form
from bot.handlers.teams.turn import Invoke, VerbHandler, card_response
from storage.models import Platform


def _comment(invoke: Invoke) -> str | None:
    value = invoke.data.get(COMMENT_INPUT)
    return value if isinstance(value, str) else None


async def answer(invoke: Invoke) -> web.Response:
    herald, turn = invoke.herald, invoke.turn
    result = await answer_survey(invoke.number("notice_id"), invoke.number("value"), platform=Platform.TEAMS.value,
                                 workspace_id=turn.tenant_id, user_id=turn.aad_object_id, now=herald.clock.now(),
                                 comment=_comment(invoke) or None)
    return card_response(notice_card(result.view(herald.catalog, now=herald.clock.now())))


async def comment(invoke: Invoke) -> web.Response:
    herald, turn = invoke.herald, invoke.turn
    result = await comment_on_survey(invoke.number("notice_id"), _comment(invoke) or "", platform=Platform.TEAMS.value,
                                     workspace_id=turn.tenant_id, user_id=turn.aad_object_id, now=herald.clock.now())
    return card_response(notice_card(result.view(herald.catalog, now=herald.clock.now())))


async def compose(invoke: Invoke) -> web.Response:
    """The survey form's Preview: a stored draft and its preview card, or the form again with the error."""
    herald = invoke.herald
    values: dict[str, Any] = {k: str(v).strip() for k, v in invoke.data.items() if isinstance(v, (str, int, bool))}
    try:
        preview = await create_survey_draft(invoke.staff, survey_from_form(values), herald.catalog,
                                            now=herald.clock.now())
    except UserError as exc:
        return card_response(survey_compose_card(herald.catalog, error=str(exc), values=values))
    return card_response(survey_preview_card(preview))


VERBS: dict[str, VerbHandler] = {SURVEY_ANSWER_VERB: answer, SURVEY_COMMENT_VERB: comment,
                                 SURVEY_COMPOSE_VERB: compose}
