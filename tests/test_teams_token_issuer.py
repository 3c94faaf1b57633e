"""Inbound Teams tokens are checked for their issuer, not only their signature and audience, and
against the activity they carry (Microsoft's serviceurl rule).

Microsoft's signing keys are shared by every Entra tenant, so a token that another tenant's admin
mints for Herald's app id (possible once the app is multi-tenant and consented there) carries a
valid signature and the right audience. The key-set download (from Microsoft's fixed hosts) is
answered from memory (tests.fakes.bot_framework_keys); the SDK's validation and Herald's own
checks run as in production. Tokens name the rig's service URL in `serviceurl`, as the Bot
Connector's do."""

from __future__ import annotations

import pytest

from storage.models import ConsoleSignIn, Staff
from tests.fakes.bot_framework_keys import (
    APP_ID,
    BOT_FRAMEWORK_ISSUER,
    GOV_BOT_FRAMEWORK_ISSUER,
    LocalBotFrameworkKeys,
)
from tests.teams_support import start_teams_rig, stop_teams_rig

OWN_TENANT = "77777777-7777-7777-7777-777777777777"
OTHER_TENANT = "66666666-6666-6666-6666-666666666666"
BOTFRAMEWORK_TENANT = "d6d49420-f39b-4df7-a1dc-d59a935871db"  # botframework.com, one of Microsoft's own
OTHER_APP = "99999999-8888-7777-6666-555555555555"  # some other app registration


async def _console_as_cam(db: str, keys: LocalBotFrameworkKeys, issuer: str, tenant: str | None = None,
                          claims: dict[str, str] | None = None, **settings: str) -> int:
    """Ask for a console link as the CAM with a token from `issuer` (for the rig's service URL,
    with these extra claims); the HTTP status (and no link unless 200)."""
    rig = await start_teams_rig(db, teams_app_id=APP_ID, **settings)
    try:
        token = keys.token(rig.connector.url, issuer=issuer, **({"tid": tenant} if tenant else {}), **(claims or {}))
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
    """A v2 token from the app's own tenant that Herald's own credentials asked for (the Bot
    Framework Emulator signs in with them) is accepted; one from another tenant is not."""
    own, other = (f"https://login.microsoftonline.com/{tenant}/v2.0" for tenant in (OWN_TENANT, OTHER_TENANT))
    herald = {"ver": "2.0", "azp": APP_ID}
    assert await _console_as_cam(db, bot_framework_keys, own, OWN_TENANT, herald, teams_tenant_id=OWN_TENANT) == 200
    assert await _console_as_cam(db, bot_framework_keys, other, OTHER_TENANT, herald,
                                 teams_tenant_id=OWN_TENANT) == 401


@pytest.mark.parametrize(("issuer", "tenant", "claims"), [
    (f"https://login.microsoftonline.com/{OWN_TENANT}/v2.0", OWN_TENANT, {"ver": "2.0", "azp": OTHER_APP}),
    (f"https://sts.windows.net/{OWN_TENANT}/", OWN_TENANT, {"ver": "1.0", "appid": OTHER_APP}),
    (f"https://sts.windows.net/{BOTFRAMEWORK_TENANT}/", BOTFRAMEWORK_TENANT, {"ver": "1.0", "appid": OTHER_APP}),
])
async def test_an_entra_token_another_app_asked_for_is_refused(
        db: str, bot_framework_keys: LocalBotFrameworkKeys, issuer: str, tenant: str, claims: dict[str, str]) -> None:
    """Entra issues a token for Herald's app id to any app registration in a tenant where Herald
    has a service principal: the vendor's own (any employee may register an app there, by default)
    and the Bot Framework's (botframework.com, where every multi-tenant bot gets its tokens). The
    SDK checked the issuer and the audience only, so such an app could post activities as the CAM.
    Microsoft: validate the actor, the client app ("Secure applications and APIs by validating
    claims"); an Entra token must have been asked for by Herald itself (`appid`, v2 `azp`)."""
    assert await _console_as_cam(db, bot_framework_keys, issuer, tenant, claims, teams_tenant_id=OWN_TENANT) == 403


# ---- the US Government cloud (GCC High, DoD) ------------------------------------------------

GOV_AUTHORITY = "https://login.microsoftonline.us"


async def test_in_the_us_government_cloud_the_channels_tokens_are_accepted(
        db: str, bot_framework_keys: LocalBotFrameworkKeys) -> None:
    """In Azure Government the Bot Connector's tokens are issued by https://api.botframework.us
    (Microsoft's GovernmentConstants.ToBotFromChannelTokenIssuer). Herald built the SDK's
    configuration without HERALD_TEAMS_AUTHORITY_URL, so the SDK took public-cloud issuers only and
    refused every activity; the public cloud's issuer is the one refused there now."""
    gov = {"teams_authority_url": GOV_AUTHORITY}
    assert await _console_as_cam(db, bot_framework_keys, GOV_BOT_FRAMEWORK_ISSUER, **gov) == 200
    assert await _console_as_cam(db, bot_framework_keys, BOT_FRAMEWORK_ISSUER, **gov) == 401
    assert await _console_as_cam(db, bot_framework_keys, GOV_BOT_FRAMEWORK_ISSUER) == 401  # public cloud


# ---- the token's serviceurl claim and the activity's serviceUrl ------------------------------

@pytest.mark.parametrize("claim", ["https://smba.trafficmanager.net/emea/", None])
async def test_a_token_whose_serviceurl_claim_is_not_the_activitys_serviceurl_is_refused(
        db: str, bot_framework_keys: LocalBotFrameworkKeys, claim: str | None) -> None:
    """Microsoft, "Authentication with the Bot Connector API", connector → bot, step 4: the token
    "contains a serviceUrl claim with value that matches the serviceUrl property at the root of the
    activity", else the request is refused. The SDK does not compare them: a token minted for one
    service URL (or for none) carried an activity naming another, and Herald stored that URL as
    where the CAM's notices, escalations and hand-offs go. Refused with 403, nothing stored."""
    rig = await start_teams_rig(db, teams_app_id=APP_ID)
    try:
        token = bot_framework_keys.token(claim)
        status, _ = await rig.post(rig.activity("message", "aad-cam", text="console"),
                                   headers={"Authorization": f"Bearer {token}"})
        staff = await Staff.get(email="cam@vendor.example")
        assert status == 403 and await ConsoleSignIn.all().count() == 0
        assert staff.teams_service_url == "" and rig.connector.activities("a:conv-aad-cam") == []
    finally:
        await stop_teams_rig(rig)


async def test_a_serviceurl_claim_matches_whatever_its_case_and_trailing_slash(
        db: str, bot_framework_keys: LocalBotFrameworkKeys) -> None:
    """The control: the claim and the activity's serviceUrl are compared as the Bot Framework
    SDKs compare them, case-insensitively and without a trailing /."""
    rig = await start_teams_rig(db, teams_app_id=APP_ID)
    try:
        token = bot_framework_keys.token(rig.connector.url.upper().rstrip("/"))  # the activity has a trailing /
        status, _ = await rig.post(rig.activity("message", "aad-cam", text="console"),
                                   headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and await ConsoleSignIn.all().count() == 1
    finally:
        await stop_teams_rig(rig)


async def test_an_entra_issued_token_is_held_to_its_serviceurl_only_when_it_has_one() -> None:
    """Tokens from Microsoft's first-party Entra tenants (which the SDK also accepts) need not
    carry a `serviceurl`; one that does must match, as a Bot Framework token must."""
    from bot.handlers.teams.connector_token import BotFrameworkKeys, TokenRefused, check_connector_token

    entra = {"iss": f"https://sts.windows.net/{BOTFRAMEWORK_TENANT}/", "aud": APP_ID, "ver": "1.0", "appid": APP_ID}
    activity = {"type": "message", "serviceUrl": "https://smba.trafficmanager.net/emea/"}
    keys = BotFrameworkKeys()  # not asked: an Entra key has no endorsements
    await check_connector_token(entra, "", activity, keys)
    await check_connector_token({**entra, "serviceurl": "https://SMBA.trafficmanager.net/emea"}, "", activity, keys)
    with pytest.raises(TokenRefused):
        await check_connector_token({**entra, "serviceurl": "https://smba.trafficmanager.net/amer/"}, "", activity, keys)


# ---- the signing key's endorsements ----------------------------------------------------------

async def test_a_token_signed_by_a_key_not_endorsed_for_msteams_is_refused(
        db: str, bot_framework_keys: LocalBotFrameworkKeys) -> None:
    """Microsoft, same article, step 3: each key of the Bot Framework's key set carries
    `endorsements`, the channel ids it may sign for; an activity whose channelId is not among them
    is refused with 403. The SDK only looks the key up by `kid`: an msteams activity signed with a
    key endorsed for Web Chat only was accepted. The key set is downloaded once, not per request."""
    fetches = 0
    document = bot_framework_keys.document

    def counted() -> dict:
        nonlocal fetches
        fetches += 1
        return document()

    bot_framework_keys.document = counted  # type: ignore[method-assign]
    rig = await start_teams_rig(db, teams_app_id=APP_ID)
    try:
        bot_framework_keys.endorsements = ["webchat"]
        token = bot_framework_keys.token(rig.connector.url)
        status, _ = await rig.post(rig.activity("message", "aad-cam", text="console"),
                                   headers={"Authorization": f"Bearer {token}"})
        assert status == 403 and await ConsoleSignIn.all().count() == 0
        assert rig.connector.activities("a:conv-aad-cam") == []
        status, _ = await rig.post(rig.activity("message", "aad-cam", text="console"),
                                   headers={"Authorization": f"Bearer {token}"})
        assert status == 403 and fetches == 2  # one by the SDK, one by Herald's check: both cached
    finally:
        await stop_teams_rig(rig)
