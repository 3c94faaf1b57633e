"""The Bot Framework's signing keys, served from memory, and tokens signed with them.

Inbound Teams requests carry an RS256 JWT that the Agents SDK checks against a key set it
downloads from Microsoft's fixed hosts (`login.botframework.com/v1/.well-known/keys`, Entra's
`discovery/v2.0/keys`). Tests cannot reach those hosts, so `serve_locally` makes every
`jwt.PyJWKClient` (the SDK's, and Herald's own endorsement check) read this key set instead;
everything else (signature, audience, issuer, Herald's checks) runs as in production.

The key set is the Bot Framework's format: JWKs with Microsoft's extra `endorsements` property,
the channel ids each key may sign for ("Authentication with the Bot Connector API", step 3).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from microsoft_agents.hosting.core.authorization.jwt import jwt_token_validator

APP_ID = "11111111-2222-3333-4444-555555555555"
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
GOV_BOT_FRAMEWORK_ISSUER = "https://api.botframework.us"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # made once: about 50 ms each


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class LocalBotFrameworkKeys:
    """One RSA signing key, published with `endorsements` (change them before or during a test)."""

    kid: str = "local-key"
    endorsements: list[str] = field(default_factory=lambda: ["msteams"])

    def document(self) -> dict[str, Any]:
        """The key set as the JWKS endpoint answers it."""
        numbers = _KEY.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "n": _b64(numbers.n), "e": _b64(numbers.e),
                          "endorsements": list(self.endorsements)}]}

    def token(self, service_url: str | None, *, issuer: str = BOT_FRAMEWORK_ISSUER, audience: str = APP_ID,
              **claims: Any) -> str:
        """A token as the Bot Connector sends it to a bot (iss, aud = the app id, serviceurl),
        signed with this key; `service_url=None` leaves the `serviceurl` claim out."""
        now = int(time.time())
        body: dict[str, Any] = {"aud": audience, "iss": issuer, "iat": now, "nbf": now, "exp": now + 3600, **claims}
        if service_url is not None:
            body["serviceurl"] = service_url
        return jwt.encode(body, _KEY, algorithm="RS256", headers={"kid": self.kid})

    def serve_locally(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Answer every key-set download from memory, and drop key sets the SDK cached for an
        earlier test (its cache is class-wide)."""
        monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", lambda client: self.document())
        monkeypatch.setattr(jwt_token_validator.JwtTokenValidator, "_jwk_client_manager",
                            jwt_token_validator._JwkClientManager())
