"""Review (teamsux): defects an experienced Teams user or admin would meet, each shown over real
HTTP against the fake Bot Connector (tests/fakes/bot_connector.py) with the project's Teams rig."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from bot.app import HERALD_KEY, build_app
from bot.core.directory.importer import import_directory
from bot.teams_package import build_manifest
from storage.models import Member
from tests.support import directory_csv
from tests.teams_support import TENANT, TeamsRig, actions_of, card_of, texts_of

pytestmark = pytest.mark.usefixtures("warm_knowledge_base")


async def _send_must_know(teams: TeamsRig, audience: str, title: str = "Recall of LX-200") -> int:
    preview = await teams.say("aad-cam", f"send must-know operations {audience} | {title} | Stop selling it")
    notice_id = actions_of(card_of(preview))[0]["data"]["notice_id"]
    await teams.invoke("aad-cam", "herald.send", {"notice_id": notice_id})
    await teams.herald.outbox.drain()
    return notice_id


async def _restart(teams: TeamsRig) -> None:
    """The same deployment after `herald serve` restarted (or another replica): a new process on the
    same database and Bot Connector; nothing in the old process's memory survives."""
    await teams.server.close()
    app = build_app(teams.herald.settings, clock=teams.clock, run_worker=False, manage_database=False)
    teams.server = TestServer(app, host="127.0.0.1")
    await teams.server.start_server()
    teams.herald = app[HERALD_KEY]


# ---- 5 (low): the member's time zone Teams sends with each message is ignored

async def test_a_members_time_zone_is_taken_from_teams_when_the_directory_has_none(teams: TeamsRig) -> None:
    """Every Teams message carries the sender's device time zone (entities: clientInfo.timezone).
    A member imported with a blank `timezone` is UTC (README) and stays UTC after talking to Herald
    from Teams, so a Los Angeles member's working hours (08:00-20:00) and quiet hours are kept in
    UTC: must-know reminders and need-to-know copies arrive at midnight-noon their time."""
    await import_directory(directory_csv([
        f"teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,lou@teamsco.example,Lou Park,"
        f"operations,,en,,,{TENANT},aad-lou"]), now=teams.clock.now(), actor="test")
    teams.connector.open_conversation("aad-lou", TENANT)
    client_info = {"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Windows",
                   "timezone": "America/Los_Angeles"}
    status, _ = await teams.post(teams.activity("message", "aad-lou", text="preferences", entities=[client_info]))
    assert status == 200
    member = await Member.get(email="lou@teamsco.example")
    assert member.timezone == "America/Los_Angeles", f"the member's zone stayed {member.timezone!r}"
