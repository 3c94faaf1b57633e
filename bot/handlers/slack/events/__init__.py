"""Events API callbacks."""

from slack_bolt.async_app import AsyncApp

from bot.handlers.slack.events import app_home, workspace
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    for module in (app_home, workspace):
        module.register(app, herald)
