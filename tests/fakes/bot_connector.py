"""A fake Bot Connector service (the Teams side of the Bot Framework): a real aiohttp HTTP
server on 127.0.0.1.

Put ``fake.url`` where a real activity carries its ``serviceUrl``
(``https://smba.trafficmanager.net/emea/`` in production). It mirrors the REST calls Herald makes:

* ``POST /v3/conversations`` -- create (or find) the 1:1 conversation between the bot and one
  member; answers ``{"id": "a:conv-<user>"}`` (deterministic per user, like Teams, which answers
  the same id for the same bot and user).
* ``POST /v3/conversations/{id}/activities`` -- send; answers ``{"id": "<activity id>"}``.
* ``POST /v3/conversations/{id}/activities/{activityId}`` -- reply (stored with ``replyToId``).
* ``PUT /v3/conversations/{id}/activities/{activityId}`` -- update in place.
* ``DELETE /v3/conversations/{id}/activities/{activityId}`` -- delete.

Errors look like the real connector's: ``{"error": {"code": "...", "message": "..."}}`` with the
HTTP status (404 ``ConversationNotFound``, 403 ``BotNotInConversationRoster`` for a member without
the app (``remove_app``) or ``ConversationBlockedByUser`` for one who blocked it (``block``), 413
``MessageSizeTooBig``, 429 with ``Retry-After`` ...). Every request, failed ones included, is
recorded in ``fake.calls`` with its ``Authorization`` header.

Limits mode (``FakeBotConnector(limits=TeamsLimits())``, off by default) keeps Microsoft's
documented limits (tests/fakes/teams_limits.py): 50 requests a second per tenant and the per-bot
per-conversation windows; over a limit, ``429`` with ``Retry-After: <whole seconds>``. It can also
inject the transient 412/502/504 answers callers must retry. ``limits_stats()`` counts what got
through and every 429 and transient failure sent. ``/_fake/...`` routes (tests/fakes/control.py)
seed, inspect and count over HTTP; ``python -m tests.fakes.bot_connector --help`` runs one standalone.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.control import add_connector_routes
from tests.fakes.rate_limits import Clock, LimitStats, retry_after_seconds
from tests.fakes.server import LocalServer, ScriptedFaults
from tests.fakes.teams_limits import TeamsLimiter, TeamsLimits

__all__ = ["BotConnectorCall", "FakeBotConnector", "ROUTES", "TeamsLimits"]

ROUTES = ("create_conversation", "send_activity", "reply_activity", "update_activity", "delete_activity")
# Teams refuses bot messages over ~100 KB, counting the payload encoded as UTF-16.
MAX_MESSAGE_BYTES = 100 * 1024

_DEFAULT_CODES = {
    400: "BadArgument", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    412: "PreconditionFailed", 413: "MessageSizeTooBig", 429: "TooManyRequests", 500: "InternalServerError",
    502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout",
}


@dataclass(slots=True)
class BotConnectorCall:
    """One request the fake received."""

    route: str
    """One of :data:`ROUTES` (or ``"unknown"``)."""
    method: str
    path: str
    conversation_id: str | None
    activity_id: str | None
    body: Any
    authorization: str | None
    """The ``Authorization`` header as sent (``None`` when absent)."""
    status: int = 200
    error_code: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def bearer(self) -> str | None:
        if self.authorization and self.authorization[:7].lower() == "bearer ":
            return self.authorization[7:].strip()
        return None


@dataclass(slots=True)
class _Fault:
    status: int
    code: str | None
    message: str | None
    retry_after: float | int | None
    remaining: int


@dataclass(slots=True)
class _Conversation:
    id: str
    tenant_id: str
    user_id: str
    bot_id: str
    activities: list[dict[str, Any]] = field(default_factory=list)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)


class _ConnectorError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class FakeBotConnector(ScriptedFaults, LocalServer):
    """A fake Bot Connector served over real HTTP on 127.0.0.1 (random free port).

    Usage::

        async with FakeBotConnector() as fake:
            recipient = Recipient(workspace_id="tenant-1", user_id="aad-1", service_url=fake.url)
            ...
            card = fake.activities(fake.conversation_id("aad-1"))[0]["attachments"][0]["content"]
    """

    def __init__(self, *, record_calls: bool = True, limits: TeamsLimits | None = None,
                 clock: Clock = time.monotonic, host: str = "127.0.0.1", port: int = 0) -> None:
        self.record_calls = record_calls
        self.calls: list[BotConnectorCall] = []
        self.route_counts: Counter[str] = Counter()
        """Requests received per route (counted even when ``record_calls`` is off)."""
        self.clock = clock
        self.stats = LimitStats("tenant")
        self._limiter: TeamsLimiter | None = None
        self.set_limits(limits)
        self._host, self._bind_port = host, port
        self._conversations: dict[str, _Conversation] = {}
        self._no_faults()
        self._blocked: set[str] = set()
        self._without_app: set[str] = set()
        self._disabled_tenants: set[str] = set()
        self._expected_token: str | None = None
        self._roster: dict[str, dict[str, str]] = {}  # user id -> {email, name, ...}
        self._activity_counter = 0

    # ------------------------------------------------------------------ lifecycle

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v3/conversations", self._handle_create)
        app.router.add_post("/v3/conversations/{conversation}/activities", self._handle_send)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self._handle_reply)
        app.router.add_put("/v3/conversations/{conversation}/activities/{activity}", self._handle_update)
        app.router.add_delete("/v3/conversations/{conversation}/activities/{activity}", self._handle_delete)
        app.router.add_get("/v3/conversations/{conversation}/members/{member}", self._handle_member)
        add_connector_routes(app, self)
        return app

    @property
    def url(self) -> str:
        """The service URL to put in activities and PlatformAccount.service_url (ends with ``/``)."""
        return f"http://{self._host}:{self.port}/"

    # ------------------------------------------------------------------ set-up

    def expect_token(self, token: str | None) -> None:
        """Require ``Authorization: Bearer <token>``; other requests get 401 like the real
        connector. ``None`` (the default) accepts anything, as a local emulator does."""
        self._expected_token = token

    def open_conversation(self, user_id: str, tenant_id: str = "tenant-1", bot_id: str = "herald-bot") -> str:
        """Create the 1:1 conversation directly (as if the member had installed the bot)."""
        conversation_id = self.conversation_id(user_id)
        if conversation_id not in self._conversations:
            self._conversations[conversation_id] = _Conversation(conversation_id, tenant_id, user_id, bot_id)
        return conversation_id

    def add_roster_member(self, user_id: str, *, email: str, name: str = "", aad_object_id: str = "",
                          upn: str | None = None) -> None:
        """What `GET /v3/conversations/{id}/members/{userId}` answers for this user (`email` is the
        user's mail attribute, `upn` their userPrincipalName, the same address unless given)."""
        self._roster[user_id] = {"id": user_id, "email": email, "userPrincipalName": email if upn is None else upn,
                                 "name": name, "aadObjectId": aad_object_id or user_id}

    async def _handle_member(self, request: web.Request) -> web.Response:
        member = self._roster.get(request.match_info["member"])
        call = BotConnectorCall("get_member", "GET", request.path, request.match_info["conversation"],
                                None, {}, request.headers.get("Authorization"))
        self.route_counts[call.route] += 1
        if self.record_calls:
            self.calls.append(call)
        limited = self._rate_limit(call)
        if limited is not None:
            return limited
        if member is None:
            return web.json_response({"error": {"code": "MemberNotFoundInConversation", "message": "no such member"}},
                                     status=404)
        return web.json_response(member)

    # ------------------------------------------------------------------ limits mode

    def set_limits(self, limits: TeamsLimits | None) -> None:
        """Turn limits mode on with ``limits`` (Microsoft's figures: ``TeamsLimits()``), or off
        with ``None``. Buckets and windows start empty; counters are kept."""
        self.limits = limits
        self._limiter = TeamsLimiter(limits, self.clock) if limits is not None else None

    def limits_stats(self) -> dict[str, Any]:
        """Requests let through and 429s sent, per route and tenant, why each 429 was sent
        (``tenant``, ``conversation`` or ``injected``), the Retry-After values given per route, and
        the transient failures injected. Also served at ``GET /_fake/stats``."""
        return {"limits": None if self.limits is None else self.limits.as_dict(), **self.stats.snapshot()}

    def reset_limits_stats(self) -> None:
        self.stats.reset()

    def _scope(self, call: BotConnectorCall) -> tuple[str | None, str | None]:
        """(tenant, conversation) a request counts against; ``None`` where the fake cannot tell
        (a malformed create, an unknown conversation): such requests fail on their own."""
        if call.route == "create_conversation":
            body = call.body if isinstance(call.body, dict) else {}
            members = body.get("members")
            tenant = body.get("tenantId") or ((body.get("channelData") or {}).get("tenant") or {}).get("id")
            if isinstance(members, list) and members and isinstance(members[0], dict) and members[0].get("id"):
                return tenant or None, self.conversation_id(str(members[0]["id"]))
            return tenant or None, None
        conv = self._conversations.get(call.conversation_id or "")
        return (conv.tenant_id, conv.id) if conv is not None else (None, None)

    def _rate_limit(self, call: BotConnectorCall) -> web.Response | None:
        """The 429 the connector would answer in limits mode, else ``None`` (and the request is
        counted as accepted)."""
        tenant, conversation = self._scope(call)
        if self._limiter is not None:
            verdict = self._limiter.check(call.route, tenant, conversation)
            if verdict is not None:
                wait, reason = verdict
                retry_after = retry_after_seconds(wait)
                headers = {"Retry-After": str(retry_after)} if self._limiter.limits.retry_after else {}
                self.stats.throttle(tenant or "", call.route, reason, retry_after if headers else None)
                call.status, call.error_code = 429, _DEFAULT_CODES[429]
                return web.json_response(_error_body(call.error_code, "Too many requests."), status=429,
                                         headers=headers)
        self.stats.accept(tenant or "", call.route)
        return None

    def remove_conversation(self, conversation_id: str) -> None:
        """Later calls on this conversation answer 404 ConversationNotFound."""
        self._conversations.pop(conversation_id, None)

    def block(self, user_id: str) -> None:
        """The member blocked the bot: creating the conversation still answers its id (the app is
        installed), sending in it answers 403 ConversationBlockedByUser "User blocked the
        conversation with the bot." (as the real connector: MicrosoftDocs/msteams-docs#8394)."""
        self._blocked.add(user_id)

    def remove_app(self, user_id: str) -> None:
        """The member does not have the app (never installed it, or uninstalled it): creating a
        conversation with them, and sending in one, answer 403 BotNotInConversationRoster "The bot
        is not part of the conversation roster." (MicrosoftDocs/bot-docs#1527, msteams-docs#11125)."""
        self._without_app.add(user_id)

    def add_app(self, user_id: str) -> None:
        """The member (re)installed the app: their conversation takes messages again."""
        self._without_app.discard(user_id)

    def disable_bot(self, tenant_id: str) -> None:
        """A Teams admin of the tenant blocked the app: every call for it (creating a conversation,
        sending, updating) answers 403 BotDisabledByAdmin, as in Microsoft's table of the Bot
        Connector's status codes."""
        self._disabled_tenants.add(tenant_id)

    def enable_bot(self, tenant_id: str) -> None:
        """The tenant's admin allowed the app again."""
        self._disabled_tenants.discard(tenant_id)

    @staticmethod
    def conversation_id(user_id: str) -> str:
        """The conversation id ``POST /v3/conversations`` answers for ``user_id``."""
        return f"a:conv-{user_id}"

    # ------------------------------------------------------------------ faults

    def fail_next(self, route: str, status: int = 429, *, retry_after: float | int | None = None,
                  times: int = 1, code: str | None = None, message: str | None = None) -> None:
        """Make the next ``times`` calls of ``route`` (one of :data:`ROUTES`) fail with ``status``
        and the connector's error JSON; a 429 carries ``Retry-After`` when ``retry_after`` is given.
        Faults queue up in order."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; use one of {ROUTES}")
        if status < 400:
            raise ValueError("fail_next needs an error status (4xx/5xx)")
        if times < 1:
            raise ValueError("times must be >= 1")
        self._faults.setdefault(route, deque()).append(_Fault(status, code, message, retry_after, times))

    # ------------------------------------------------------------------ inspection

    def calls_to(self, route: str) -> list[BotConnectorCall]:
        return [c for c in self.calls if c.route == route]

    def clear_calls(self) -> None:
        self.calls.clear()

    def conversations(self) -> list[str]:
        return list(self._conversations)

    def conversation_party(self, conversation_id: str) -> tuple[str, str] | None:
        """``(tenant id, member's user id)`` of a conversation, ``None`` when there is none."""
        conv = self._conversations.get(conversation_id)
        return (conv.tenant_id, conv.user_id) if conv is not None else None

    def activities(self, conversation_id: str) -> list[dict[str, Any]]:
        """Current activities in the conversation, oldest first (the stored dicts; don't mutate)."""
        conv = self._conversations.get(conversation_id)
        return list(conv.activities) if conv is not None else []

    def activity(self, conversation_id: str, activity_id: str) -> dict[str, Any] | None:
        conv = self._conversations.get(conversation_id)
        return conv.by_id.get(activity_id) if conv is not None else None

    @staticmethod
    def card_of(activity: dict[str, Any]) -> dict[str, Any] | None:
        """The Adaptive Card content of an activity, if it carries one."""
        for attachment in activity.get("attachments") or []:
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                return attachment.get("content")
        return None

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle(self, request: web.Request, route: str, handler: Any) -> web.Response:
        conversation_id = request.match_info.get("conversation")
        activity_id = request.match_info.get("activity")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        call = BotConnectorCall(route, request.method, request.path, conversation_id, activity_id, body,
                                request.headers.get("Authorization"))
        self.route_counts[route] += 1
        if self.record_calls:
            self.calls.append(call)
        await self._slow_as_told(route)
        transient = None
        try:
            self._check_auth(call)
            fault = self._take_fault(route)
            if fault is not None:
                return self._injected(call, fault)
            limited = self._rate_limit(call)
            if limited is not None:
                return limited
            transient = self._limiter.transient() if self._limiter is not None else None
            if transient is not None and not transient[1]:
                return self._transient_response(call, transient[0])
            if not isinstance(body, dict) and request.method != "DELETE":
                raise _ConnectorError(400, "BadSyntax", "The request body is not a JSON object.")
            if len(raw.decode("utf-8", "replace").encode("utf-16-le")) > MAX_MESSAGE_BYTES:
                raise _ConnectorError(413, "MessageSizeTooBig", "Message size too big.")
            result = handler(call)
        except _ConnectorError as exc:
            call.status, call.error_code = exc.status, exc.code
            return web.json_response(_error_body(exc.code, exc.message), status=exc.status)
        if transient is not None:  # carried out, yet the caller hears a gateway failure
            return self._transient_response(call, transient[0])
        call.status = 201 if route in ("create_conversation", "send_activity", "reply_activity") else 200
        return web.json_response(result, status=call.status)

    def _transient_response(self, call: BotConnectorCall, status: int) -> web.Response:
        self.stats.fail(call.route, status)
        call.status, call.error_code = status, _DEFAULT_CODES.get(status, "ServiceError")
        return web.json_response(_error_body(call.error_code, f"Transient {status} {call.error_code}."), status=status)

    def _injected(self, call: BotConnectorCall, fault: _Fault) -> web.Response:
        """Answer an injected fault; injected 429s and 5xx/412 answers are counted like the limits'."""
        response = self._fault_response(call, fault)
        tenant, _ = self._scope(call)
        if fault.status == 429:
            header = response.headers.get("Retry-After")
            self.stats.throttle(tenant or "", call.route, "injected", int(float(header)) if header else None)
        elif fault.status >= 500 or fault.status == 412:
            self.stats.fail(call.route, fault.status)
        return response

    def _check_auth(self, call: BotConnectorCall) -> None:
        if self._expected_token is not None and call.bearer != self._expected_token:
            raise _ConnectorError(401, "Unauthorized", "Authorization has been denied for this request.")

    @staticmethod
    def _fault_response(call: BotConnectorCall, fault: _Fault) -> web.Response:
        code = fault.code or _DEFAULT_CODES.get(fault.status, "ServiceError")
        headers = {}
        if fault.retry_after is not None:
            ra = fault.retry_after
            headers["Retry-After"] = str(int(ra) if float(ra).is_integer() else ra)
        call.status, call.error_code = fault.status, code
        return web.json_response(_error_body(code, fault.message or f"Injected {fault.status} {code}."),
                                 status=fault.status, headers=headers)

    async def _handle_create(self, request: web.Request) -> web.Response:
        return await self._handle(request, "create_conversation", self._create)

    async def _handle_send(self, request: web.Request) -> web.Response:
        return await self._handle(request, "send_activity", self._send)

    async def _handle_reply(self, request: web.Request) -> web.Response:
        return await self._handle(request, "reply_activity", self._reply)

    async def _handle_update(self, request: web.Request) -> web.Response:
        return await self._handle(request, "update_activity", self._update)

    async def _handle_delete(self, request: web.Request) -> web.Response:
        return await self._handle(request, "delete_activity", self._delete)

    # ------------------------------------------------------------------ the API

    def _conversation(self, conversation_id: str | None) -> _Conversation:
        conv = self._conversations.get(conversation_id or "")
        if conv is None:
            raise _ConnectorError(404, "ConversationNotFound", "Conversation not found.")
        if conv.tenant_id in self._disabled_tenants:
            raise _ConnectorError(403, "BotDisabledByAdmin", "The bot is disabled by the tenant admin.")
        if conv.user_id in self._without_app:
            raise _ConnectorError(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
        if conv.user_id in self._blocked:
            raise _ConnectorError(403, "ConversationBlockedByUser", "User blocked the conversation with the bot.")
        return conv

    def _create(self, call: BotConnectorCall) -> dict[str, Any]:
        body = call.body
        members = body.get("members")
        if not isinstance(members, list) or len(members) != 1 or not isinstance(members[0], dict) \
                or not members[0].get("id"):
            raise _ConnectorError(400, "BadArgument", "Exactly one member with an id is required.")
        if body.get("isGroup"):
            raise _ConnectorError(400, "BadArgument", "Only 1:1 conversations are supported here.")
        tenant = body.get("tenantId") or ((body.get("channelData") or {}).get("tenant") or {}).get("id")
        if not tenant:
            raise _ConnectorError(400, "BadArgument", "A tenant id is required.")
        if not (body.get("bot") or {}).get("id"):
            raise _ConnectorError(400, "BadArgument", "The bot account is required.")
        user_id = str(members[0]["id"])
        if tenant in self._disabled_tenants:
            raise _ConnectorError(403, "BotDisabledByAdmin", "The bot is disabled by the tenant admin.")
        if user_id in self._without_app:
            raise _ConnectorError(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
        conversation_id = self.open_conversation(user_id, tenant, body["bot"]["id"])
        return {"id": conversation_id}

    def _next_activity_id(self) -> str:
        self._activity_counter += 1
        return f"1:{1_700_000_000_000 + self._activity_counter}"

    @staticmethod
    def _check_activity(body: dict[str, Any]) -> None:
        if body.get("type") != "message":
            raise _ConnectorError(400, "BadArgument", "Only message activities are supported here.")
        if not body.get("text") and not body.get("attachments"):
            raise _ConnectorError(400, "BadArgument", "The message has no text and no attachments.")

    def _store(self, conv: _Conversation, body: dict[str, Any], reply_to: str | None = None) -> dict[str, Any]:
        self._check_activity(body)
        activity_id = self._next_activity_id()
        stored = {**body, "id": activity_id, "conversation": {"id": conv.id}}
        if reply_to:
            stored["replyToId"] = reply_to
        conv.activities.append(stored)
        conv.by_id[activity_id] = stored
        return {"id": activity_id}

    def _send(self, call: BotConnectorCall) -> dict[str, Any]:
        return self._store(self._conversation(call.conversation_id), call.body)

    def _existing(self, call: BotConnectorCall) -> tuple[_Conversation, dict[str, Any]]:
        conv = self._conversation(call.conversation_id)
        activity = conv.by_id.get(call.activity_id or "")
        if activity is None:
            raise _ConnectorError(404, "ActivityNotFound", "The activity was not found.")
        return conv, activity

    def _reply(self, call: BotConnectorCall) -> dict[str, Any]:
        conv, _ = self._existing(call)
        return self._store(conv, call.body, reply_to=call.activity_id)

    def _update(self, call: BotConnectorCall) -> dict[str, Any]:
        conv, activity = self._existing(call)
        self._check_activity(call.body)
        kept = {k: activity[k] for k in ("id", "conversation", "replyToId") if k in activity}
        activity.clear()
        activity.update({**call.body, **kept, "edited": True})
        return {"id": call.activity_id}

    def _delete(self, call: BotConnectorCall) -> dict[str, Any]:
        conv, activity = self._existing(call)
        conv.activities.remove(activity)
        del conv.by_id[call.activity_id]  # type: ignore[arg-type]
        return {}


if __name__ == "__main__":  # python -m tests.fakes.bot_connector --help
    import sys

    from tests.fakes.cli import main

    sys.exit(main("teams"))
