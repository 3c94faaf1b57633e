"""`POST /api/messages`: the Agents SDK's JWT check, then Herald's own dispatch.

The Microsoft 365 Agents SDK validates the Bot Framework JWT (`jwt_authorization_decorator`:
a missing or bad token gets 401 and nothing runs) and parses the activity; Herald dispatches it
itself and answers through `TeamsChannel`, the same client the outbox uses, so replies and
proactive sends share one connector client, one token provider and one service-URL guard.
"""

from __future__ import annotations

import logging
import warnings

from aiohttp import web
from microsoft_agents.hosting.aiohttp import jwt_authorization_decorator
from microsoft_agents.hosting.core.authorization import AgentAuthConfiguration

from bot.handlers.teams.handler import TeamsHandler
from bot.service import Herald

log = logging.getLogger(__name__)


def auth_configuration(herald: Herald) -> AgentAuthConfiguration:
    settings = herald.settings
    if not settings.teams_app_id:
        log.warning("HERALD_TEAMS_APP_ID is not set: /api/messages accepts UNAUTHENTICATED requests. "
                    "Use this for local testing only.")
        return AgentAuthConfiguration(anonymous_allowed=True)
    return AgentAuthConfiguration(client_id=settings.teams_app_id, tenant_id=settings.teams_tenant_id,
                                  anonymous_allowed=False)


def add_teams_routes(app: web.Application, herald: Herald) -> None:
    with warnings.catch_warnings():  # the SDK's JWT check reads this plain string key
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["agent_configuration"] = auth_configuration(herald)
    handler = TeamsHandler(herald)
    app.router.add_post("/api/messages", jwt_authorization_decorator(handler.handle))
