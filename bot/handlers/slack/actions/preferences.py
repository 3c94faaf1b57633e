"""App Home preference controls: optional topics, digest frequency, quiet hours, time zone."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import (
    PREF_DIGEST_ACTION,
    PREF_QUIET_END_ACTION,
    PREF_QUIET_START_ACTION,
    PREF_TIMEZONE_ACTION,
    PREF_TOPICS_ACTION,
)
from bot.common.errors import UserError
from bot.core.directory.preferences import update_preferences
from bot.handlers.slack.common import member_of, person_of, record_id
from bot.handlers.slack.home import publish_home
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    async def save(body, client, **change) -> None:  # noqa: ANN001
        member = await member_of(body)
        note = ""
        if member is not None:
            try:
                await update_preferences(member.id, herald.catalog, now=herald.clock.now(), **change)
                note = "Saved."
            except UserError as exc:
                note = f"Not saved: {exc}"
        person = await person_of(body)
        await publish_home(client, herald.catalog, person.workspace, person.user, note)

    @app.action(PREF_TOPICS_ACTION)
    async def on_pref_topics(ack, body, client) -> None:  # noqa: ANN001
        await ack()
        action = body["actions"][0]
        chosen = {o["value"] for o in action.get("selected_options", [])}
        offered = [b for b in body.get("view", {}).get("blocks", [])
                   if b.get("accessory", {}).get("action_id") == PREF_TOPICS_ACTION]
        acting = [b for b in offered if b.get("block_id") == action.get("block_id")] or offered[:1]
        # only the topics of the block that changed (the others are in blocks of their own)
        keys = [o["value"] for o in acting[0]["accessory"]["options"]] if acting else sorted(chosen)
        await save(body, client, subscriptions={k: k in chosen for k in keys})

    @app.action(PREF_DIGEST_ACTION)
    async def on_pref_digest(ack, body, client) -> None:  # noqa: ANN001
        await ack()
        await save(body, client, digest_frequency=str((body["actions"][0].get("selected_option") or {}).get("value") or ""))

    @app.action(PREF_QUIET_START_ACTION)
    async def on_pref_quiet_start(ack, body, client) -> None:  # noqa: ANN001
        await ack()
        await save(body, client, quiet_start=record_id((body["actions"][0].get("selected_option") or {}).get("value")))

    @app.action(PREF_QUIET_END_ACTION)
    async def on_pref_quiet_end(ack, body, client) -> None:  # noqa: ANN001
        await ack()
        await save(body, client, quiet_end=record_id((body["actions"][0].get("selected_option") or {}).get("value")))

    @app.action(PREF_TIMEZONE_ACTION)
    async def on_pref_timezone(ack, body, client) -> None:  # noqa: ANN001
        await ack()
        await save(body, client, timezone=(body["actions"][0].get("value") or "").strip())
