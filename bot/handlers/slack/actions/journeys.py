"""The Done button under an onboarding journey step (or its nudge)."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import direct_message_blocks
from bot.core.onboarding.journeys import DONE_ACTION, complete_step, done_message
from bot.handlers.slack.common import directory_ids, record_id, respond_or_explain
from bot.service import Herald
from storage.models import Platform


def register(app: AsyncApp, herald: Herald) -> None:
    @app.action(DONE_ACTION)
    async def on_journey_done(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            step = await complete_step(record_id(body["actions"][0].get("value")), platform=Platform.SLACK.value,
                                       **await directory_ids(body),
                                       now=herald.clock.now(), channels=herald.channels)
            herald.outbox.wake()  # a milestone or the CAM's note may have been queued
            done = done_message(step)  # the pressed message, without its button
            return {"replace_original": True, "text": done.title, "blocks": direct_message_blocks(done)}
        await respond_or_explain(respond, work())
