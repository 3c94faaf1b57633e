"""The Done button under an onboarding journey step (or its nudge)."""

from __future__ import annotations

from aiohttp import web

from bot.channels.teams_cards import direct_message_card
from bot.core.onboarding.journeys import DONE_ACTION, complete_step, done_message
from bot.handlers.teams.turn import Invoke, VerbHandler, card_response
from storage.models import Platform


async def done(invoke: Invoke) -> web.Response:
    herald, turn = invoke.herald, invoke.turn
    step = await complete_step(invoke.number("value"), platform=Platform.TEAMS.value, workspace_id=turn.tenant_id,
                               user_id=turn.aad_object_id, now=herald.clock.now(), channels=herald.channels)
    herald.outbox.wake()  # a milestone or the CAM's note may have been queued
    return card_response(direct_message_card(done_message(step)))  # the pressed card, without its button


VERBS: dict[str, VerbHandler] = {DONE_ACTION: done}
