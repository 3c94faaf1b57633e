"""Bolt's AsyncApp inside Herald's aiohttp server: signature check, per-workspace tokens, listeners.

Bolt verifies every request's signature (bad or stale → 401, nothing runs). Each listener acks
first (Slack wants an answer within 3 s) and does the work afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from bot.common.logs import bind_context
from bot.handlers.slack import actions, commands, events, messages, views
from bot.service import Herald

log = logging.getLogger(__name__)


def build_slack_app(herald: Herald) -> AsyncApp:
    settings = herald.settings
    workspaces = herald.slack_workspaces

    async def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult | None:
        token = await workspaces.token_for(team_id or "")
        if not token:
            return None
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    app = AsyncApp(
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else "",
        authorize=authorize,
        client=AsyncWebClient(base_url=settings.slack_api_url),
        process_before_response=False,
        user_facing_authorize_error_message="Herald is not connected to this Slack workspace yet.",
    )
    @app.middleware
    async def with_log_context(context: AsyncBoltContext, next: Callable[[], Awaitable[Any]]) -> Any:  # noqa: A002
        """Every record logged while handling this request (and by the listeners it starts) names
        the workspace and user. Bolt runs the listeners after the middleware has returned, in
        the same task, so the fields are bound for the rest of the task, not in a `with`."""
        bind_context(platform="slack", workspace=context.team_id, user=context.user_id)
        return await next()

    for kind in (commands, actions, views, events, messages):
        kind.register(app, herald)

    @app.error
    async def on_error(error: Exception, body: dict) -> None:
        log.error("unhandled Slack listener error", exc_info=error)

    return app


def slack_route(app: AsyncApp):  # noqa: ANN201 - an aiohttp handler
    async def handle(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))
    return handle
