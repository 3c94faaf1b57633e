"""`app_uninstalled` / `tokens_revoked`: Herald was removed from a workspace, so deactivate it and
fail what waits for it. `team_access_granted` / `team_access_revoked`: the workspaces of an
Enterprise Grid org its org-wide install may act in. Bolt runs these without authorizing (the token is gone); Slack's retries
land here again, harmlessly; a removal from before the installation Herald holds (a late retry, once
the admin added Herald again) is ignored."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from slack_bolt.async_app import AsyncApp

from bot.common.secrets import token_fingerprint
from bot.core.directory import slack_orgs
from bot.core.directory import workspaces as workspace_core
from bot.handlers.slack.common import install_of
from bot.service import Herald
from storage.models import Platform

log = logging.getLogger(__name__)


def _event_time(body: dict) -> datetime | None:
    """When the event happened (the envelope's `event_time`, Unix seconds), not when it arrives:
    Slack retries an event late and does not promise order."""
    value = body.get("event_time")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value, UTC)


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
                                                           env_token=env_token, removed_at=_event_time(body))
        herald.slack_workspaces.forget(team_id)
        if result.wake:
            herald.outbox.wake()  # it fails the messages that waited for the workspace, without a request,
            # and sends the copies moved to their members' other accounts
        log.warning("Slack %s for workspace %s%s: %s", kind, team_id, f" (retry {retry})" if retry else "",
                    f"deactivated, {result.failed_deliveries} deliveries failed" if result.changed
                    else "ignored: from before the current installation" if result.stale else "already inactive")

    async def on_team_access(body: dict, event: dict, context) -> None:  # noqa: ANN001
        """An Org Admin added Herald's org-wide install to workspaces of the org, or removed it from
        some: Slack names them in `team_ids` (its team_access_granted / team_access_revoked
        reference), the org in the envelope's `enterprise_id`."""
        enterprise_id = body.get("enterprise_id") or context.enterprise_id
        team_ids = [str(t) for t in event.get("team_ids") or [] if isinstance(t, str)]
        if not enterprise_id or not team_ids:
            return
        actor, now = f"slack:{enterprise_id}", herald.clock.now()
        if event.get("type") == "team_access_granted":
            changed = await slack_orgs.grant_teams(enterprise_id, [(t, "") for t in team_ids], now=now, actor=actor)
        else:
            changed = await slack_orgs.revoke_teams(enterprise_id, team_ids, now=now, actor=actor)
        for team_id in team_ids:
            herald.slack_workspaces.forget(team_id)
        log.info("Slack %s for organisation %s: %s", event.get("type"), enterprise_id, ", ".join(changed) or "no change")

    app.event("app_uninstalled")(on_removed)
    app.event("tokens_revoked")(on_removed)
    app.event("team_access_granted")(on_team_access)
    app.event("team_access_revoked")(on_team_access)
