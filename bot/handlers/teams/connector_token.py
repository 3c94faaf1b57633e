"""Microsoft's checks of an inbound Bot Connector token that the Agents SDK leaves out.

Microsoft, "Authentication with the Bot Connector API", connector → bot
(https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-authentication):

* step 3: each key of the Bot Framework's key set carries `endorsements`, the channel ids it may
  sign for; an activity whose `channelId` is not among the signing key's endorsements is refused
  with HTTP 403;
* step 4: the token "contains a serviceUrl claim with value that matches the serviceUrl property at
  the root of the activity"; a token that does not meet every requirement is refused (403).

The SDK's `JwtTokenValidator` checks the signature, the audience and (opted in) the issuer only.
Without step 4, a token the connector issued for one service URL could carry an activity naming
another, which Herald stores as where that person's notices go; without step 3, a key endorsed
for another channel (Web Chat, Direct Line) could sign a Teams activity.

Both rules are the Bot Framework issuer's (`api.botframework.com`, `.us` in Azure Government):
its tokens must carry a matching `serviceurl` and come from a key endorsed for the channel. An
Entra-issued token (Microsoft's first-party tenants, HERALD_TEAMS_TENANT_ID's tenant) is signed
with an Entra key, which carries no endorsements, and may carry no `serviceurl`; when it has one,
it must match all the same.

An Entra-issued token must also name Herald itself as the app that asked for it (`appid`, `azp`
in a v2 token). Entra issues a token for Herald's app id to any app registration in a tenant where
Herald has a service principal, so the issuer and audience alone admit every app there; Microsoft,
"Secure applications and APIs by validating claims": the actor, the client app, must be checked
(https://learn.microsoft.com/entra/identity-platform/claims-validation). The Bot Framework SDKs
take such a token only from the bot's own credentials (EmulatorValidation: the app id must be the
bot's), and the Agents SDK calls one from another app an agent-to-agent call
(`ClaimsIdentity.is_agent_claim`), which Herald does not take: it is no Teams activity.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from microsoft_agents.hosting.core.authorization import AuthenticationConstants

# the Bot Connector's token issuers and the key sets (the SDK downloads the same) they sign with
BOT_FRAMEWORK_KEY_SETS = {
    AuthenticationConstants.AGENTS_SDK_TOKEN_ISSUER: AuthenticationConstants.PUBLIC_ABS_JWKS_URL,
    AuthenticationConstants.GOV_AGENTS_SDK_TOKEN_ISSUER: AuthenticationConstants.GOV_ABS_JWKS_URL,
}
# Microsoft: the key list "is relatively stable and may be cached for long periods"; a key id
# not in the cached set makes the client download it again at once (PyJWKClient.get_signing_key)
KEY_SET_LIFESPAN = 3600.0


class TokenRefused(Exception):
    """The token is valid, but not for this activity; the message says why (never the token)."""


class _EndorsedKeySet(jwt.PyJWKClient):
    """One Bot Framework key set, cached, with each key's `endorsements` (a PyJWK keeps only the
    key material, so they are read from the document as it is downloaded)."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri, lifespan=KEY_SET_LIFESPAN)
        self._endorsements: dict[str, frozenset[str]] = {}

    def fetch_data(self) -> Any:
        document = super().fetch_data()
        keys = document.get("keys") if isinstance(document, dict) else None
        self._endorsements = {
            key["kid"]: frozenset(e for e in key.get("endorsements") or () if isinstance(e, str))
            for key in keys or () if isinstance(key, dict) and isinstance(key.get("kid"), str)}
        return document

    def endorsements(self, kid: str) -> frozenset[str]:
        """Blocking (a download when the set is stale or lacks `kid`): run it in a thread."""
        self.get_signing_key(kid)  # raises PyJWKClientError for a key id the set does not have
        return self._endorsements.get(kid, frozenset())


class BotFrameworkKeys:
    """The Bot Framework's key sets (public cloud, Azure Government), one cached client each, so
    a request costs no download unless the set is stale or the key is new."""

    def __init__(self) -> None:
        self._sets: dict[str, _EndorsedKeySet] = {}

    async def endorsements(self, issuer: str, kid: str) -> frozenset[str]:
        uri = BOT_FRAMEWORK_KEY_SETS[issuer]
        key_set = self._sets.get(uri) or self._sets.setdefault(uri, _EndorsedKeySet(uri))
        return await asyncio.to_thread(key_set.endorsements, kid)


def same_service_url(a: str, b: str) -> bool:
    """Service URLs compared as the Bot Framework SDKs do: case-insensitively, a trailing / ignored."""
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


async def check_connector_token(claims: dict[str, Any], token: str, activity: dict[str, Any],
                                keys: BotFrameworkKeys) -> None:
    """Raise TokenRefused unless the token (the SDK validated it: these are its claims) may carry
    this activity body."""
    service_url, claimed, issuer = activity.get("serviceUrl"), claims.get("serviceurl"), claims.get("iss")
    from_bot_framework = isinstance(issuer, str) and issuer in BOT_FRAMEWORK_KEY_SETS
    if claimed is not None or from_bot_framework:
        if not (isinstance(claimed, str) and isinstance(service_url, str) and same_service_url(claimed, service_url)):
            raise TokenRefused("its serviceurl claim is missing or not the activity's serviceUrl")
    if from_bot_framework:
        await _check_endorsement(issuer, token, activity.get("channelId"), keys)
    elif not _asked_for_by_the_audience(claims):
        raise TokenRefused("it is an Entra token another app asked for (its appid/azp is not Herald's app id)")


def _asked_for_by_the_audience(claims: dict[str, Any]) -> bool:
    """Whether the app that asked Entra for the token (`appid`; `azp` in a v2 token) is the one it
    is for (`aud`, which the SDK checked is Herald's app id)."""
    caller = claims.get("azp") if claims.get("ver") == "2.0" else claims.get("appid")
    audience = claims.get("aud")
    return isinstance(caller, str) and isinstance(audience, str) and caller.lower() == audience.lower()


async def _check_endorsement(issuer: str, token: str, channel: Any, keys: BotFrameworkKeys) -> None:
    kid = jwt.get_unverified_header(token).get("kid")  # the key the SDK verified the signature with
    try:
        endorsed = await keys.endorsements(issuer, kid) if isinstance(kid, str) else frozenset()
    except jwt.PyJWKClientError as exc:
        raise TokenRefused(f"its key's endorsements could not be read ({type(exc).__name__})") from exc
    if not isinstance(channel, str) or channel not in endorsed:
        raise TokenRefused("its signing key is not endorsed for the activity's channelId")
