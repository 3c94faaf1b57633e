"""Bolt's AsyncApp inside Herald's aiohttp server: signature check, per-workspace tokens, listeners.

Bolt verifies every request's signature (bad or stale → 401, nothing runs). Each listener acks
first (Slack wants an answer within 3 s) and does the work afterwards; a stop waits for that work
(`_StopWaitsForListener`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.listener.async_listener_start_handler import AsyncListenerStartHandler
from slack_bolt.response import BoltResponse
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.common.logs import bind_context, current_context
from bot.common.errors import UserError
from bot.core.directory.workspaces import is_connected
from bot.core.replays import SLACK_WINDOW, first_sighting, request_key
from bot.handlers.slack import actions, commands, events, messages, respond, shape, views
from bot.handlers.slack.common import install_of, problem_text
from bot.service import Herald
from storage.models import Platform

log = logging.getLogger(__name__)
#: Slack retries an event 3 times within about 5 minutes; its event_id is remembered for an hour
EVENT_RETRY_WINDOW = timedelta(hours=1)


class _NotConnected(logging.Filter):
    """Bolt logs an ERROR ("Although the app should be installed into this workspace...") when
    `authorize` finds no token for a request's workspace. For Herald that is a workspace it is not
    connected to: Slack may still deliver a few events after an uninstall or a revocation, and a
    button pressed in an old message of a disconnected workspace says so to the person. A warning
    that says what happened, not an error that suggests a lost installation."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Although the app should be installed"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = ("refused a Slack request from workspace %s, which Herald is not connected to (uninstalled, "
                          "tokens revoked or never connected; `herald workspaces list` shows the connected ones)")
            record.args = (current_context().get("workspace") or "(unknown)",)
        return True


def _quiet_not_connected() -> None:
    bolt = logging.getLogger("slack_bolt.AsyncMultiTeamsAuthorization")  # bolt's logger for `authorize`
    if not any(isinstance(f, _NotConnected) for f in bolt.filters):
        bolt.addFilter(_NotConnected())


class _StopWaitsForListener(AsyncListenerStartHandler):
    """Bolt runs each listener in a task of its own (asyncio.ensure_future) and answers Slack as
    soon as the listener calls ack(), so the work after the ack (a report's upload, a notice being
    sent, an assistant's answer, a hand-off) outlives the request. Slack never sends an answered
    request again: the listener's task is handed to ``Herald.answered`` so that a SIGTERM waits for
    it (``Herald.settle``). Bolt calls this in that task, before the listener runs, so before its ack."""

    def __init__(self, herald: Herald) -> None:
        self.herald = herald

    async def handle(self, request: AsyncBoltRequest, response: BoltResponse | None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.herald.answered(task)


def build_slack_app(herald: Herald) -> AsyncApp:
    settings = herald.settings
    workspaces = herald.slack_workspaces

    async def authorize(enterprise_id: str | None, team_id: str | None, context: AsyncBoltContext,
                        **_: Any) -> AuthorizeResult | None:
        """The token of the installation serving the request: an org-wide install's (stored under
        the org's enterprise id) when Slack says the request is for one, else the workspace's."""
        token = await workspaces.token_now(install_of(team_id, enterprise_id, context.is_enterprise_install))
        if not token and enterprise_id and await is_connected(Platform.SLACK.value, enterprise_id):
            # the org-wide install, for an event Slack sends it about a workspace it was not granted yet
            # (team_access_granted names the workspace where the Org Admin acted, not the org)
            token = await workspaces.token_now(enterprise_id)
        if not token:
            return None
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    async def with_log_context(context: AsyncBoltContext, next: Callable[[], Awaitable[Any]]) -> Any:  # noqa: A002
        """Every record logged while handling this request (and by the listeners it starts) names
        the workspace and user, bolt's own included: this runs before `authorize`, over HTTP and
        Socket Mode alike. Bolt runs the listeners after the middleware has returned, in the same
        task, so the fields are bound for the rest of the task, not in a `with`."""
        bind_context(platform="slack", workspace=context.team_id, user=context.user_id)
        return await next()

    app = AsyncApp(
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else "",
        authorize=authorize,
        before_authorize=with_log_context,
        client=AsyncWebClient(base_url=settings.slack_api_url),
        process_before_response=False,
        user_facing_authorize_error_message="Herald is not connected to this Slack workspace yet.",
    )
    _quiet_not_connected()
    app.listener_runner.listener_start_handler = _StopWaitsForListener(herald)

    @app.middleware
    async def once_per_event(body: dict[str, Any], next: Callable[[], Awaitable[Any]]) -> Any:  # noqa: A002
        """Slack sends an event again when it got no 200 within 3 s (a busy replica, a slow
        network): a new request, with a new signature over HTTP, but the same `event_id`. The
        retry is acknowledged and dropped, so a question is answered and handed off once."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id:
            key = request_key("slack-event", str(body.get("team_id") or ""), event_id)
            if not await first_sighting(key, now=herald.clock.now(), window=EVENT_RETRY_WINDOW):
                log.info("ignored Slack's retry of event %s", event_id)
                return BoltResponse(status=200, body="")
        return await next()

    respond.register(app, herald.slack_workspaces.session)
    for kind in (commands, actions, views, events, messages):
        kind.register(app, herald)

    @app.error
    async def on_error(error: Exception, body: dict, respond) -> None:  # noqa: ANN001
        if isinstance(error, UserError):  # e.g. a button whose value is not one of Herald's ids
            log.warning("Slack request refused: %s", error)
            if respond is not None and body.get("response_url"):
                await respond(text=problem_text(":warning:", error), response_type="ephemeral", replace_original=False)
            return
        log.error("unhandled Slack listener error", exc_info=error)

    return app


def slack_route(app: AsyncApp, herald: Herald):  # noqa: ANN201 - an aiohttp handler
    """`POST /slack/events`. Before bolt sees a correctly signed request: a body Slack would never
    send is a 400 with a short reason (bolt and the listeners index fields freely), and a replay
    of a request already acted on is acknowledged with no second effect."""
    secret = herald.settings.slack_signing_secret
    verifier = SignatureVerifier(secret.get_secret_value() if secret else "")

    async def handle(request: web.Request) -> web.Response:
        try:
            text = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            log.warning("refused a Slack request whose body is not UTF-8")
            return web.json_response({"error": "the body is not UTF-8"}, status=400)
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not verifier.is_valid(text, timestamp, signature):
            log.warning("refused a Slack request with a bad or stale signature")
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            body = shape.parse(text, request.content_type)
        except shape.Malformed as exc:
            log.warning("refused a signed Slack request Herald cannot read: %s", exc)
            return web.json_response({"error": f"Herald cannot read this request ({exc})"}, status=400)
        if not await first_sighting(request_key("slack", timestamp, signature), now=herald.clock.now(),
                                    window=SLACK_WINDOW):
            log.warning("ignored a replayed Slack request (signed at %s)", timestamp)
            return web.Response(status=200)
        return await to_aiohttp_response(await app.async_dispatch(read_request(text, body, request)))
    return handle


def read_request(text: str, body: dict[str, Any], request: web.Request) -> AsyncBoltRequest:
    """Bolt's request over the body `shape.parse` has read, rather than Bolt reading it again.

    Bolt's own reading (`parse_body`) takes any form body in which the word "payload" appears
    anywhere for an interaction, and finding no `payload` field reads it as an empty body: a
    `/herald send ... | New payload limits | ...` command was answered "Herald is not connected
    to this Slack workspace yet". It also cost a second parse of every click's body."""
    bolt_request = AsyncBoltRequest(body="", query=request.query_string, headers=request.headers)
    bolt_request.raw_body = text  # Bolt checks the signature over it again
    bolt_request.body = body
    bolt_request.context = build_async_context(AsyncBoltContext({}), body)
    return bolt_request
