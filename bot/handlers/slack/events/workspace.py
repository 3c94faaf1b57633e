"""`app_uninstalled` / `tokens_revoked`: Herald was removed from a workspace, so deactivate it and
fail what waits for it. Bolt runs these without authorizing (the token is gone); Slack's retries
land here again, harmlessly."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from bot.common.secrets import token_fingerprint
from bot.core.directory import workspaces as workspace_core
from bot.handlers.slack.common import install_of
from bot.service import Herald
from storage.models import Platform

log = logging.getLogger(__name__)


def register(app: AsyncApp, herald: Herald) -> None:
    async def on_removed(body: dict, event: dict, context, request) -> None:  # noqa: ANN001
        kind = event.get("type", "")
        # an org-wide install is removed from the whole Enterprise Grid org: its row is the org's
        team_id = install_of(context.team_id or body.get("team_id"), context.enterprise_id,
                             context.is_enterprise_install)
        if not team_id or (kind == "tokens_revoked" and not (event.get("tokens") or {}).get("bot")):
            return  # no installation named, or only users' tokens: Herald uses the bot token
        retry = (request.headers.get("x-slack-retry-num") or [""])[0]
        env_token = token_fingerprint(herald.slack_workspaces.default_token)  # kept if it served this workspace
        result = await workspace_core.deactivate_workspace(Platform.SLACK.value, team_id, reason=kind,
                                                           now=herald.clock.now(), actor=f"slack:{team_id}",
                                                           env_token=env_token)
        herald.slack_workspaces.forget(team_id)
        if result.messages:
            herald.outbox.wake()  # it fails the messages that waited for the workspace, without a request
        log.warning("Slack %s for workspace %s%s: %s", kind, team_id, f" (retry {retry})" if retry else "",
                    f"deactivated, {result.failed_deliveries} deliveries failed" if result.changed
                    else "already inactive")

    app.event("app_uninstalled")(on_removed)
    app.event("tokens_revoked")(on_removed)
