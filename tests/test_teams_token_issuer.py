"""Inbound Teams tokens are checked for their issuer, not only their signature and audience.

Microsoft's signing keys are shared by every Entra tenant, so a token that another tenant's admin
mints for Herald's app id (possible once the app is multi-tenant and consented there) carries a
valid signature and the right audience. The key lookup (a download from Microsoft's fixed hosts)
is replaced by a local key; the SDK's validation itself runs as in production."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from microsoft_agents.hosting.core.authorization.jwt import jwt_token_validator

from storage.models import ConsoleSignIn
from tests.teams_support import start_teams_rig, stop_teams_rig

APP_ID = "11111111-2222-3333-4444-555555555555"
OWN_TENANT = "77777777-7777-7777-7777-777777777777"
OTHER_TENANT = "66666666-6666-6666-6666-666666666666"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(autouse=True)
def local_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async def signing_key(self, jwks_uri: str, header: dict) -> object:  # noqa: ANN001, ARG001
        return KEY.public_key()
    monkeypatch.setattr(jwt_token_validator._JwkClientManager, "get_signing_key", signing_key)


def _token(issuer: str, tenant: str | None = None) -> str:
    now = int(time.time())
    claims = {"aud": APP_ID, "iss": issuer, "iat": now, "nbf": now, "exp": now + 3600,
              "serviceurl": "https://smba.trafficmanager.net/emea/"}
    if tenant:
        claims["tid"] = tenant
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})


async def _console_as_cam(db: str, token: str, **settings: str) -> int:
    """Ask for a console link as the CAM with this token; the HTTP status (and no link unless 200)."""
    rig = await start_teams_rig(db, teams_app_id=APP_ID, **settings)
    try:
        before = await ConsoleSignIn.all().count()
        status, _ = await rig.post(rig.activity("message", "aad-cam", text="console"),
                                   headers={"Authorization": f"Bearer {token}"})
        issued = await ConsoleSignIn.all().count() - before
        assert (status == 200) == (issued == 1), (status, issued)
        return status
    finally:
        await stop_teams_rig(rig)


async def test_the_bot_frameworks_token_is_accepted(db: str) -> None:
    assert await _console_as_cam(db, _token("https://api.botframework.com")) == 200


async def test_a_token_another_tenant_minted_for_the_app_is_refused(db: str) -> None:
    token = _token(f"https://sts.windows.net/{OTHER_TENANT}/", OTHER_TENANT)
    assert await _console_as_cam(db, token) == 401


async def test_a_single_tenant_apps_own_tenant_is_accepted_and_no_other(db: str) -> None:
    own = _token(f"https://login.microsoftonline.com/{OWN_TENANT}/v2.0", OWN_TENANT)
    other = _token(f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0", OTHER_TENANT)
    assert await _console_as_cam(db, own, teams_tenant_id=OWN_TENANT) == 200
    assert await _console_as_cam(db, other, teams_tenant_id=OWN_TENANT) == 401
