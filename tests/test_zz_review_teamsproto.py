"""Review (area: the Teams / Bot Framework protocol and its security): defects found, each a test
that fails on the current code and passes once the defect is fixed.

Inbound tokens are real RS256 JWTs checked by the Agents SDK as in production; only the key
download (from Microsoft's fixed JWKS hosts) is replaced by a local key, as in
tests/test_teams_token_issuer.py."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from microsoft_agents.hosting.core.authorization.jwt import jwt_token_validator

from storage.models import ConsoleSignIn, Staff
from tests.teams_support import TeamsRig, start_teams_rig, stop_teams_rig

APP_ID = "11111111-2222-3333-4444-555555555555"
BOT_FRAMEWORK = "https://api.botframework.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "review-key"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jwks(endorsements: list[str]) -> dict[str, Any]:
    """The Bot Framework's key document (login.botframework.com/v1/.well-known/keys): JWKs with
    Microsoft's extra `endorsements` property, the channel ids each key may sign for."""
    numbers = KEY.public_key().public_numbers()
    return {"keys": [{"kty": "RSA", "use": "sig", "kid": KID, "n": _b64(numbers.n), "e": _b64(numbers.e),
                      "endorsements": endorsements}]}


@pytest.fixture
def bot_framework_keys(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Serve the JWKS document from memory instead of downloading it (the SDK's PyJWKClient and
    anything else that reads the key set see the same document). Returns a one-item list holding the
    endorsements the key carries, `["msteams"]` unless a test changes it."""
    endorsements: list[list[str]] = [["msteams"]]
    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", lambda self: _jwks(endorsements[0]))
    monkeypatch.setattr(jwt_token_validator.JwtTokenValidator, "_jwk_client_manager",
                        jwt_token_validator._JwkClientManager())  # no key set cached by an earlier test
    return endorsements


def _token(service_url: str, *, issuer: str = BOT_FRAMEWORK) -> str:
    """A Bot Connector → bot token as Microsoft documents it (iss, aud = the app id, serviceurl)."""
    now = int(time.time())
    claims = {"aud": APP_ID, "iss": issuer, "iat": now, "nbf": now, "exp": now + 3600, "serviceurl": service_url}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": KID})


async def _console_links(rig: TeamsRig) -> int:
    return await ConsoleSignIn.all().count()


# ---- 5. a US Government cloud (GCC High / DoD) deployment cannot work ------------------------

GOV_AUTHORITY = "https://login.microsoftonline.us"


async def test_in_the_us_government_cloud_the_connector_token_is_asked_for_the_us_scope(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Microsoft (GovernmentConstants): a bot → channel token in Azure Government is asked of
    login.microsoftonline.us for the scope `https://api.botframework.us/.default` (default tenant
    `MicrosoftServices.onmicrosoft.us` for a multi-tenant app). Herald keeps the public scope
    `https://api.botframework.com/.default` and the tenant `botframework.com` whatever the authority,
    so the token it gets (if Entra gives one at all) is not one the US Government connector takes.
    MSAL itself is replaced by a recorder here: login.microsoftonline.us cannot be faked by name."""
    import msal

    from bot.channels.teams import MsalTokenProvider

    asked: list[tuple[str, list[str]]] = []

    class RecordingApp:
        def __init__(self, client_id: str, *, authority: str, **kwargs: Any) -> None:
            self.authority = authority

        def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
            asked.append((self.authority, scopes))
            return {"access_token": "t", "expires_in": 3600}

    monkeypatch.setattr(msal, "ConfidentialClientApplication", RecordingApp)
    provider = MsalTokenProvider(APP_ID, "secret", authority_host=GOV_AUTHORITY)
    await provider()
    ((authority, scopes),) = asked
    assert scopes == ["https://api.botframework.us/.default"], (authority, scopes)
