"""Inbound Teams tokens are checked for their issuer, not only their signature and audience.

Microsoft's signing keys are shared by every Entra tenant, so a token that another tenant's admin
mints for Herald's app id (possible once the app is multi-tenant and consented there) carries a
valid signature and the right audience. The key-set download (from Microsoft's fixed hosts) is
answered from memory (tests.fakes.bot_framework_keys); the SDK's validation and Herald's own
checks run as in production. Tokens name the rig's service URL in `serviceurl`, as the Bot
Connector's do."""

from __future__ import annotations

from storage.models import ConsoleSignIn
from tests.fakes.bot_framework_keys import APP_ID, BOT_FRAMEWORK_ISSUER, LocalBotFrameworkKeys
from tests.teams_support import start_teams_rig, stop_teams_rig

OWN_TENANT = "77777777-7777-7777-7777-777777777777"
OTHER_TENANT = "66666666-6666-6666-6666-666666666666"


async def _console_as_cam(db: str, keys: LocalBotFrameworkKeys, issuer: str, tenant: str | None = None,
                          **settings: str) -> int:
    """Ask for a console link as the CAM with a token from `issuer` (for the rig's service URL);
    the HTTP status (and no link unless 200)."""
    rig = await start_teams_rig(db, teams_app_id=APP_ID, **settings)
    try:
        token = keys.token(rig.connector.url, issuer=issuer, **({"tid": tenant} if tenant else {}))
        before = await ConsoleSignIn.all().count()
        status, _ = await rig.post(rig.activity("message", "aad-cam", text="console"),
                                   headers={"Authorization": f"Bearer {token}"})
        issued = await ConsoleSignIn.all().count() - before
        assert (status == 200) == (issued == 1), (status, issued)
        return status
    finally:
        await stop_teams_rig(rig)


async def test_the_bot_frameworks_token_is_accepted(db: str, bot_framework_keys: LocalBotFrameworkKeys) -> None:
    assert await _console_as_cam(db, bot_framework_keys, BOT_FRAMEWORK_ISSUER) == 200


async def test_a_token_another_tenant_minted_for_the_app_is_refused(
        db: str, bot_framework_keys: LocalBotFrameworkKeys) -> None:
    issuer = f"https://sts.windows.net/{OTHER_TENANT}/"
    assert await _console_as_cam(db, bot_framework_keys, issuer, OTHER_TENANT) == 401


async def test_a_single_tenant_apps_own_tenant_is_accepted_and_no_other(
        db: str, bot_framework_keys: LocalBotFrameworkKeys) -> None:
    own, other = (f"https://login.microsoftonline.com/{tenant}/v2.0" for tenant in (OWN_TENANT, OTHER_TENANT))
    assert await _console_as_cam(db, bot_framework_keys, own, OWN_TENANT, teams_tenant_id=OWN_TENANT) == 200
    assert await _console_as_cam(db, bot_framework_keys, other, OTHER_TENANT, teams_tenant_id=OWN_TENANT) == 401
