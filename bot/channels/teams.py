"""Outbound Teams: open 1:1 conversations, post notice cards, update them in place, over the
Bot Connector REST API (`{serviceUrl}/v3/conversations/...`).

Why a small client of our own rather than the Agents SDK: the adapter's proactive paths
(`continue_conversation`, `create_conversation`) ask MSAL for a token even in anonymous mode, and
its `ConnectorClient` is bound to one service URL *and one bearer token* for its life (it writes
`Authorization` into the session's default headers), so it would need a client per region per
token lifetime; its failures arrive as a bare `ClientResponseError` (for `create_conversation`
without the connector's error code) after being logged at ERROR level, while we need the code and
`Retry-After` to classify them as `SlackChannel` does. Four REST calls with aiohttp are simpler.

Auth: with a `token_provider` (e.g. `MsalTokenProvider` for an app id + password) every call
carries `Authorization: Bearer <token>`; without one (local/anonymous mode, the fake connector)
no `Authorization` header is sent at all.

SSRF: `serviceUrl` arrives in inbound activities and is stored per member. With
`allowed_service_hosts` set, Herald only calls https URLs whose host is one of those domains
(or below one), never follows redirects, and so never hands its token to anyone else. Pass
`DEFAULT_ALLOWED_SERVICE_HOSTS` in production.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from bot.channels.teams_cards import direct_message_activity, notice_activity
from bot.core.directory.app_installs import BLOCKED, NOT_INSTALLED, REMOVED, REMOVED_OR_BLOCKED
from bot.core.directory.workspaces import TEAMS_BLOCKED, removed_reason
from bot.core.notices.views import NoticeView
from bot.core.ports import (
    CredentialsRefused,
    DirectMessage,
    MessageRef,
    Outcome,
    RateLimited,
    Recipient,
    UpdateRefused,
)
from storage.models import Platform, PlatformAccount

log = logging.getLogger(__name__)

TokenProvider = Callable[[], Awaitable[str | None]]
ServiceUrlLookup = Callable[[str], Awaitable[str | None]]

# The hosts Teams and the Bot Framework use for serviceUrl (public cloud, GCC High/DoD). Not the
# whole of trafficmanager.net: any Azure customer can name a profile <anything>.trafficmanager.net.
DEFAULT_ALLOWED_SERVICE_HOSTS = ("botframework.com", "smba.trafficmanager.net", "teams.microsoft.com",
                                 "teams.microsoft.us", "botframework.azure.us")
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
# Azure Government (GCC High, DoD): Microsoft's GovernmentConstants (Bot Framework SDKs), a bot →
# channel token is asked of login.microsoftonline.us for ToChannelFromBotOAuthScope, by default
# in DefaultChannelAuthTenant. Public cloud: the scope above, tenant botframework.com.
GOV_AUTHORITY_HOST = "login.microsoftonline.us"
GOV_BOT_FRAMEWORK_SCOPE = "https://api.botframework.us/.default"
DEFAULT_CHANNEL_AUTH_TENANT = "botframework.com"
GOV_DEFAULT_CHANNEL_AUTH_TENANT = "MicrosoftServices.onmicrosoft.us"
NO_CONVERSATION = "no Teams conversation yet: the member must install Herald in Teams or message it once"
# 403s for one member (Microsoft's table of the Bot Connector's status codes, and what the connector
# answers in practice): creating the 1:1 conversation with someone who does not have the app
# installed is refused with BotNotInConversationRoster (MicrosoftDocs/msteams-docs#11125); the same
# code on an existing conversation means the app was uninstalled since; ConversationBlockedByUser
# means they blocked it. Any other 403 for a member may be either.
# The reasons are the core's (bot.core.directory.app_installs: an install puts these copies back).
TOO_LARGE = "the message is too large for Teams"  # 413 MessageSizeTooBig
# Microsoft's table of the Bot Connector's status codes: retried 412, 429, 502, 503 and 504; not
# retried 500 ServiceError ("Retry request: No"); an update refused with these is refused for good.
_RETRYABLE = {412, 429, 502, 503, 504}
_UPDATE_REFUSED = {400, 403, 404, 413}
_MEMO_SIZE = 50_000


class TeamsError(Exception):
    """Base of the errors this module raises (update() lets them reach the engine)."""


class TeamsAuthError(TeamsError):
    """No bearer token could be obtained for the Bot Connector."""


class TeamsCredentialsRefused(TeamsAuthError, CredentialsRefused):
    """Herald's own credentials were refused: by Entra ID (a wrong or expired client secret, an
    unknown app or tenant) or by the Bot Connector (401 with a fresh token). Every conversation
    is refused alike until an operator fixes them, so the engine pauses Teams (see
    `Outcome.credentials_refused`) instead of failing the copies."""


# Entra ID's OAuth errors that are passing trouble at Entra, not a verdict on Herald's credentials
# (RFC 6749 5.2 and Entra's error reference); MSAL's own "no answer" too. Any other error it
# answers (invalid_client: AADSTS7000215 wrong secret, AADSTS7000222 expired secret;
# unauthorized_client: AADSTS700016 unknown app; invalid_request: AADSTS90002 unknown tenant ...)
# refuses them.
_TRANSIENT_TOKEN_ERRORS = {"temporarily_unavailable", "server_error", "no_answer"}


class UntrustedServiceUrl(TeamsError):
    """A serviceUrl outside the allow-list (or not https)."""


class TeamsApiError(TeamsError):
    """The Bot Connector answered with an error status."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"Bot Connector HTTP {status} {code}: {message}".strip())
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class TeamsRateLimited(TeamsApiError, RateLimited):
    """HTTP 429 from the Bot Connector on an update: a TeamsApiError that the delivery engine
    also recognises as the tenant's rate limit (bot.core.ports.RateLimited)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        TeamsApiError.__init__(self, status, code, message, retry_after)
        self.args = (f"Bot Connector HTTP {status} {code}: {message}".strip(),)  # RateLimited's init ran via super()


# ---- tokens -------------------------------------------------------------------------------

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"


def is_government_authority(authority_host: str) -> bool:
    """Whether HERALD_TEAMS_AUTHORITY_URL is Azure Government's Entra ID (login.microsoftonline.us)."""
    return (urlsplit(authority_host).hostname or "").lower() == GOV_AUTHORITY_HOST


class MsalTokenProvider:
    """App-only tokens for the Bot Connector from Entra ID (client credentials), cached until
    shortly before they expire. MSAL is synchronous, so it runs in a worker thread.

    `tenant_id` is the bot's home tenant for a single-tenant app registration; without it the
    multi-tenant authority `botframework.com` is used (`MicrosoftServices.onmicrosoft.us` in Azure
    Government, whose authority also asks for the US Government connector's scope).
    """

    def __init__(self, app_id: str, password: str, tenant_id: str | None = None, *,
                 authority_host: str = DEFAULT_AUTHORITY_HOST, refresh_margin: float = 300.0) -> None:
        self.app_id = app_id
        self._password = password
        government = is_government_authority(authority_host)
        default_tenant = GOV_DEFAULT_CHANNEL_AUTH_TENANT if government else DEFAULT_CHANNEL_AUTH_TENANT
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id or default_tenant}"
        self.scope = GOV_BOT_FRAMEWORK_SCOPE if government else BOT_FRAMEWORK_SCOPE
        self.refresh_margin = refresh_margin
        self._app: Any = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._answers = 0  # token requests to Entra ID that have ended (answered or failed)
        self._refusal: TeamsAuthError | None = None  # the last request's failure, if it failed

    def __repr__(self) -> str:
        return f"MsalTokenProvider(app_id={self.app_id!r}, authority={self.authority!r})"

    async def __call__(self) -> str:
        """The cached token, else a new one. Callers that waited while a request failed get its
        failure without asking Entra again: a broadcast's sends in flight make one request, not
        one each."""
        if self._token and time.monotonic() < self._expires_at:
            return self._token
        answers_seen = self._answers
        async with self._lock:
            if self._token and time.monotonic() < self._expires_at:
                return self._token
            if self._refusal is not None and self._answers != answers_seen:  # failed while this waited
                raise type(self._refusal)(str(self._refusal))
            try:
                result = await asyncio.to_thread(self._acquire)
            except Exception as exc:  # noqa: BLE001 - MSAL network/config failures: passing
                self._refusal = TeamsAuthError(f"{type(exc).__name__}: {str(exc)[:200]}")
                raise self._refusal from exc
            finally:
                self._answers += 1
            self._refusal = _token_error(result)
            if self._refusal is not None:
                raise self._refusal
            lifetime = float(result.get("expires_in") or 3600)
            self._token = result["access_token"]
            self._expires_at = time.monotonic() + max(lifetime - self.refresh_margin, 60.0)
            return self._token

    def _acquire(self) -> dict[str, Any]:
        import msal  # ships with microsoft-agents-authentication-msal; only needed with credentials

        if self._app is None:
            # Instance discovery asks login.microsoftonline.com whether the authority is a Microsoft
            # one; an authority configured on purpose (a sovereign cloud) is trusted as it is.
            discovery = None if self.authority.startswith(DEFAULT_AUTHORITY_HOST + "/") else False
            self._app = msal.ConfidentialClientApplication(
                self.app_id, client_credential=self._password, authority=self.authority,
                instance_discovery=discovery)
        return self._app.acquire_token_for_client(scopes=[self.scope])

    def invalidate(self) -> None:
        """Forget the cached token (after a 401); a new MSAL app also drops MSAL's own cache."""
        self._token, self._expires_at, self._app = None, 0.0, None


def _token_error(result: Any) -> TeamsAuthError | None:
    """The error of MSAL's answer without a token: a refusal of Herald's credentials, or passing."""
    if not isinstance(result, dict):
        result = {"error": "no_answer"}
    if result.get("access_token"):
        return None
    error = str(result.get("error") or "unknown_error")
    # the first line of MSAL's description ("AADSTS7000215: Invalid client secret ...")
    detail = (str(result.get("error_description") or "").splitlines() or [""])[0][:200]
    if error in _TRANSIENT_TOKEN_ERRORS:
        return TeamsAuthError(f"Entra ID could not issue a token ({error}) {detail}".strip())
    return TeamsCredentialsRefused(f"Entra ID refused Herald's Teams credentials ({error}) {detail}".strip())


# ---- the channel --------------------------------------------------------------------------

@dataclass(frozen=True)
class RosterEntry:
    """A conversation member's addresses as the Bot Connector's roster gives them."""

    email: str = ""  # the user's mail attribute, set by their tenant's admin
    upn: str = ""  # userPrincipalName: its domain is one the user's tenant has verified


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any
    retry_after: float | None


class TeamsChannel:
    """The Channel protocol over the Bot Connector.

    Duplicate sends: the connector cannot list a conversation's messages, so after a crash
    (`maybe_sent`) there is no way to ask Teams whether the earlier attempt landed. The channel
    remembers, in memory, the message of every delivery it sent successfully and answers a
    `maybe_sent` retry from that memory, which covers a failed database write after a send in
    the same process; a send interrupted by a process crash, or a request that timed out after
    the connector had accepted it, can still show up twice in Teams. Each activity carries its
    `delivery_id` in `channelData.herald` so such duplicates can be traced.
    """

    platform = Platform.TEAMS.value

    def __init__(self, app_id: str | None = None, token_provider: TokenProvider | None = None, *,
                 allowed_service_hosts: list[str] | tuple[str, ...] | None = None, bot_id: str | None = None,
                 service_url_for: ServiceUrlLookup | None = None, default_service_url: str | None = None,
                 timeout: float = 20.0, max_connections: int = 256) -> None:
        self.app_id = app_id
        self.token_provider = token_provider
        self.allowed_service_hosts = (
            tuple(h.strip().lower().lstrip("*.").rstrip(".") for h in allowed_service_hosts if h.strip())
            if allowed_service_hosts is not None else None)
        self.bot_id = bot_id or (f"28:{app_id}" if app_id else "herald-bot")
        self.service_url_for = service_url_for or service_url_from_storage
        self.default_service_url = default_service_url
        self.timeout = timeout
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._service_urls: OrderedDict[str, str] = OrderedDict()  # conversation id -> serviceUrl
        self._sent: OrderedDict[int, MessageRef] = OrderedDict()  # delivery id -> message
        if token_provider is not None and self.allowed_service_hosts is None:
            log.warning("Teams credentials are configured without allowed_service_hosts: Herald will send "
                        "its Bot Connector token to any serviceUrl it is given")

    # ---- Channel protocol -------------------------------------------------------------

    async def deliver(self, recipient: Recipient, view: NoticeView, *, delivery_id: int,
                      maybe_sent: bool, wanted: bool = True, since: datetime | None = None,
                      read_to: str = "") -> Outcome:
        # `wanted=False` is not honoured beyond this process's memory: Teams cannot be asked whether
        # an earlier attempt landed, and a member who may hold the live original is better sent
        # the retracted copy than left with it.
        if maybe_sent and delivery_id in self._sent:
            ref = self._sent[delivery_id]
            if recipient.dm_channel:
                return Outcome.delivered(ref)
            return _opened_on(Outcome.delivered(ref, dm_channel=ref.channel_id),
                              self._service_urls.get(ref.channel_id, ""))
        reply_to = None
        if view.original_ref and view.original_ref[0] == recipient.dm_channel and view.original_ref[1]:
            reply_to = view.original_ref[1]  # a reminder answers the original message
        return await self._send(recipient, notice_activity(view, delivery_id=delivery_id),
                                delivery_id=delivery_id, reply_to=reply_to)

    async def send_message(self, recipient: Recipient, message: DirectMessage) -> Outcome:
        return await self._send(recipient, direct_message_activity(message))

    async def update(self, workspace_id: str, ref: MessageRef, view: NoticeView) -> None:
        """PUT the re-rendered card over the delivered one. Raises UpdateRefused when Teams will
        never take it (or Herald may not call the conversation's service URL), TeamsCredentialsRefused
        when Herald's credentials are (the engine pauses Teams), else any other failure, so the
        engine keeps the update pending."""
        service_url = await self._service_url_of(ref.channel_id)
        if not service_url:
            raise UpdateRefused(f"no Teams service URL is known for conversation {ref.channel_id}")
        try:
            self._check_service_url(service_url)
        except UntrustedServiceUrl as exc:
            raise UpdateRefused(str(exc)) from exc
        activity = notice_activity(view)
        activity.get("channelData", {}).pop("notification", None)  # an edit must not alert again
        activity["id"] = ref.message_id
        answer = await self._call("PUT", _activity_url(service_url, ref.channel_id, ref.message_id), activity)
        if not 200 <= answer.status < 300:
            error = _api_error(answer)
            if error.status == 429:  # the engine pauses the tenant's lane
                raise TeamsRateLimited(error.status, error.code, error.message, error.retry_after)
            if error.status in _UPDATE_REFUSED and error.code != "InvalidBotApiHost":
                # "Retry request: No" in Microsoft's table of the Bot Connector's status codes
                # (build-conversational-capability#status-codes-from-bot-conversational-apis)
                refused = _classify(error, Recipient(workspace_id, ""), "")
                reason = ("the message or its conversation no longer exists in Teams" if error.status == 404
                          else refused.reason)
                raise UpdateRefused(reason, removed_cause=refused.removed_cause) from error
            raise error
        self._remember_url(ref.channel_id, service_url)

    async def send_activity(self, recipient: Recipient, activity: dict[str, Any]) -> Outcome:
        """Send any activity (a command's reply, a preview card) to the recipient's conversation."""
        return await self._send(recipient, activity)

    async def roster_entry(self, service_url: str, conversation_id: str, user_id: str) -> RosterEntry:
        """The member's addresses from the conversation roster (empty when the connector will not say)."""
        try:
            self._check_service_url(service_url)
            headers = {}
            token = await self._token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            url = f"{_base(service_url)}v3/conversations/{quote(conversation_id, safe='')}/members/{quote(user_id, safe='')}"
            async with self._http().get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    return RosterEntry()
                body = await resp.json(content_type=None)
        except (UntrustedServiceUrl, TeamsAuthError, aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            log.warning("could not read the Teams roster entry of %s", user_id)
            return RosterEntry()
        if not isinstance(body, dict):
            return RosterEntry()
        return RosterEntry(email=str(body.get("email") or ""), upn=str(body.get("userPrincipalName") or ""))

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # ---- sending ----------------------------------------------------------------------

    async def _send(self, recipient: Recipient, activity: dict[str, Any], *, delivery_id: int | None = None,
                    reply_to: str | None = None) -> Outcome:
        service_url = recipient.service_url or self.default_service_url
        if not service_url:
            return Outcome.failed(NO_CONVERSATION)
        try:
            self._check_service_url(service_url)
        except UntrustedServiceUrl as exc:
            return Outcome.failed(str(exc))
        outcome = await self._send_to(service_url, recipient, activity, delivery_id=delivery_id, reply_to=reply_to)
        return _opened_on(outcome, service_url)

    async def _send_to(self, service_url: str, recipient: Recipient, activity: dict[str, Any], *,
                       delivery_id: int | None, reply_to: str | None) -> Outcome:
        opened = ""
        try:
            conversation = recipient.dm_channel
            if not conversation:
                if not (recipient.user_id and recipient.workspace_id):
                    return Outcome.failed(NO_CONVERSATION)
                try:
                    conversation = opened = await self._create_conversation(service_url, recipient)
                except TeamsApiError as exc:
                    return _classify(exc, recipient, "", creating=True)
            self._remember_url(conversation, service_url)
            activity_id = await self._post(service_url, conversation, activity, reply_to)
            ref = MessageRef(conversation, activity_id)
            if delivery_id is not None:
                _remember(self._sent, delivery_id, ref)
            return Outcome.delivered(ref, dm_channel=opened)
        except TeamsApiError as exc:
            return _classify(exc, recipient, opened)
        except TeamsCredentialsRefused as exc:  # Herald's, not the copy's: the engine pauses Teams
            return Outcome.refused_credentials(str(exc), dm_channel=opened)
        except TeamsAuthError as exc:
            return Outcome.retry(f"could not get a Bot Connector token: {exc}", dm_channel=opened)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return Outcome.retry(f"network error talking to Teams ({type(exc).__name__})", dm_channel=opened)

    async def _create_conversation(self, service_url: str, recipient: Recipient) -> str:
        body = {
            "bot": {"id": self.bot_id},
            "members": [{"id": recipient.user_id}],
            "isGroup": False,
            "tenantId": recipient.workspace_id,
            "channelData": {"tenant": {"id": recipient.workspace_id}},
        }
        answer = await self._call("POST", _base(service_url) + "v3/conversations", body)
        if not 200 <= answer.status < 300:
            raise _api_error(answer)
        conversation = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not conversation:
            raise TeamsApiError(502, "BadResponse", "the connector created a conversation but sent no id")
        return str(conversation)

    async def _post(self, service_url: str, conversation: str, activity: dict[str, Any], reply_to: str | None) -> str:
        if reply_to:
            answer = await self._call("POST", _activity_url(service_url, conversation, reply_to), activity)
            error = _api_error(answer) if not 200 <= answer.status < 300 else None
            if error is not None and not (error.status == 404 and error.code != "ConversationNotFound"):
                raise error
            if error is None:
                return _activity_id(answer)
            # the original message is gone: send the reminder as a new message instead
        answer = await self._call("POST", _activity_url(service_url, conversation), activity)
        if not 200 <= answer.status < 300:
            raise _api_error(answer)
        return _activity_id(answer)

    # ---- HTTP -------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                headers={"Accept": "application/json"},
            )
        return self._session

    async def _token(self) -> str | None:
        if self.token_provider is None:
            return None
        try:
            return await self.token_provider()
        except (TeamsAuthError, CredentialsRefused):
            raise
        except Exception as exc:  # noqa: BLE001 - MSAL network/config failures: retry later
            raise TeamsAuthError(f"{type(exc).__name__}: {str(exc)[:200]}") from exc

    async def _call(self, method: str, url: str, body: dict[str, Any]) -> _Answer:
        """One call; a 401 is tried once more with a fresh token (one revoked or rotated early),
        and a second 401 raises TeamsCredentialsRefused: the connector refuses Herald's token
        itself (an Azure Bot bound to another app registration, deleted, another cloud), which no
        conversation would take either."""
        answer = await self._call_once(method, url, body)
        invalidate = getattr(self.token_provider, "invalidate", None)
        if answer.status == 401 and callable(invalidate):
            invalidate()
            answer = await self._call_once(method, url, body)
        if answer.status == 401:
            error = _api_error(answer)
            said = ": ".join(part for part in (error.code, error.message) if part)
            raise TeamsCredentialsRefused(
                f"the Bot Connector refused Herald's token (HTTP 401 {said}); check that the Azure Bot's "
                "app registration is HERALD_TEAMS_APP_ID's")
        return answer

    async def _call_once(self, method: str, url: str, body: dict[str, Any]) -> _Answer:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        token = await self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        async with self._http().request(method, url, data=data, headers=headers, allow_redirects=False) as resp:
            raw = await resp.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw[:300].decode("utf-8", "replace")
            return _Answer(resp.status, parsed, _retry_after(resp.headers.get("Retry-After")))

    # ---- guards and memory -------------------------------------------------------------

    def _check_service_url(self, service_url: str) -> None:
        if self.allowed_service_hosts is None:
            return
        reason = _untrusted(service_url, self.allowed_service_hosts)
        if reason:
            raise UntrustedServiceUrl(f"refusing to send to untrusted service URL {service_url[:200]!r}: {reason}")

    async def _service_url_of(self, conversation: str) -> str | None:
        """Where to reach a conversation: the URL it was last used on in this process, else the one
        stored with it, else the default one a conversation is opened on (Microsoft's global
        service URL also reaches conversations opened elsewhere)."""
        return (self._service_urls.get(conversation) or await self.service_url_for(conversation)
                or self.default_service_url)

    def _remember_url(self, conversation: str, service_url: str) -> None:
        _remember(self._service_urls, conversation, service_url)


async def service_url_from_storage(conversation_id: str) -> str | None:
    """The serviceUrl stored with the member whose 1:1 conversation this is."""
    account = await PlatformAccount.filter(platform=Platform.TEAMS.value, dm_channel=conversation_id) \
        .exclude(service_url="").first()
    return account.service_url if account is not None else None


# ---- helpers ------------------------------------------------------------------------------

def _untrusted(service_url: str, allowed: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(service_url)
        host = (parts.hostname or "").rstrip(".").lower()
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() != "https":
        return "not https"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL"
    if not host:
        return "no host"
    try:
        ipaddress.ip_address(host.strip("[]"))
        return "an IP address, not a Microsoft host"
    except ValueError:
        pass
    if any(host == domain or host.endswith("." + domain) for domain in allowed):
        return ""
    return "host not in the allowed list"


def _base(service_url: str) -> str:
    return service_url if service_url.endswith("/") else service_url + "/"


def _activity_url(service_url: str, conversation: str, activity_id: str | None = None) -> str:
    url = f"{_base(service_url)}v3/conversations/{quote(conversation, safe=':@;=')}/activities"
    return f"{url}/{quote(activity_id, safe=':@;=')}" if activity_id else url


def _activity_id(answer: _Answer) -> str:
    activity_id = answer.body.get("id") if isinstance(answer.body, dict) else None
    if not activity_id:
        # delivered, but Teams gave no id to update it by later
        log.warning("Bot Connector accepted an activity without returning its id")
    return str(activity_id or "")


def _api_error(answer: _Answer) -> TeamsApiError:
    code, message = "", ""
    if isinstance(answer.body, dict):
        error = answer.body.get("error")
        if isinstance(error, dict):
            code, message = str(error.get("code") or ""), str(error.get("message") or "")
        elif answer.body.get("message"):
            message = str(answer.body["message"])
    elif isinstance(answer.body, str):
        message = answer.body
    if 300 <= answer.status < 400:
        code = code or "Redirect"
        message = "the connector answered with a redirect, which Herald does not follow"
    return TeamsApiError(answer.status, code, message[:200], answer.retry_after)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max((moment - datetime.now(timezone.utc)).total_seconds(), 0.0)


def _remember(memo: OrderedDict, key: Any, value: Any) -> None:
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > _MEMO_SIZE:
        memo.popitem(last=False)


def _opened_on(outcome: Outcome, service_url: str) -> Outcome:
    """The outcome with the service URL a conversation it opened was opened on, for the engine to
    store with the conversation: its later updates need it, after a restart or on another replica."""
    if not outcome.dm_channel or not service_url:
        return outcome
    return replace(outcome, service_url=service_url)


def _classify(exc: TeamsApiError, recipient: Recipient, opened: str, *, creating: bool = False) -> Outcome:
    """The outcome of a refused call. `creating`: the refusal was of creating the 1:1 conversation."""
    status, code = exc.status, exc.code
    if status in _RETRYABLE:
        label = "Teams rate limit" if status == 429 else f"Teams answered HTTP {status} {code}".strip()
        return Outcome.retry(label, retry_after=exc.retry_after, throttled=status == 429, dm_channel=opened)
    if status == 403:
        if code == TEAMS_BLOCKED and recipient.workspace_id:
            # the whole tenant refuses Herald: the engine marks it unreachable (workspaces.workspace_refused)
            return Outcome.removed(code, removed_reason(Platform.TEAMS.value, recipient.workspace_id, code),
                                   token_fingerprint="", dm_channel=opened)
        if code == TEAMS_BLOCKED:
            reason = "a Teams admin blocked Herald in the member's tenant"
        elif code == "InvalidBotApiHost":  # Microsoft: the tenant is in a government cloud (GCC)
            reason = (f"tenant {recipient.workspace_id} is reached through another Teams host (a government "
                      "cloud): set HERALD_TEAMS_SERVICE_URL to its service URL")
        else:
            reason = _member_refusal(code, creating=creating)
            if reason == REMOVED and recipient.workspace_id and recipient.user_id:
                # Herald was in this chat and is no longer: the member removed it, as an
                # installationUpdate "remove" would have said (the engine records it)
                return replace(Outcome.failed(reason, dm_channel=opened),
                               app_removed_by=(recipient.workspace_id, recipient.user_id))
        return Outcome.failed(reason, dm_channel=opened)
    if status == 404:
        return Outcome.failed("the Teams conversation no longer exists", dm_channel=opened)
    if status == 413:
        return Outcome.failed(TOO_LARGE, dm_channel=opened)
    detail = f"{code}: {exc.message}" if code and exc.message else (code or exc.message or f"HTTP {status}")
    return Outcome.failed(f"Teams refused the message ({detail})", dm_channel=opened)


def _member_refusal(code: str, *, creating: bool) -> str:
    """Why a 403 for one member: never installed, removed, or blocked (see NOT_INSTALLED)."""
    if code == "BotNotInConversationRoster":
        return NOT_INSTALLED if creating else REMOVED
    if code == "ConversationBlockedByUser":
        return BLOCKED
    return REMOVED_OR_BLOCKED
