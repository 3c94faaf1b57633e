"""`POST /api/messages`: the Agents SDK's JWT check, then Herald's own dispatch.

The Microsoft 365 Agents SDK validates the Bot Framework JWT (`jwt_authorization_decorator`:
a missing or bad token gets 401 and nothing runs); Herald adds the checks of the token against
the activity that the SDK leaves out (`connector_token`: 403), parses the activity, dispatches it
itself and answers through `TeamsChannel`, the same client the outbox uses, so replies and
proactive sends share one connector client, one token provider and one service-URL guard.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable

from aiohttp import web
from microsoft_agents.hosting.aiohttp import jwt_authorization_decorator
from microsoft_agents.hosting.core.authorization import AgentAuthConfiguration

from bot.handlers.teams.connector_token import BotFrameworkKeys, TokenRefused, check_connector_token
from bot.handlers.teams.handler import TeamsHandler
from bot.service import Herald

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TEAMS_HANDLER_KEY = web.AppKey("teams_handler", TeamsHandler)


def auth_configuration(herald: Herald) -> AgentAuthConfiguration:
    settings = herald.settings
    if not settings.teams_app_id:  # add_teams_routes lets only a local connector or the sandbox here
        log.warning("HERALD_TEAMS_APP_ID is not set: /api/messages accepts UNAUTHENTICATED requests. "
                    "Use this for local testing only.")
        return AgentAuthConfiguration(anonymous_allowed=True)
    # validate_issuer: the SDK checks only the signature and the audience unless told to, so a token
    # any Entra tenant mints for the app id (a multi-tenant app any admin may consent to) would pass.
    # With it, only the Bot Framework's issuer, Microsoft's first-party tenants and, when
    # HERALD_TEAMS_TENANT_ID is set, that tenant's own issuers are accepted.
    # authority: the cloud those issuers (and the Bot Connector's key set) are taken from; in Azure
    # Government (login.microsoftonline.us) the connector's tokens come from https://api.botframework.us
    # (Microsoft's GovernmentConstants.ToBotFromChannelTokenIssuer), which the public default refuses.
    return AgentAuthConfiguration(client_id=settings.teams_app_id, tenant_id=settings.teams_tenant_id,
                                  authority=settings.teams_authority_url, anonymous_allowed=False,
                                  validate_issuer=True)


_AUTHORISED = web.Response(status=204)  # a marker: the SDK's check passed and called through
_REFUSED = {"error": "Invalid token or authentication failed."}


def guarded_jwt_check(handler: Handler, keys: BotFrameworkKeys) -> Handler:
    """The SDK's JWT check, made total: whatever a crafted token makes the validator raise
    (it raised `KeyError: 'kid'` for a token whose header has no key id) is a 401 with one
    warning line that names the exception type only, never the token. A token the SDK accepts
    must then fit the activity it carries (`check_connector_token`, with the Bot Framework's
    key sets cached in `keys`), else 403."""
    sdk_check = jwt_authorization_decorator(_authorised)

    async def checked(request: web.Request) -> web.StreamResponse:
        try:
            outcome = await sdk_check(request)
        except Exception as exc:  # noqa: BLE001 - any validator failure means "not authenticated"
            log.warning("refused a Teams request: its token could not be validated (%s)", type(exc).__name__)
            return web.json_response(_REFUSED, status=401)
        if outcome is not _AUTHORISED:
            return outcome  # the SDK's own 401 (it logged one warning, without the token)
        identity = request.get("claims_identity")
        activity = await _json_object(request) if identity is not None and identity.claims else None
        if activity is not None:  # None: anonymous (no app id), or a body the handler answers with 400
            try:
                await check_connector_token(identity.claims, identity.security_token or "", activity, keys)
            except TokenRefused as refused:
                log.warning("refused a Teams request: %s", refused)
                return web.json_response(_REFUSED, status=403)
        return await handler(request)
    return checked


async def _json_object(request: web.Request) -> dict | None:
    """The body as a JSON object (aiohttp keeps the body, so the handler reads it again)."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def _authorised(request: web.Request) -> web.Response:
    return _AUTHORISED


class _DropSdkValidationTraceback(logging.Filter):
    """The Activity model logs a traceback at ERROR for any body it cannot read, before raising;
    Herald answers such a body with 400 and one warning of its own, so that record is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Validation error for Activity")


_NOT_CONFIGURED = {"error": "Teams is not configured on this server"}


async def _teams_not_configured(request: web.Request) -> web.Response:
    return web.json_response(_NOT_CONFIGURED, status=401)


def add_teams_routes(app: web.Application, herald: Herald) -> None:
    if not herald.settings.teams_app_id and not herald.settings.teams_unauthenticated:
        log.warning("HERALD_TEAMS_APP_ID is not set: /api/messages refuses every request (401) until it is "
                    "(unauthenticated requests are taken only from a local connector, "
                    "HERALD_TEAMS_CHECK_SERVICE_URL=false, or in the sandbox)")
        app.router.add_post("/api/messages", _teams_not_configured)
        return
    with warnings.catch_warnings():  # the SDK's JWT check reads this plain string key
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["agent_configuration"] = auth_configuration(herald)
    handler = app[TEAMS_HANDLER_KEY] = TeamsHandler(herald)
    activity_log = logging.getLogger("microsoft_agents.activity.activity")
    if not any(isinstance(f, _DropSdkValidationTraceback) for f in activity_log.filters):
        activity_log.addFilter(_DropSdkValidationTraceback())
    app.router.add_post("/api/messages", guarded_jwt_check(handler.handle, BotFrameworkKeys()))
