"""A fake Slack Web API: a real aiohttp HTTP server on 127.0.0.1.

Point ``slack_sdk.web.async_client.AsyncWebClient(token=..., base_url=fake.url)`` at it.

It mirrors how Slack answers the requests ``AsyncWebClient`` sends:

* parameters arrive as a query string (``params=``, e.g. ``conversations.open``, GET
  methods), a form body (``data=``) or a JSON body (``json=``, e.g. ``chat.postMessage``);
  all three are merged. JSON-valued fields (``blocks``, ``metadata``, ``view`` ...) that
  arrive as JSON strings are decoded before they are recorded or stored.
* the token comes from ``Authorization: Bearer <token>`` (or a ``token`` parameter); an
  unknown token answers ``invalid_auth``, a revoked one ``token_revoked``, the bot token of an
  app uninstalled from its workspace ``account_inactive`` (``uninstall``) -- with HTTP 200
  and ``{"ok": false, ...}`` exactly like Slack.
* injected rate limits answer HTTP 429 with ``Retry-After`` and ``{"ok": false, "error":
  "ratelimited"}``; injected server errors answer HTTP 5xx with a JSON error body.
* limits mode (``FakeSlackAPI(limits=SlackLimits())``, off by default) keeps Slack's own rate
  limits (tests/fakes/slack_limits.py): over a limit, HTTP 429, ``Retry-After: <whole seconds>``
  and ``{"ok": false, "error": "ratelimited"}``; ``limits_stats()`` counts what got through and
  every 429 sent.
* messages (``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``, response_url) must keep
  Block Kit's documented limits (tests/fakes/block_kit.py), or they answer ``invalid_blocks``.
* ``chat.postMessage`` to a user id (``U...``/``W...``) posts into the bot's DM with that user,
  opening it if needed, and answers with the DM's ``D...`` id in ``channel``, as Slack does for a
  bot token.

Every request, including failed ones, is recorded in ``fake.calls``. ``/_fake/...`` routes
(tests/fakes/control.py) seed, inspect and count over HTTP for a fake in another process;
``python -m tests.fakes.slack_api --help`` runs one standalone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from tests.fakes.block_kit import as_slack_keeps, block_problems, view_problems
from tests.fakes.control import add_slack_routes
from tests.fakes.rate_limits import Clock, LimitStats, retry_after_seconds
from tests.fakes.seeding import UserRange
from tests.fakes.server import LocalServer, ScriptedFaults
from tests.fakes.slack_limits import SlackLimiter, SlackLimits

__all__ = ["Call", "FakeSlackAPI", "SlackLimits"]

# Fields Slack accepts as JSON documents; form bodies carry them as JSON strings.
_JSON_FIELDS = frozenset(
    {"blocks", "attachments", "metadata", "view", "unfurls", "user_auth_blocks", "private_metadata_json"}
)
_JSON_CT = "application/json"
# What an app installed from Herald's manifest is granted; Slack names a token's scopes in the
# X-OAuth-Scopes header of every Web API answer.
DEFAULT_SCOPES = ("commands", "chat:write", "im:write", "im:history", "files:write")


def _peer(request: web.Request) -> str:
    """The client's "address:port" of the TCP connection the request came over."""
    peername = request.transport.get_extra_info("peername") if request.transport is not None else None
    return ":".join(map(str, peername[:2])) if peername else ""


@dataclass(slots=True)
class Call:
    """One request the fake received."""

    method: str
    """Web API method (``chat.postMessage``) or ``"response_url"``."""
    team_id: str | None
    """Team of the token used; ``None`` when the token was missing/unknown (or for response_url)."""
    args: dict[str, Any]
    """Merged query/form/JSON parameters (JSON strings in known fields decoded)."""
    key: str | None = None
    """For ``response_url`` calls: the key passed to :meth:`FakeSlackAPI.response_url`."""
    status: int = 200
    """HTTP status the fake answered with."""
    error: str | None = None
    """Slack ``error`` code the fake answered with (``None`` when ``ok`` was true)."""
    peer: str = ""
    """The client's address and port: one per TCP connection (Web API and response_url calls)."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    @property
    def channel(self) -> str:
        """The conversation the call names: a user id (``U...``/``W...``) posted to means the
        bot's DM with that user, ``D`` + the user id, as ``chat.postMessage`` answers."""
        channel = str(self.args.get("channel") or "")
        return "D" + channel if channel[:1] in ("U", "W") else channel


@dataclass(slots=True)
class _Workspace:
    team_id: str
    token: str
    bot_user_id: str
    bot_id: str
    revoked: bool = False
    revoked_error: str = "token_revoked"  # what a revoked token answers
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None  # token rotation: the token's expiry on `token_clock`
    # An org-wide install (Enterprise Grid): one token for every workspace of the organisation;
    # `team_id` is then the enterprise id (E...), under which the org's users (W... ids) are kept.
    enterprise_id: str | None = None


@dataclass(slots=True)
class _Fault:
    status: int
    error: str | None
    retry_after: float | int | None
    remaining: int
    html: bool = False  # a gateway's HTML page instead of Slack's JSON
    landed: bool = False  # the call takes effect first (a message is posted), then the fault is answered
    drop: bool = False  # no answer at all: the connection is closed (with `landed`, after the effect)


@dataclass(slots=True)
class _Channel:
    messages: list[dict[str, Any]] = field(default_factory=list)  # oldest first (ts increasing)
    by_ts: dict[str, dict[str, Any]] = field(default_factory=dict)


class _SlackError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _ts_key(ts: Any) -> tuple[int, int]:
    s = str(ts)
    sec, _, frac = s.partition(".")
    try:
        return int(sec or 0), int((frac + "000000")[:6])
    except ValueError:
        return 0, 0


def _normalise(args: dict[str, Any]) -> dict[str, Any]:
    for name in _JSON_FIELDS.intersection(args):
        value = args[name]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                args[name] = json.loads(value)
            except ValueError:
                pass
    return args


def _json(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers, content_type=_JSON_CT)


class FakeSlackAPI(ScriptedFaults, LocalServer):
    """A fake Slack Web API served over real HTTP on 127.0.0.1 (random free port).

    Usage::

        async with FakeSlackAPI() as fake:
            fake.add_workspace("T1", "xoxb-1")
            fake.add_user("T1", "U1", email="a@example.com")
            client = AsyncWebClient(token="xoxb-1", base_url=fake.url)
    """

    def __init__(self, *, record_calls: bool = True, limits: SlackLimits | None = None,
                 clock: Clock = time.monotonic, host: str = "127.0.0.1", port: int = 0) -> None:
        self.record_calls = record_calls
        """Set to ``False`` (e.g. in benchmarks) to stop appending to :attr:`calls`."""
        self.calls: list[Call] = []
        self._call_counts: Counter[str] = Counter()
        self._workspaces: dict[str, _Workspace] = {}  # token -> workspace
        self._users: dict[str, dict[str, dict[str, Any]]] = {}  # team -> user id -> user
        self._emails: dict[str, dict[str, str]] = {}  # team -> lower(email) -> user id
        self._user_ranges: dict[str, list[UserRange]] = {}  # team -> users stored on first look-up
        self._channels: dict[str, _Channel] = {}
        self._ephemeral: dict[str, list[dict[str, Any]]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        """Views opened/updated/published, by view id."""
        self._no_faults()
        self._last_ts_us = 0  # the newest message ts handed out, in microseconds
        self._view_counter = 0
        self._host, self._bind_port = host, port
        self.clock = clock
        self._limiter: SlackLimiter | None = None
        self.stats = LimitStats("workspace")
        self._non_marketplace: set[str] = set()  # team ids of distributed non-Marketplace installs
        # enterprise id -> the org's workspaces (team id -> name) its org-wide app was added to
        self._org_teams: dict[str, dict[str, str]] = {}
        self._app_tokens: dict[str, Any] = {}  # app-level token -> Socket Mode server
        self.token_clock: Callable[[], float] = time.time
        """Seconds since the epoch, for expiring tokens (token rotation); tests set a manual clock."""
        self.message_clock: Callable[[], float] = time.time
        """Seconds since the epoch that a new message's ``ts`` is taken from (as Slack's: the time it
        was posted, unique and increasing within the fake); tests set the clock Herald runs on."""
        self._refresh_tokens: dict[str, dict[str, Any]] = {}  # live refresh token -> grant
        self.refreshes = 0
        """Successful refresh-token exchanges (oauth.v2.access with grant_type=refresh_token)."""
        self.set_limits(limits)
        self._methods: dict[str, Callable[[_Workspace, dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "auth.teams.list": self._auth_teams_list,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }
        self._uploads: dict[str, dict[str, Any]] = {}  # file id -> {filename, content, ...}
        self.shared_files: list[dict[str, Any]] = []
        """Files shared by files.completeUploadExternal: {id, title, filename, content, channel_id, initial_comment}."""

    # ------------------------------------------------------------------ lifecycle

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/oauth.v2.access", self._handle_oauth_v2_access)  # no bot token
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{key}", self._handle_response_url)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        add_slack_routes(app, self)
        return app

    @property
    def base(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """Web API base URL for ``AsyncWebClient(base_url=...)``, ending with ``/api/``."""
        return f"{self.base}/api/"

    def response_url(self, key: str) -> str:
        """A response_url on this server; POSTs to it are recorded as method ``response_url``."""
        return f"{self.base}/response/{key}"

    # ------------------------------------------------------------------ registry

    def add_workspace(self, team_id: str, token: str, bot_user_id: str = "UBOT", *,
                      non_marketplace: bool = False, scopes: tuple[str, ...] = DEFAULT_SCOPES) -> None:
        """``non_marketplace``: the app reached this workspace as a commercially distributed app
        outside the Slack Marketplace (a partner's "Add to Slack"), so conversations.history and
        conversations.replies get Slack's tightened limits (see :meth:`set_non_marketplace`)."""
        self._workspaces[token] = _Workspace(
            team_id=team_id, token=token, bot_user_id=bot_user_id, bot_id="B" + team_id.lstrip("T"),
            scopes=tuple(scopes),
        )
        self._users.setdefault(team_id, {})
        self._emails.setdefault(team_id, {})
        self.set_non_marketplace(team_id, non_marketplace)

    def add_org(self, enterprise_id: str, token: str, bot_user_id: str = "WBOT", *,
                scopes: tuple[str, ...] = DEFAULT_SCOPES) -> None:
        """An org-wide install in an Enterprise Grid organisation (Slack's "Using APIs with
        organization-wide apps"): one bot token serves every workspace of the org. User ids are
        org-wide (``W...``): add them with ``add_user(enterprise_id, ...)``. Calls made with the
        token are counted against the org (``Call.team_id`` and the rate limits): Slack documents
        its limits "per app per workspace" and says nothing more for an org token, so the fake
        takes the stricter reading."""
        self.add_workspace(enterprise_id, token, bot_user_id, scopes=scopes)
        self._workspaces[token].enterprise_id = enterprise_id

    def grant_org_teams(self, enterprise_id: str, teams: dict[str, str]) -> None:
        """An Org Admin added the org-wide app of `enterprise_id` to these workspaces (team id ->
        name): auth.teams.list lists them from now on (send Herald `team_access_granted` yourself)."""
        self._org_teams.setdefault(enterprise_id, {}).update(teams)

    def revoke_org_teams(self, enterprise_id: str, team_ids: list[str]) -> None:
        """The org-wide app of `enterprise_id` was removed from these workspaces (`team_access_revoked`)."""
        for team_id in team_ids:
            self._org_teams.get(enterprise_id, {}).pop(team_id, None)

    def set_non_marketplace(self, team_id: str, value: bool = True) -> None:
        """Mark (or unmark) a workspace as a distributed non-Marketplace install: its
        conversations.history/replies pages default to and are capped at 15 objects and, in limits
        mode, it may call each of them once a minute."""
        if value:
            self._non_marketplace.add(team_id)
        else:
            self._non_marketplace.discard(team_id)

    def set_scopes(self, token: str, scopes: tuple[str, ...]) -> None:
        """The scopes ``token`` was granted (answered in ``X-OAuth-Scopes``)."""
        self._workspaces[token].scopes = tuple(scopes)

    def enable_socket_mode(self, app_token: str, server: Any) -> None:
        """``apps.connections.open`` with ``app_token`` (an app-level ``xapp-`` token with
        connections:write) answers ``server.new_url()`` (tests/fakes/slack_socket_mode.py)."""
        self._app_tokens[app_token] = server

    def revoke(self, token: str, error: str = "token_revoked") -> None:
        """Later calls with ``token`` answer ``token_revoked`` (or ``error``, e.g. ``invalid_auth``)."""
        ws = self._workspaces[token]
        ws.revoked, ws.revoked_error = True, error

    def uninstall(self, token: str) -> None:
        """The app was removed from the token's workspace: later calls with this bot token answer
        ``account_inactive`` (Slack's error reference: "Authentication token is for a deleted user or
        workspace when using a bot token"), and no event is sent (Herald missed it)."""
        ws = self._workspaces[token]
        ws.revoked, ws.revoked_error = True, "account_inactive"

    def add_user(self, team_id: str, user_id: str, email: str | None = None, name: str | None = None) -> None:
        name = name or user_id.lower()
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": team_id,
            "name": name,
            "real_name": name,
            "deleted": False,
            "is_bot": False,
            "tz": "UTC",
            "profile": {"real_name": name, "display_name": name, "team": team_id},
        }
        if email:
            user["profile"]["email"] = email
            self._emails.setdefault(team_id, {})[email.lower()] = user_id
        self._users.setdefault(team_id, {})[user_id] = user

    def add_user_range(self, team_id: str, users: UserRange) -> None:
        """Many users at once (``users.ids()``, e-mails from ``users.email``), each stored only when
        first looked up: a benchmark's 100,000 members cost nothing until used."""
        self._user_ranges.setdefault(team_id, []).append(users)

    def _find_user(self, team_id: str, user_id: str) -> dict[str, Any] | None:
        user = self._users.get(team_id, {}).get(user_id)
        if user is None:
            for users in self._user_ranges.get(team_id, ()):
                if user_id in users:
                    self.add_user(team_id, user_id, email=users.email(user_id))
                    return self._users[team_id][user_id]
        return user

    def _find_email(self, team_id: str, email: str) -> str | None:
        user_id = self._emails.get(team_id, {}).get(email.lower())
        if user_id is None:
            user_id = next((u for r in self._user_ranges.get(team_id, ()) if (u := r.user_for_email(email))), None)
        return user_id

    # ------------------------------------------------------------------ limits mode

    def set_limits(self, limits: SlackLimits | None) -> None:
        """Turn limits mode on with ``limits`` (Slack's figures: ``SlackLimits()``), or off with
        ``None``. Buckets start full; counters are kept (see :meth:`reset_limits_stats`)."""
        self.limits = limits
        self._limiter = SlackLimiter(limits, self.clock) if limits is not None else None

    def limits_stats(self) -> dict[str, Any]:
        """Requests let through and 429s sent, per method and workspace, why each 429 was sent
        (a tier, ``channel``, ``workspace``, ``non_marketplace`` or ``injected``), and a histogram of
        the Retry-After values given per method. Also served at ``GET /_fake/stats``."""
        return {"limits": None if self.limits is None else self.limits.as_dict(), **self.stats.snapshot()}

    def reset_limits_stats(self) -> None:
        self.stats.reset()

    def _rate_limit(self, ws: _Workspace, method: str, args: dict[str, Any], call: Call) -> web.Response | None:
        """The 429 Slack would answer for this call in limits mode, else ``None``."""
        assert self._limiter is not None
        channel = ""
        if method == "chat.postMessage":
            channel = str(args.get("channel") or "")
            if channel[:1] in ("U", "W"):
                channel = self.dm_channel_id(channel)
        verdict = self._limiter.check(ws.team_id, method, channel=channel,
                                      non_marketplace=ws.team_id in self._non_marketplace)
        if verdict is None:
            return None
        wait, reason = verdict
        retry_after = retry_after_seconds(wait)
        self.stats.throttle(ws.team_id, method, reason, retry_after)
        call.status, call.error = 429, "ratelimited"
        return _json({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)})

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: float | int | None = None,
        times: int = 1,
        html: bool = False,
        landed: bool = False,
        drop: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        * ``status=429`` (implied by ``retry_after``): HTTP 429, ``Retry-After`` header when
          ``retry_after`` is given, body ``{"ok": false, "error": "ratelimited"}``.
        * ``status>=400``: that HTTP status, body ``{"ok": false, "error": error or "internal_error"}``.
        * ``status=200, error="..."``: HTTP 200 with ``{"ok": false, "error": error}``.
        * ``html=True`` with a 5xx status: an HTML error page, as a load balancer in front of the
          API answers 502/503/504.

        * ``landed=True``: the call takes effect first (the message is posted) and only its answer
          fails, as Slack documents for ``internal_error`` ("it's possible some aspect of the
          operation succeeded") and as a timeout or a dropped connection leaves it.
        * ``drop=True``: no answer; the connection is closed (``status`` is then ignored).

        Faults queue up: several ``fail_next`` calls for one method apply in order.
        ``method`` may be ``"response_url"``.
        """
        if retry_after is not None and status == 200:
            status = 429
        if drop and status == 200 and error is None:
            status = 599  # never sent: the connection is closed instead
        if status == 200 and error is None:
            raise ValueError("fail_next needs a non-200 status, an error code or retry_after")
        if times < 1:
            raise ValueError("times must be >= 1")
        if html and status < 500:
            raise ValueError("html=True is for a gateway's 5xx page")
        self._faults.setdefault(method, deque()).append(_Fault(status, error, retry_after, times, html, landed, drop))

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def call_count(self, method: str) -> int:
        """Requests received for ``method`` (counted even when ``record_calls`` is off)."""
        return self._call_counts[method]

    def clear_calls(self) -> None:
        self.calls.clear()
        self._call_counts.clear()

    def request_counts(self) -> dict[str, int]:
        """Requests received per method (counted even when ``record_calls`` is off)."""
        return dict(self._call_counts)

    def channels(self) -> list[str]:
        """Ids of the channels holding messages (DMs, channels posted to)."""
        return list(self._channels)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Current messages in ``channel``, oldest first (the stored dicts; don't mutate)."""
        ch = self._channels.get(channel)
        return list(ch.messages) if ch is not None else []

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        ch = self._channels.get(channel)
        return ch.by_ts.get(ts) if ch is not None else None

    def ephemeral_messages(self, channel: str) -> list[dict[str, Any]]:
        return list(self._ephemeral.get(channel, ()))

    def dm_channel_id(self, user_id: str) -> str:
        """The DM channel id ``conversations.open(users=user_id)`` and ``chat.postMessage(channel=user_id)`` answer."""
        return "D" + user_id

    # ------------------------------------------------------------------ HTTP plumbing

    async def _read_args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query) if request.query_string else {}
        if request.can_read_body:
            ctype = request.content_type
            if ctype == _JSON_CT:
                raw = await request.read()
                if raw:
                    body = json.loads(raw)
                    if isinstance(body, dict):
                        args.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for k, v in form.items():
                    args[k] = v if isinstance(v, str) else getattr(v, "filename", None) or "(file)"
        return _normalise(args)

    @staticmethod
    def _fault_response(fault: _Fault) -> tuple[web.Response, str]:
        if fault.status == 429:
            error = fault.error or "ratelimited"
            headers = None
            if fault.retry_after is not None:
                ra = fault.retry_after
                headers = {"Retry-After": str(int(ra) if float(ra).is_integer() else ra)}
            return _json({"ok": False, "error": error}, status=429, headers=headers), error
        if fault.html:
            page = f"<html><body><h1>{fault.status} Bad Gateway</h1></body></html>"
            return web.Response(text=page, status=fault.status, content_type="text/html"), "html"
        if fault.status != 200:
            error = fault.error or "internal_error"
            return _json({"ok": False, "error": error}, status=fault.status), error
        error = fault.error or "unknown_error"
        return _json({"ok": False, "error": error}), error

    def _injected(self, fault: _Fault, call: Call) -> web.Response:
        """Answer an injected fault; an injected 429 is counted like any other 429 sent."""
        response, call.error = self._fault_response(fault)
        call.status = response.status
        if response.status == 429:
            header = response.headers.get("Retry-After")
            retry_after = int(float(header)) if header else None
            self.stats.throttle(call.team_id or "", call.method, "injected", retry_after)
        elif response.status >= 500:
            self.stats.fail(call.method, response.status)
        return response

    def _record(self, call: Call) -> None:
        self._call_counts[call.method] += 1
        if self.record_calls:
            self.calls.append(call)

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            args = await self._read_args(request)
        except ValueError:
            args = {}
            call = Call(method, None, args, status=200, error="invalid_json")
            self._record(call)
            return _json({"ok": False, "error": "invalid_json"})

        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else args.pop("token", None)
        args.pop("token", None)
        ws = self._workspaces.get(token) if token else None
        call = Call(method, ws.team_id if ws is not None else None, args, peer=_peer(request))
        self._record(call)
        if method == "apps.connections.open" or (token or "").startswith("xapp-"):
            return self._app_level(method, token, call)

        await self._slow_as_told(method)

        fault = self._take_fault(method) if self._faults else None
        if fault is not None and not fault.landed:
            return self._dropped(request, call) if fault.drop else self._injected(fault, call)
        answer = self._answer(method, token, ws, args, call)
        if fault is not None:  # landed: the call took effect, its answer is lost
            return self._dropped(request, call) if fault.drop else self._injected(fault, call)
        return answer

    @staticmethod
    def _dropped(request: web.Request, call: Call) -> web.Response:
        call.error = "connection dropped"
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=204)  # never reaches the caller

    def _answer(self, method: str, token: str | None, ws: Any, args: dict[str, Any], call: Call) -> web.Response:
        handler = self._methods.get(method)
        if handler is None:
            call.error = "unknown_method"
            return _json({"ok": False, "error": "unknown_method"})
        if not token:
            call.error = "not_authed"
            return _json({"ok": False, "error": "not_authed"})
        if ws is None:
            call.error = "invalid_auth"
            return _json({"ok": False, "error": "invalid_auth"})
        if ws.revoked:
            call.error = ws.revoked_error
            return _json({"ok": False, "error": ws.revoked_error})
        if ws.expires_at is not None and self.token_clock() >= ws.expires_at:
            call.error = "token_expired"
            return _json({"ok": False, "error": "token_expired"})
        if self._limiter is not None:
            limited = self._rate_limit(ws, method, args, call)
            if limited is not None:
                return limited
        self.stats.accept(ws.team_id, method)
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            problems = block_problems(args.get("blocks"))
            if problems:
                call.error = "invalid_blocks"
                return _json({"ok": False, "error": "invalid_blocks", "errors": problems})
        try:
            result = handler(ws, args)
        except _SlackError as exc:
            call.error = exc.error
            return _json({"ok": False, "error": exc.error}, headers={"X-OAuth-Scopes": ",".join(ws.scopes)})
        return _json(result, headers={"X-OAuth-Scopes": ",".join(ws.scopes)})

    def _app_level(self, method: str, token: str | None, call: Call) -> web.Response:
        """App-level tokens (xapp-) may only open Socket Mode connections, and only they may."""
        if not token:
            call.error = "not_authed"
        elif method != "apps.connections.open" or not token.startswith("xapp-"):
            call.error = "not_allowed_token_type"
        elif token not in self._app_tokens:
            call.error = "invalid_auth"
        if call.error is not None:
            return _json({"ok": False, "error": call.error})
        return _json({"ok": True, "url": self._app_tokens[token].new_url()})

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        try:
            args = await self._read_args(request)
        except ValueError:
            args = {}
        if "payload" in args and isinstance(args["payload"], str):
            try:
                args = _normalise(json.loads(args["payload"]))
            except ValueError:
                pass
        call = Call("response_url", None, args, key=key, peer=_peer(request))
        self._record(call)
        if self._limiter is not None:  # Slack documents no rate limit for response_url; counted only
            self.stats.accept("", "response_url")
        await self._slow_as_told("response_url")
        if self._faults:
            fault = self._take_fault("response_url")
            if fault is not None:
                return self._injected(fault, call)
        problems = block_problems(args.get("blocks"))
        if problems:
            call.error = "invalid_blocks"
            return _json({"ok": False, "error": "invalid_blocks", "errors": problems}, status=400)
        return _json({"ok": True})

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """The upload URL files.getUploadURLExternal hands out (Slack's files.slack.com step)."""
        upload = self._uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="unknown upload")
        upload["content"] = await request.read()
        return web.Response(text="OK - " + str(len(upload["content"])))

    def _files_get_upload_url(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        filename = self._require(args, "filename", "invalid_arguments")
        file_id = f"F{len(self._uploads) + 1:08d}"
        self._uploads[file_id] = {"id": file_id, "filename": filename, "length": int(args.get("length", 0)),
                                  "team_id": ws.team_id, "content": None}
        return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        shared = []
        for entry in files or []:
            upload = self._uploads.get(entry.get("id", ""))
            if upload is None or upload["content"] is None:
                raise _SlackError("file_not_found")
            record = {**upload, "title": entry.get("title", upload["filename"]),
                      "channel_id": args.get("channel_id"), "initial_comment": args.get("initial_comment")}
            self.shared_files.append(record)
            shared.append({"id": upload["id"], "title": record["title"], "name": upload["filename"]})
        return {"ok": True, "files": shared}

    # ------------------------------------------------------------------ helpers

    def _next_ts(self) -> str:
        """The posting time, one microsecond after the last ts when the clock has not moved on."""
        self._last_ts_us = n = max(int(self.message_clock() * 1_000_000), self._last_ts_us + 1)
        return f"{n // 1_000_000}.{n % 1_000_000:06d}"

    def _require_user(self, ws: _Workspace, user_id: str) -> dict[str, Any]:
        if user_id == ws.bot_user_id:
            return {"id": user_id, "team_id": ws.team_id, "name": "herald", "is_bot": True, "profile": {}}
        user = self._find_user(ws.team_id, user_id)
        if user is None:
            raise _SlackError("user_not_found")
        return user

    @staticmethod
    def _require(args: dict[str, Any], name: str, error: str | None = None) -> Any:
        value = args.get(name)
        if value is None or value == "":
            raise _SlackError(error or "invalid_arguments")
        return value

    # ------------------------------------------------------------------ methods

    def _auth_test(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{ws.team_id.lower()}.slack.com/",
            "team": f"Team {ws.team_id}",
            "user": "herald",
            "team_id": ws.team_id,
            "user_id": ws.bot_user_id,
            "bot_id": ws.bot_id,
            **({"enterprise_id": ws.enterprise_id, "is_enterprise_install": True} if ws.enterprise_id
               else {"is_enterprise_install": False}),
        }

    def _auth_teams_list(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        """Slack's auth.teams.list: "the workspaces your org-wide app has been approved for" (for an
        org token, the ones an Org Admin added it to; a workspace token's own workspace), `limit`
        1 to 1000 (default 100) and a cursor, `invalid_limit` / `invalid_cursor` otherwise."""
        teams = (sorted(self._org_teams.get(ws.enterprise_id, {}).items()) if ws.enterprise_id
                 else [(ws.team_id, f"Team {ws.team_id}")])
        try:
            limit = int(args.get("limit") or 100)
        except ValueError:
            raise _SlackError("invalid_limit") from None
        if not 1 <= limit <= 1000:
            raise _SlackError("invalid_limit")
        cursor = str(args.get("cursor") or "")
        if cursor and not (cursor.startswith("teams:") and cursor[6:].isdigit()):
            raise _SlackError("invalid_cursor")
        start = int(cursor[6:]) if cursor else 0
        page = teams[start:start + limit]
        more = start + limit < len(teams)
        return {"ok": True, "teams": [{"id": t, "name": name} for t, name in page],
                "response_metadata": {"next_cursor": f"teams:{start + limit}" if more else ""}}

    def _conversations_open(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if channel:
            return {"ok": True, "no_op": True, "already_open": True, "channel": {"id": channel}}
        users = self._require(args, "users", "users_list_not_supplied")
        if isinstance(users, (list, tuple)):
            ids = [str(u) for u in users]
        else:
            ids = [u.strip() for u in str(users).split(",") if u.strip()]
        if not ids:
            raise _SlackError("users_list_not_supplied")
        for uid in ids:
            self._require_user(ws, uid)
        if len(ids) == 1:
            channel_id = "D" + ids[0]
            extra: dict[str, Any] = {"is_im": True, "user": ids[0]}
        else:
            digest = hashlib.sha1(",".join(sorted(ids)).encode()).hexdigest()[:10].upper()
            channel_id = "G" + digest
            extra = {"is_mpim": True}
        already = channel_id in self._channels
        if not already:
            self._channels[channel_id] = _Channel()
        return {
            "ok": True,
            "no_op": already,
            "already_open": already,
            "channel": {"id": channel_id, **extra},
        }

    def _channel_for_post(self, ws: _Workspace, args: dict[str, Any]) -> tuple[str, _Channel]:
        """The channel a post goes to. A user id (``U...``/``W...``) means the bot's DM with that
        user, opened if need be: Slack's chat.postMessage reference ("provide the user's ID as the
        channel value and a direct message conversation will be opened if it isn't open already";
        the response names the DM's ``D...`` id). A user Slack does not know, or the bot itself,
        gives ``channel_not_found``, as when the app may not DM that user."""
        channel_id = str(args.get("channel") or "")
        if not channel_id:
            raise _SlackError("channel_not_found")
        if channel_id[0] in ("U", "W"):
            if channel_id == ws.bot_user_id or self._find_user(ws.team_id, channel_id) is None:
                raise _SlackError("channel_not_found")
            channel_id = self.dm_channel_id(channel_id)
        ch = self._channels.get(channel_id)
        if ch is None:
            ch = self._channels[channel_id] = _Channel()
        return channel_id, ch

    def _chat_post_message(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        channel_id, ch = self._channel_for_post(ws, args)
        text = args.get("text")
        blocks = args.get("blocks")
        attachments = args.get("attachments")
        if not text and not blocks and not attachments:
            raise _SlackError("no_text")
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": ws.bot_user_id,
            "bot_id": ws.bot_id,
            "team": ws.team_id,
            "text": as_slack_keeps(text or ""),
            "ts": ts,
        }
        if blocks is not None:
            message["blocks"] = blocks
        if attachments is not None:
            message["attachments"] = attachments
        metadata = args.get("metadata")
        if metadata is not None:
            message["metadata"] = metadata
        thread_ts = args.get("thread_ts")
        if thread_ts:
            parent = ch.by_ts.get(thread_ts)
            if parent is None:
                raise _SlackError("thread_not_found")
            message["thread_ts"] = thread_ts
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = parent.get("reply_count", 0) + 1
        ch.messages.append(message)
        ch.by_ts[ts] = message
        return {"ok": True, "channel": channel_id, "ts": ts, "message": message}

    def _chat_update(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = args.get("channel")
        ts = args.get("ts")
        ch = self._channels.get(channel_id) if channel_id else None
        message = ch.by_ts.get(ts) if (ch is not None and ts) else None
        if message is None:
            raise _SlackError("message_not_found")
        if "text" not in args and "blocks" not in args and "attachments" not in args:
            raise _SlackError("no_text")
        if "text" in args:
            message["text"] = as_slack_keeps(args["text"] or "")
        for name in ("blocks", "attachments", "metadata"):
            if name in args:
                if args[name] is None or args[name] == "":
                    message.pop(name, None)
                else:
                    message[name] = args[name]
        message["edited"] = {"user": ws.bot_user_id, "ts": self._next_ts()}
        return {"ok": True, "channel": channel_id, "ts": ts, "text": message["text"], "message": message}

    def _chat_post_ephemeral(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = args.get("channel")
        if not channel_id:
            raise _SlackError("channel_not_found")
        user = self._require(args, "user", "user_not_found")
        self._require_user(ws, user)
        if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
            raise _SlackError("no_text")
        ts = self._next_ts()
        message = {"type": "message", "user": user, "text": as_slack_keeps(args.get("text") or ""), "ts": ts}
        if args.get("blocks") is not None:
            message["blocks"] = args["blocks"]
        self._ephemeral.setdefault(channel_id, []).append(message)
        return {"ok": True, "message_ts": ts}

    @staticmethod
    def _shape(message: dict[str, Any], include_metadata: bool) -> dict[str, Any]:
        if include_metadata or "metadata" not in message:
            return message
        return {k: v for k, v in message.items() if k != "metadata"}

    def _paginate(
        self, ws: _Workspace, messages: list[dict[str, Any]], args: dict[str, Any]
    ) -> dict[str, Any]:
        """``messages`` are already in answer order; apply cursor/limit. A distributed
        non-Marketplace install gets pages of at most (and by default) 15 objects."""
        default, maximum = 100, 1000
        if ws.team_id in self._non_marketplace:
            default = maximum = self.limits.non_marketplace_page_size if self.limits else 15
        try:
            limit = int(args.get("limit") or default)
        except ValueError:
            raise _SlackError("invalid_limit") from None
        limit = max(1, min(limit, maximum))
        cursor = args.get("cursor") or ""
        start = 0
        if cursor:
            if not str(cursor).startswith("off:"):
                raise _SlackError("invalid_cursor")
            start = int(str(cursor)[4:])
        page = messages[start : start + limit]
        has_more = start + limit < len(messages)
        return {
            "page": page,
            "has_more": has_more,
            "response_metadata": {"next_cursor": f"off:{start + limit}" if has_more else ""},
        }

    def _conversations_history(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = self._require(args, "channel", "channel_not_found")
        ch = self._channels.get(channel_id)
        include_metadata = _truthy(args.get("include_all_metadata"))
        stored = ch.messages if ch is not None else []
        oldest, latest = args.get("oldest"), args.get("latest")
        inclusive = _truthy(args.get("inclusive"))
        lo = _ts_key(oldest) if oldest else None
        hi = _ts_key(latest) if latest else None
        selected = []
        for m in reversed(stored):
            if "thread_ts" in m and m["thread_ts"] != m["ts"]:
                continue  # thread replies are not in history
            if lo is not None or hi is not None:
                key = _ts_key(m["ts"])
                if lo is not None and (key < lo or (key == lo and not inclusive)):
                    continue
                if hi is not None and (key > hi or (key == hi and not inclusive)):
                    continue
            selected.append(m)
        paged = self._paginate(ws, selected, args)
        return {
            "ok": True,
            "messages": [self._shape(m, include_metadata) for m in paged["page"]],
            "has_more": paged["has_more"],
            "pin_count": 0,
            "response_metadata": paged["response_metadata"],
        }

    def _conversations_replies(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = self._require(args, "channel", "channel_not_found")
        ts = self._require(args, "ts", "thread_not_found")
        ch = self._channels.get(channel_id)
        if ch is None or ts not in ch.by_ts:
            raise _SlackError("thread_not_found")
        include_metadata = _truthy(args.get("include_all_metadata"))
        thread = [m for m in ch.messages if m["ts"] == ts or m.get("thread_ts") == ts]
        paged = self._paginate(ws, thread, args)
        return {
            "ok": True,
            "messages": [self._shape(m, include_metadata) for m in paged["page"]],
            "has_more": paged["has_more"],
            "response_metadata": paged["response_metadata"],
        }

    def _store_view(self, ws: _Workspace, view: Any, view_id: str | None = None, **extra: Any) -> dict[str, Any]:
        if not isinstance(view, dict) or view_problems(view):  # Block Kit's limits: tests/fakes/block_kit.py
            raise _SlackError("invalid_arguments")
        if view_id is None:
            self._view_counter += 1
            view_id = f"V{self._view_counter:08d}"
        stored = {
            **view,
            "id": view_id,
            "team_id": ws.team_id,
            "app_id": "AHERALD",
            "bot_id": ws.bot_id,
            "hash": f"{self._view_counter}.{view_id}",
            "state": {"values": {}},
            **extra,
        }
        self.views[view_id] = stored
        return stored

    def _views_open(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "trigger_id", "invalid_trigger_id")
        view = self._require(args, "view")
        return {"ok": True, "view": self._store_view(ws, view)}

    def _views_update(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        view = self._require(args, "view")
        view_id = args.get("view_id")
        if not view_id:
            external_id = args.get("external_id")
            if not external_id:
                raise _SlackError("invalid_arguments")
            view_id = next(
                (vid for vid, v in self.views.items() if v.get("external_id") == external_id), None
            )
        if view_id is None or view_id not in self.views:
            raise _SlackError("not_found")
        previous = self.views[view_id]
        if args.get("hash") and args["hash"] != previous.get("hash"):
            raise _SlackError("hash_conflict")
        extra = {k: previous[k] for k in ("user_id",) if k in previous}
        return {"ok": True, "view": self._store_view(ws, view, view_id, **extra)}

    def _views_publish(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        user_id = self._require(args, "user_id", "user_not_found")
        self._require_user(ws, user_id)
        view = self._require(args, "view")
        existing = next(
            (vid for vid, v in self.views.items() if v.get("type") == "home" and v.get("user_id") == user_id
             and v.get("team_id") == ws.team_id),
            None,
        )
        return {"ok": True, "view": self._store_view(ws, view, existing, user_id=user_id)}

    def _users_info(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        user_id = self._require(args, "user", "user_not_found")
        return {"ok": True, "user": self._require_user(ws, user_id)}

    def _users_lookup_by_email(self, ws: _Workspace, args: dict[str, Any]) -> dict[str, Any]:
        email = self._require(args, "email", "users_not_found")
        user_id = self._find_email(ws.team_id, str(email))
        user = self._find_user(ws.team_id, user_id) if user_id is not None else None
        if user is None:
            raise _SlackError("users_not_found")
        return {"ok": True, "user": user}

    # ------------------------------------------------------------------ OAuth v2 (oauth.v2.access)

    def add_oauth_app(self, client_id: str, client_secret: str) -> None:
        """Credentials oauth.v2.access accepts (HTTP Basic auth, or client_id/client_secret fields)."""
        self._oauth_apps = {**getattr(self, "_oauth_apps", {}), client_id: client_secret}

    def add_oauth_code(self, code: str, *, team_id: str, token: str, team_name: str = "",
                       bot_user_id: str = "UBOT", installer: str = "UINSTALLER",
                       scope: str = "commands,chat:write", redirect_uri: str | None = None,
                       enterprise_install: bool = False, rotation: bool = False,
                       expires_in: int = 43200, enterprise_id: str = "E0ORG", enterprise_name: str = "Org") -> None:
        """A code Slack would hand to the redirect URL after someone approved the install.

        Exchanging it (once) answers with `token` for `team_id`, which is registered as a
        workspace of this fake. `redirect_uri`, when given, must match the one sent. `rotation`:
        the app has token rotation on, so `token` (make it ``xoxe.xoxb-...``) expires `expires_in`
        seconds after the exchange (on `token_clock`) and comes with a refresh token.
        `enterprise_install`: an Org Admin installed the app across the Enterprise Grid org
        `enterprise_id` (`team_id` is not used): the answer has `"team": null`, the enterprise and
        `is_enterprise_install: true`, and the token is an org token (`add_org`)."""
        if enterprise_install:
            self.add_org(enterprise_id, token, bot_user_id=bot_user_id, scopes=tuple(scope.split(",")))
        else:
            self.add_workspace(team_id, token, bot_user_id=bot_user_id, scopes=tuple(scope.split(",")))
        codes = getattr(self, "_oauth_codes", {})
        codes[code] = {"team_id": team_id, "token": token, "team_name": team_name or f"Team {team_id}",
                       "bot_user_id": bot_user_id, "installer": installer, "scope": scope,
                       "redirect_uri": redirect_uri, "enterprise_install": enterprise_install, "used": False,
                       "rotation": rotation, "expires_in": expires_in, "enterprise_id": enterprise_id,
                       "enterprise_name": enterprise_name}
        self._oauth_codes = codes

    async def _handle_oauth_v2_access(self, request: web.Request) -> web.Response:
        method = "oauth.v2.access"
        try:
            args = await self._read_args(request)
        except ValueError:
            args = {}
        client_id, client_secret = args.pop("client_id", None), args.pop("client_secret", None)
        auth = request.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            import base64

            try:
                client_id, _, client_secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeError):
                client_id = client_secret = None
        call = Call(method, None, {**args, "client_id": client_id})
        self._record(call)
        await self._slow_as_told(method)
        if self._faults:
            fault = self._take_fault(method)
            if fault is not None:
                return self._injected(fault, call)
        apps: dict[str, str] = getattr(self, "_oauth_apps", {})
        codes: dict[str, dict[str, Any]] = getattr(self, "_oauth_codes", {})
        grant = codes.get(str(args.get("code") or ""))
        if not client_id or client_id not in apps:
            call.error = "invalid_client_id"
        elif client_secret != apps[client_id]:
            call.error = "bad_client_secret"
        elif args.get("grant_type") == "refresh_token":
            return self._refresh(str(args.get("refresh_token") or ""), call)
        elif grant is None or grant["used"]:
            call.error = "invalid_code"
        elif grant["redirect_uri"] is not None and args.get("redirect_uri") != grant["redirect_uri"]:
            call.error = "bad_redirect_uri"
        if call.error is not None:
            return _json({"ok": False, "error": call.error})
        grant["used"] = True
        ws = next(w for w in self._workspaces.values() if w.token == grant["token"])
        team = None if grant["enterprise_install"] else {"id": grant["team_id"], "name": grant["team_name"]}
        answer = {
            "ok": True, "access_token": grant["token"], "token_type": "bot", "scope": grant["scope"],
            "bot_user_id": ws.bot_user_id, "app_id": "AHERALD", "team": team,
            "enterprise": ({"id": grant["enterprise_id"], "name": grant["enterprise_name"]}
                           if grant["enterprise_install"] else None),
            "authed_user": {"id": grant["installer"]}, "is_enterprise_install": grant["enterprise_install"],
        }
        if grant["rotation"]:
            answer.update(self._rotating_pair(ws, grant))
        return _json(answer)

    def _rotating_pair(self, ws: _Workspace, grant: dict[str, Any]) -> dict[str, Any]:
        """Make `ws`'s token expire and issue the refresh token that renews it."""
        ws.expires_at = self.token_clock() + grant["expires_in"]
        refresh = "xoxe-1-" + hashlib.sha256(f"{ws.token}:{time.monotonic_ns()}".encode()).hexdigest()[:40]
        self._refresh_tokens[refresh] = {**grant, "bot_user_id": ws.bot_user_id, "scopes": ws.scopes}
        return {"refresh_token": refresh, "expires_in": grant["expires_in"]}

    def _refresh(self, refresh_token: str, call: Call) -> web.Response:
        """oauth.v2.access with grant_type=refresh_token: a new expiring token and a new refresh
        token; the one used is revoked (Slack's token rotation)."""
        grant = self._refresh_tokens.pop(refresh_token, None)
        if grant is None:
            call.error = "invalid_refresh_token"
            return _json({"ok": False, "error": call.error})
        self.refreshes += 1
        token = "xoxe.xoxb-1-" + hashlib.sha256(f"{refresh_token}:{self.refreshes}".encode()).hexdigest()[:40]
        org = grant.get("enterprise_install", False)
        if org:
            self.add_org(grant["enterprise_id"], token, bot_user_id=grant["bot_user_id"], scopes=grant["scopes"])
        else:
            self.add_workspace(grant["team_id"], token, bot_user_id=grant["bot_user_id"], scopes=grant["scopes"])
        ws = self._workspaces[token]
        return _json({"ok": True, "access_token": token, "token_type": "bot", "scope": ",".join(ws.scopes),
                      "bot_user_id": ws.bot_user_id, "app_id": "AHERALD",
                      "team": None if org else {"id": grant["team_id"], "name": grant["team_name"]},
                      "enterprise": {"id": grant["enterprise_id"], "name": grant["enterprise_name"]} if org else None,
                      "is_enterprise_install": org, **self._rotating_pair(ws, grant)})


if __name__ == "__main__":  # python -m tests.fakes.slack_api --help
    import sys

    from tests.fakes.cli import main

    sys.exit(main("slack"))
