"""The preferences card's Save: optional topics, digest frequency, quiet hours, time zone."""

from __future__ import annotations

from aiohttp import web

from bot.channels.teams_replies import PREFERENCES_VERB, preferences_card
from bot.common.errors import UserError
from bot.core.directory.preferences import preferences_for, update_preferences
from bot.core.onboarding.assistant import member_for
from bot.handlers.teams.texts import NOT_A_MEMBER
from bot.handlers.teams.turn import Invoke, VerbHandler, card_response, message_response
from storage.models import Platform


async def save(invoke: Invoke) -> web.Response:
    turn, data, catalog = invoke.turn, invoke.data, invoke.herald.catalog
    member = await member_for(Platform.TEAMS.value, turn.tenant_id, turn.aad_object_id)
    if member is None:
        return message_response(NOT_A_MEMBER)
    subscriptions = {key.removeprefix("topic:"): str(value).lower() == "true"
                     for key, value in data.items() if key.startswith("topic:")}
    try:
        prefs = await update_preferences(
            member.id, catalog, now=invoke.herald.clock.now(), subscriptions=subscriptions or None,
            # a cleared field is refused with why (as in Slack), not saved as "unchanged"
            timezone=str(data["timezone"] or "") if "timezone" in data else None,
            quiet_start=int(data["quiet_start"]) if str(data.get("quiet_start", "")).isdigit() else None,
            quiet_end=int(data["quiet_end"]) if str(data.get("quiet_end", "")).isdigit() else None,
            digest_frequency=str(data["digest_frequency"]) if data.get("digest_frequency") else None)
        note = "Saved."
    except UserError as exc:
        prefs, note = await preferences_for(member.id, catalog), f"⚠ Not saved: {exc}"
    return card_response(preferences_card(prefs, catalog, note=note))


VERBS: dict[str, VerbHandler] = {PREFERENCES_VERB: save}
