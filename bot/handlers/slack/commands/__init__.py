"""Slash commands."""

from slack_bolt.async_app import AsyncApp

from bot.handlers.slack.commands import herald_command
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    herald_command.register(app, herald)
