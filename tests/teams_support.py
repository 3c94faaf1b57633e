"""A Teams rig for end-to-end tests: the real app on a local port, a fake Bot Connector (and a fake
Slack API for members on both platforms), a manual clock and a seeded directory, with helpers to
send activities as a member and read the cards Herald sends back."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bot.app import HERALD_KEY, build_app
from bot.common.clock import ManualClock
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.service import Herald
from config.settings import load_settings
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.entra import FakeEntraID
from tests.fakes.slack_api import FakeSlackAPI
from tests.support import SIGNING_SECRET, TEAM, TOKEN, broadcast, directory_csv

TENANT = "tenant-1"
_activity_ids = itertools.count(1)  # Teams gives every activity its own id
DIRECTORY = directory_csv([
    f"teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,eve@teamsco.example,Eve Moreau,"
    f"operations,Europe/Paris,fr,,,{TENANT},aad-eve",
    f"teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,fay@teamsco.example,Fay Roux,"
    f"sales,Europe/Paris,fr,,,{TENANT},aad-fay",
    f"teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,gus@teamsco.example,Gus Petit,"
    f"support,Europe/Paris,fr,{TEAM},UGUS,{TENANT},aad-gus",
])


@dataclass
class TeamsRig:
    connector: FakeBotConnector
    slack: FakeSlackAPI
    server: TestServer
    session: aiohttp.ClientSession
    clock: ManualClock
    herald: Herald

    async def post(self, activity: dict[str, Any], headers: dict[str, str] | None = None, *,
                   settle: bool = True) -> tuple[int, Any]:
        """Deliver the activity as Teams would. Herald answers a message at once and replies
        afterwards: `settle` waits for that work too, so the replies are there when this returns."""
        async with self.session.post(self.server.make_url("/api/messages"), json=activity, headers=headers or {}) as r:
            text = await r.text()
            try:
                answer = r.status, (await r.json(content_type=None)) if text else None
            except ValueError:
                answer = r.status, text
        if settle:
            await self.herald.settle()
        return answer

    def activity(self, kind: str, aad: str, *, tenant: str = TENANT, **extra: Any) -> dict[str, Any]:
        return {"type": kind, "id": f"act-{next(_activity_ids)}", "channelId": "msteams", "serviceUrl": self.connector.url,
                "from": {"id": f"29:{aad}", "aadObjectId": aad, "name": aad},
                "recipient": {"id": "28:herald", "name": "Herald"},
                "conversation": {"id": f"a:conv-{aad}", "conversationType": "personal", "tenantId": tenant},
                "channelData": {"tenant": {"id": tenant}}, **extra}

    async def say(self, aad: str, text: str) -> dict[str, Any]:
        before = len(self.connector.activities(f"a:conv-{aad}"))
        status, _ = await self.post(self.activity("message", aad, text=text))
        assert status == 200
        sent = self.connector.activities(f"a:conv-{aad}")
        assert len(sent) == before + 1, "expected one reply"
        return sent[-1]

    async def invoke(self, aad: str, verb: str, data: dict[str, Any]) -> dict[str, Any]:
        status, body = await self.post(self.activity(
            "invoke", aad, name="adaptiveCard/action", value={"action": {"type": "Action.Execute", "verb": verb,
                                                                         "data": data}}))
        assert status == 200
        return body


def card_of(activity: dict[str, Any]) -> dict[str, Any]:
    return activity["attachments"][0]["content"]


def texts_of(element: Any) -> list[str]:
    """Every TextBlock text in a card, however nested."""
    if isinstance(element, dict):
        found = [element["text"]] if element.get("type") == "TextBlock" else []
        return found + [t for value in element.values() for t in texts_of(value)]
    if isinstance(element, list):
        return [t for item in element for t in texts_of(item)]
    return []


def actions_of(card: dict[str, Any]) -> list[dict[str, Any]]:
    return card.get("actions", [])


async def start_teams_rig(db_url: str, **settings: Any) -> TeamsRig:
    connector, slack = FakeBotConnector(), FakeSlackAPI()
    await connector.start()
    await slack.start()
    slack.add_workspace(TEAM, TOKEN)
    slack.add_user(TEAM, "UGUS")
    for aad in ("aad-eve", "aad-fay", "aad-gus", "aad-cam", "aad-outsider"):
        connector.open_conversation(aad, TENANT)
    clock = ManualClock()
    config = load_settings(**{"database_url": db_url, "slack_signing_secret": SIGNING_SECRET, "slack_api_url": slack.url,
                              "slack_bot_token": TOKEN, "teams_check_service_url": False,
                              "teams_service_url": connector.url, **settings})
    app = build_app(config, clock=clock, run_worker=False, manage_database=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await import_directory(DIRECTORY, now=clock.now(), actor="test")
    await add_staff("cam@vendor.example", "cam", name="Casey CAM", teams_aad="aad-cam", now=clock.now(), actor="test")
    return TeamsRig(connector, slack, server, aiohttp.ClientSession(), clock, app[HERALD_KEY])


async def restart_teams_rig(rig: TeamsRig, **settings: Any) -> None:
    """The same deployment after `herald serve` restarted (or another replica): a new process on the
    same database and Bot Connector, with `settings` changed; nothing in the old one's memory survives."""
    await rig.server.close()
    config = rig.herald.settings.model_copy(update=settings)
    app = build_app(config, clock=rig.clock, run_worker=False, manage_database=False)
    rig.server = TestServer(app, host="127.0.0.1")
    await rig.server.start_server()
    rig.herald = app[HERALD_KEY]


async def stop_teams_rig(rig: TeamsRig) -> None:
    await rig.session.close()
    await rig.server.close()
    await rig.connector.stop()
    await rig.slack.stop()


@contextlib.asynccontextmanager
async def teams_credentials_refused(db_url: str, entra: FakeEntraID, *, app_id: str, secret: str,
                                    entra_secret: str | None = None, connector_refuses: bool = False,
                                    rounds: int) -> AsyncIterator[tuple[TeamsRig, int]]:
    """README "Herald's credentials refused": Herald signs in to the fake Entra ID as `app_id`
    with `secret`. Entra knows the app's secret as `entra_secret` (the same unless told; another
    one: Herald's has expired, Entra answers `invalid_client`). `connector_refuses`: the Bot
    Connector answers Entra's tokens 401 (the Azure Bot is bound to another app registration) until
    the test calls `rig.connector.expect_token(None)`. A must-know notice goes to Teams Co and the
    outbox runs `rounds` times, five minutes apart (12: an hour). Yields the rig and the notice's id."""
    entra.add_app(app_id, entra_secret or secret)
    rig = await start_teams_rig(db_url, teams_app_id=app_id, teams_app_password=secret,
                                teams_tenant_id="tenant-herald", teams_authority_url=entra.url)
    try:
        if connector_refuses:
            rig.connector.expect_token("a token of the app registration the Azure Bot is bound to now")
        notice_id = await broadcast(rig.herald, rig.clock, "org:teamsco")
        for _ in range(rounds):
            await rig.herald.outbox.drain()
            rig.clock.advance(minutes=5)
        yield rig, notice_id
    finally:
        await stop_teams_rig(rig)


async def sent_from_teams(rig: TeamsRig, command: str) -> int:
    """The CAM types `command` (`send must-know operations org:teamsco | Recall | Stop`) to Herald in
    Teams, presses Send on the preview card, and the outbox sends the copies: the notice's id."""
    preview = await rig.say("aad-cam", command)
    notice_id = actions_of(card_of(preview))[0]["data"]["notice_id"]
    await rig.invoke("aad-cam", "herald.send", {"notice_id": notice_id})
    await rig.herald.outbox.drain()
    return notice_id
