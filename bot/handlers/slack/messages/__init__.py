"""Messages to the bot."""

from slack_bolt.async_app import AsyncApp

from bot.handlers.slack.messages import questions
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    questions.register(app, herald)
