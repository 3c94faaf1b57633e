"""`app_home_opened`: show the member their preferences."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.handlers.slack.common import slack_person
from bot.handlers.slack.home import publish_home
from bot.service import Herald


def register(app: AsyncApp, herald: Herald) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(event: dict, context, client) -> None:  # noqa: ANN001
        if event.get("tab") not in (None, "home") or not event.get("user"):
            return
        person = await slack_person(team_id=context.team_id, enterprise_id=context.enterprise_id,
                                    org_wide=context.is_enterprise_install, user_id=event["user"], home_team=None)
        await publish_home(client, herald.catalog, person.workspace, event["user"])
