"""Buttons and menus (block_actions), by what they act on."""

from slack_bolt.async_app import AsyncApp

from bot.handlers.slack.actions import (
    assistant,
    journeys,
    notices,
    preferences,
    surveys,
)
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    for module in (notices, assistant, journeys, preferences, surveys):
        module.register(app, herald)
