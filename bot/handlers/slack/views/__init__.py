"""Modal submissions (view_submission / view_closed)."""

from slack_bolt.async_app import AsyncApp

from bot.handlers.slack.views import compose, edit, reply, surveys
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    for module in (compose, edit, reply, surveys):
        module.register(app, herald)
