"""Adaptive Card `Action.Execute` invokes: every verb Herald's cards carry, mapped to its handler."""

from bot.handlers.teams.cards import assistant, journeys, notices, preferences, surveys
from bot.handlers.teams.turn import VerbHandler

VERBS: dict[str, VerbHandler] = {**notices.VERBS, **assistant.VERBS, **journeys.VERBS, **preferences.VERBS,
                                 **surveys.VERBS}
