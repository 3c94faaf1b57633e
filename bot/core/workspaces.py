"""Connected Slack workspaces (and, later, Teams tenants)."""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from bot.core.audit import audit_event, record
from bot.core.errors import UserError
from storage.models import Platform, Workspace


async def add_slack_workspace(team_id: str, token: str, *, name: str = "", bot_user_id: str = "",
                              now: datetime, actor: str) -> bool:
    """Store (or replace) a workspace's bot token. Returns True when the workspace is new."""
    team_id = team_id.strip()
    if not team_id.startswith(("T", "E")):
        raise UserError(f"'{team_id}' is not a Slack workspace id (they start with T)")
    async with in_transaction() as conn:
        workspace = await Workspace.get_or_none(platform=Platform.SLACK.value, external_id=team_id).using_db(conn)
        created = workspace is None
        if workspace is None:
            workspace = Workspace(platform=Platform.SLACK.value, external_id=team_id)
        workspace.bot_token, workspace.active = token, True
        workspace.name = name or workspace.name
        workspace.bot_user_id = bot_user_id or workspace.bot_user_id
        await workspace.save(using_db=conn)
        await record([audit_event("workspace.added" if created else "workspace.updated", now=now, actor=actor,
                                  platform="slack", workspace=team_id)], using_db=conn)
    return created
