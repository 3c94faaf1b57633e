"""Who a Teams sender is linked to when Herald does not know their AAD object id yet.

The roster's `email` is the sender's mail attribute, which the admin of *their* tenant sets: an
outsider's tenant can give its user a CAM's or a partner member's address. These tests send
activities from such tenants over HTTP to the real app and check that an address alone links
nobody across tenants (bot/core/directory/linking.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.handlers.teams.texts import NOT_A_MEMBER, ONE_TO_ONE, SORRY, WELCOME
from storage.models import AuditEvent, Member, PlatformAccount, Staff
from tests.conftest import POSTGRES_ONLY
from tests.fakes.bot_connector import FakeBotConnector
from tests.support import directory_csv
from tests.teams_support import DIRECTORY, TENANT, TeamsRig, sent_from_teams

EVIL = "tenant-evil"
# Hal: a member of Teams Co (whose tenant the directory knows) with no Teams ids of his own;
# Ivy: a member of New Co, an organisation with no Teams tenant known yet.
MORE_MEMBERS = directory_csv([
    *DIRECTORY.strip().splitlines()[1:],
    "teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,hal@teamsco.example,Hal Blanc,"
    "sales,Europe/Paris,fr,,,,",
    "newco,New Co,silver,emea,fr,retail,small,reseller,cam@vendor.example,ivy@newco.example,Ivy Noir,"
    "sales,Europe/Paris,fr,,,,",
])


async def _say(teams: TeamsRig, aad: str, text: str, *, tenant: str = TENANT) -> str:
    teams.connector.open_conversation(aad, tenant)
    status, _ = await teams.post(teams.activity("message", aad, tenant=tenant, text=text))
    assert status == 200
    return teams.connector.activities(f"a:conv-{aad}")[-1].get("text", "")


async def _accounts_of(email: str) -> list[tuple[str, str]]:
    member = await Member.get(email=email)
    return sorted(await PlatformAccount.filter(member=member, platform="teams")
                  .values_list("workspace_external_id", "user_id"))


async def test_an_outsider_with_a_cams_address_does_not_become_the_cam(teams: TeamsRig) -> None:
    assert "Herald" in await _say(teams, "aad-cam", "help")  # the real CAM, known by AAD id
    teams.connector.add_roster_member("29:aad-mallory", email="CAM@vendor.example", name="Mallory")

    reply = await _say(teams, "aad-mallory", "console", tenant=EVIL)

    assert "sign-in?token=" not in reply
    cam = await Staff.get(email="cam@vendor.example")
    assert (cam.teams_aad_object_id, cam.teams_tenant_id) == ("aad-cam", TENANT)
    assert "sign-in?token=" in await _say(teams, "aad-cam", "console")  # still the CAM


async def test_a_staff_member_is_linked_by_address_only_from_the_vendors_tenant(teams: TeamsRig) -> None:
    await add_staff("ops@vendor.example", "compliance", name="Olga Ops", now=teams.clock.now(), actor="test")
    await _say(teams, "aad-cam", "help")  # binds the CAM's tenant: the vendor's
    teams.connector.add_roster_member("29:aad-mallory", email="ops@vendor.example")
    teams.connector.add_roster_member("29:aad-olga", email="ops@vendor.example")

    await _say(teams, "aad-mallory", "console", tenant=EVIL)
    assert (await Staff.get(email="ops@vendor.example")).teams_aad_object_id == ""

    assert "sign-in?token=" in await _say(teams, "aad-olga", "console")
    olga = await Staff.get(email="ops@vendor.example")
    assert (olga.teams_aad_object_id, olga.teams_tenant_id) == ("aad-olga", TENANT)
    linked = await AuditEvent.filter(kind="staff.teams_linked").order_by("id").values_list("actor", "data")
    assert [(actor, data["aad_object_id"]) for actor, data in linked] == [
        ("cam@vendor.example", "aad-cam"), ("ops@vendor.example", "aad-olga")]


async def test_the_configured_tenant_is_the_vendors_own(db: str) -> None:
    from tests.teams_support import start_teams_rig, stop_teams_rig

    teams = await start_teams_rig(db, teams_tenant_id="Tenant-Vendor")
    try:
        await add_staff("ops@vendor.example", "compliance", now=teams.clock.now(), actor="test")
        teams.connector.add_roster_member("29:aad-olga", email="ops@vendor.example")
        teams.connector.add_roster_member("29:aad-mallory", email="ops@vendor.example")
        await _say(teams, "aad-mallory", "help", tenant=TENANT)  # a partner's tenant is not the vendor's
        assert (await Staff.get(email="ops@vendor.example")).teams_aad_object_id == ""
        assert "sign-in?token=" in await _say(teams, "aad-olga", "console", tenant="tenant-vendor")
    finally:
        await stop_teams_rig(teams)


async def test_a_member_is_linked_by_address_only_from_their_organisations_tenant(teams: TeamsRig) -> None:
    await import_directory(MORE_MEMBERS, now=teams.clock.now(), actor="test")
    teams.connector.add_roster_member("29:aad-mallory", email="hal@teamsco.example")
    teams.connector.add_roster_member("29:aad-hal", email="hal@teamsco.example")

    assert await _say(teams, "aad-mallory", "hello", tenant=EVIL) == NOT_A_MEMBER
    assert await _accounts_of("hal@teamsco.example") == []

    assert await _say(teams, "aad-hal", "hello") != NOT_A_MEMBER
    assert await _accounts_of("hal@teamsco.example") == [(TENANT, "aad-hal")]


async def test_a_new_organisations_member_is_linked_by_verified_name_not_by_mail_attribute(teams: TeamsRig) -> None:
    await import_directory(MORE_MEMBERS, now=teams.clock.now(), actor="test")
    # Mallory's tenant sets her mail attribute to Ivy's address; her sign-in name is her own.
    teams.connector.add_roster_member("29:aad-mallory", email="ivy@newco.example", upn="mallory@evil.example")
    teams.connector.add_roster_member("29:aad-ivy", email="ivy.noir@newco.example", upn="ivy@newco.example")

    assert await _say(teams, "aad-mallory", "hello", tenant=EVIL) == NOT_A_MEMBER
    assert await _accounts_of("ivy@newco.example") == []

    assert await _say(teams, "aad-ivy", "hello", tenant="tenant-newco") != NOT_A_MEMBER
    assert await _accounts_of("ivy@newco.example") == [("tenant-newco", "aad-ivy")]


async def test_an_address_in_two_organisations_links_the_one_the_tenant_speaks_for(teams: TeamsRig) -> None:
    """pat@shared.example is a member of New Co (no tenant known) and of Teams Co (tenant-1)."""
    await import_directory(directory_csv([
        *MORE_MEMBERS.strip().splitlines()[1:],
        "newco,New Co,silver,emea,fr,retail,small,reseller,cam@vendor.example,pat@shared.example,Pat,"
        "sales,Europe/Paris,fr,,,,",
        "teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,pat@shared.example,Pat,"
        "sales,Europe/Paris,fr,,,,"]), now=teams.clock.now(), actor="test")
    teams.connector.add_roster_member("29:aad-pat", email="pat@shared.example", upn="pat@tenant1.example")

    assert await _say(teams, "aad-pat", "hello") != NOT_A_MEMBER

    [account] = await PlatformAccount.filter(platform="teams", user_id="aad-pat").select_related("member__organisation")
    assert account.member.organisation.external_id == "teamsco"


# ---- a group chat is not a member's 1:1 conversation -----------------------------------------

GROUP = "19:partners-and-friends@thread.v2"


def _in_group_chat(teams: TeamsRig, kind: str, aad: str, **extra: Any) -> dict[str, Any]:
    activity = teams.activity(kind, aad, **extra)
    activity["conversation"] = {"id": GROUP, "conversationType": "groupChat", "tenantId": TENANT, "isGroup": True}
    return activity


async def _delivered_notice(teams: TeamsRig) -> int:
    return await sent_from_teams(teams, "send must-know operations org:teamsco | Recall of LX-200 | Stop selling")


@pytest.mark.usefixtures("warm_knowledge_base")  # were the question answered, it would be from it
async def test_a_group_chat_message_does_not_move_a_members_notices_into_the_group(teams: TeamsRig) -> None:
    """Herald's app is personal-scope only (bot/teams_package.py) and delivers notices 1:1. A message
    @mentioning it in a group chat is told where Herald works and stores nothing: the member's next
    must-know notice still goes to her 1:1 chat, not into a chat other people read."""
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    assert (await PlatformAccount.get(platform="teams", user_id="aad-eve")).dm_channel == "a:conv-aad-eve"
    from tests.fakes.bot_connector import _Conversation

    teams.connector._conversations[GROUP] = _Conversation(GROUP, TENANT, "aad-eve", "herald-bot")  # the group exists
    status, _ = await teams.post(_in_group_chat(teams, "message", "aad-eve",
                                                text="<at>Herald</at> how do I register a deal"))
    assert status == 200
    assert [a.get("text") for a in teams.connector.activities(GROUP)] == [ONE_TO_ONE]
    notice_id = await _delivered_notice(teams)
    in_group = [a for a in teams.connector.activities(GROUP) if f"'notice_id': {notice_id}" in str(a)]
    account = await PlatformAccount.get(platform="teams", user_id="aad-eve")
    assert not in_group and account.dm_channel == "a:conv-aad-eve", \
        (f"Eve's must-know notice #{notice_id} was posted into the group chat ({len(in_group)} cards there); "
         f"her stored conversation is now {account.dm_channel!r}")


async def test_a_group_chat_message_or_press_from_staff_does_not_move_their_hand_offs_into_the_group(
        teams: TeamsRig) -> None:
    """The same for a CAM: escalations and partners' handed-off questions go to
    `teams_conversation_id`, which neither a group chat's message nor a card pressed there replaces;
    a group chat's install is not greeted."""
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    status, _ = await teams.post(_in_group_chat(teams, "message", "aad-cam", text="help"))
    assert status == 200
    status, body = await teams.post(_in_group_chat(
        teams, "invoke", "aad-cam", name="adaptiveCard/action",
        value={"action": {"type": "Action.Execute", "verb": "herald.cancel", "data": {"notice_id": 1}}}))
    assert status == 200 and body["value"] == ONE_TO_ONE
    await teams.post(_in_group_chat(teams, "installationUpdate", "aad-cam", action="add"))
    staff = await Staff.get(email="cam@vendor.example")
    assert staff.teams_conversation_id == "a:conv-aad-cam", \
        f"the CAM's 1:1 conversation was replaced by {staff.teams_conversation_id!r}"
    # the message is told where Herald works; the press is answered in place; the install is not greeted
    assert [c.body.get("text") for c in teams.connector.calls_to("send_activity") if c.conversation_id == GROUP] \
        == [ONE_TO_ONE]


# ---- a personal install: conversationUpdate and installationUpdate at once ----------------------

class _RosterHeldUntilBothAsk(FakeBotConnector):
    """The Bot Connector answering `GET .../members/{id}` only once `waiting` look-ups are under way:
    the two activities of one install arrive together (Microsoft sends both) and their handlers
    look the new person up at the same moment. Widens the window deterministically; no sleeps."""

    waiting = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._asked = 0
        self._all_asked = asyncio.Event()

    async def _handle_member(self, request: web.Request) -> web.Response:
        self._asked += 1
        if self._asked >= self.waiting:
            self._all_asked.set()
        await asyncio.wait_for(self._all_asked.wait(), timeout=10)
        return await super()._handle_member(request)


@pytest.fixture
async def held_teams(db: str, monkeypatch: pytest.MonkeyPatch):
    import tests.teams_support as support

    monkeypatch.setattr(support, "FakeBotConnector", _RosterHeldUntilBothAsk)
    rig = await support.start_teams_rig(db)
    try:
        yield rig
    finally:
        await support.stop_teams_rig(rig)


async def _installed_at_once(teams: TeamsRig, aad: str, *, email: str) -> list[str]:
    """A personal install by `aad` (the roster gives `email`): its conversationUpdate and
    installationUpdate posted together, both answered 200; what the person was told."""
    teams.connector.open_conversation(aad)
    teams.connector.add_roster_member(f"29:{aad}", email=email)
    added = teams.activity("conversationUpdate", aad,
                           membersAdded=[{"id": "28:herald"}, {"id": f"29:{aad}", "aadObjectId": aad}])
    install = teams.activity("installationUpdate", aad, action="add")
    answers = await asyncio.gather(teams.post(added, settle=False), teams.post(install, settle=False))
    await teams.herald.settle()
    assert [status for status, _ in answers] == [200, 200]
    return [a.get("text") or "" for a in teams.connector.activities(f"a:conv-{aad}")]


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
async def test_a_personal_install_linked_by_address_greets_once_and_never_says_sorry(held_teams: TeamsRig) -> None:
    """Microsoft ("Conversation events in your Teams bot"; the handler's own docstring): a personal
    install sends a conversationUpdate (membersAdded: the bot and the user) AND an installationUpdate
    (action add), together. For a member Herald knows only by address (no Teams ids in the
    directory yet), both handlers find no platform account, look the person up in the roster and
    insert the account at once (two replicas behind the proxy, or two tasks of one): the one that
    loses the unique key takes the winner's account, so nobody is told "Sorry, something went
    wrong", the installationUpdate greets once, and the link is audited once."""
    teams = held_teams
    await import_directory(MORE_MEMBERS, now=teams.clock.now(), actor="test")
    said = await _installed_at_once(teams, "aad-hal", email="hal@teamsco.example")
    assert SORRY not in said, f"the new member was told {said!r}"
    assert said.count(WELCOME) == 1, f"greeted {said.count(WELCOME)} times: {said!r}"
    hal = await Member.get(email="hal@teamsco.example")
    assert await PlatformAccount.filter(member=hal, platform="teams").count() == 1
    assert await AuditEvent.filter(kind="member.linked", member_id=hal.id).count() == 1


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
async def test_a_personal_install_links_a_staff_member_known_by_address_once(held_teams: TeamsRig) -> None:
    """The same two activities of one install from a staff member Herald knows only by address
    (from the vendor's tenant): both handlers read the staff row unlinked and both bound it and
    audited `staff.teams_linked`, so the trail said the account was linked twice. The binding is
    now written only while the row is still as read; the other handler finds it bound to this
    person and audits nothing."""
    teams = held_teams
    await Staff.filter(email="cam@vendor.example").update(teams_tenant_id=TENANT)  # the vendor's tenant is known
    await add_staff("ops@vendor.example", "compliance", name="Olga Ops", now=teams.clock.now(), actor="test")
    said = await _installed_at_once(teams, "aad-olga", email="ops@vendor.example")
    assert SORRY not in said, f"the staff member was told {said!r}"
    olga = await Staff.get(email="ops@vendor.example")
    assert (olga.teams_aad_object_id, olga.teams_tenant_id) == ("aad-olga", TENANT)
    linked = await AuditEvent.filter(kind="staff.teams_linked", actor="ops@vendor.example").count()
    assert linked == 1, f"staff.teams_linked audited {linked} times"
