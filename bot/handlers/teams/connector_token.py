"""Microsoft's checks of an inbound Bot Connector token that the Agents SDK leaves out.

Microsoft, "Authentication with the Bot Connector API", connector → bot
(https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-authentication),
step 4: the token "contains a serviceUrl claim with value that matches the serviceUrl property at
the root of the activity"; a token that does not meet every requirement is refused (403).

The SDK's `JwtTokenValidator` checks the signature, the audience and (opted in) the issuer only.
Without step 4, a token the connector issued for one service URL could carry an activity naming
another, which Herald stores as where that person's notices go.

The rule is the Bot Framework issuer's (`api.botframework.com`, `.us` in Azure Government): its
tokens must carry a matching `serviceurl`. An Entra-issued token (Microsoft's first-party
tenants) may carry none; when it has one, it must match all the same.
"""

from __future__ import annotations

from typing import Any

from microsoft_agents.hosting.core.authorization import AuthenticationConstants

BOT_FRAMEWORK_ISSUERS = frozenset({AuthenticationConstants.AGENTS_SDK_TOKEN_ISSUER,
                                   AuthenticationConstants.GOV_AGENTS_SDK_TOKEN_ISSUER})


class TokenRefused(Exception):
    """The token is valid, but not for this activity; the message says why (never the token)."""


def same_service_url(a: str, b: str) -> bool:
    """Service URLs compared as the Bot Framework SDKs do: case-insensitively, a trailing / ignored."""
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


async def check_connector_token(claims: dict[str, Any], activity: dict[str, Any]) -> None:
    """Raise TokenRefused unless the (SDK-validated) token may carry this activity body."""
    service_url, claimed, issuer = activity.get("serviceUrl"), claims.get("serviceurl"), claims.get("iss")
    if claimed is not None or (isinstance(issuer, str) and issuer in BOT_FRAMEWORK_ISSUERS):
        if not (isinstance(claimed, str) and isinstance(service_url, str) and same_service_url(claimed, service_url)):
            raise TokenRefused("its serviceurl claim is missing or not the activity's serviceUrl")
