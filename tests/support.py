"""End-to-end harness: the real Herald app on a local port, a fake Slack Web API, signed requests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import HERALD_KEY, build_app
from bot.channels.slack_blocks import SEND_ACTION
from bot.core.notices import sending as notices
from bot.common.clock import ManualClock
from bot.core.commands.parser import SendCommand
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.core.directory.workspaces import add_slack_workspace
from bot.service import Herald
from config.settings import load_settings
from tests.fakes.slack_api import Call, FakeSlackAPI
from tests.fakes.slack_signing import interaction_body, signed_headers, slash_command_body
from tests.fakes.slack_socket_mode import FakeSocketMode

SIGNING_SECRET = "test-signing-secret"
APP_TOKEN = "xapp-1-AHERALD-1-test-app-level-token"
TRANSPORTS = ("http", "socket")  # Slack's two ways in: signed requests to /slack/events, or Socket Mode
TEAM = "T0PARTNER"
TOKEN = "xoxb-partner-token"
CAM_USER = "UCAM1"

DIRECTORY_HEADER = ("org_id,org_name,tier,region,country,industry,size,partner_type,cam_email,member_email,"
                    "member_name,role,timezone,locale,slack_team_id,slack_user_id,teams_tenant_id,teams_aad_object_id")


def slack_encoded(text: str) -> str:
    """What Slack puts in a slash command's or a message event's `text` for what the person typed:
    "&", "<" and ">" are its control characters and arrive as &amp; &lt; &gt;
    (api.slack.com/docs/formatting: "& replaced with &amp;, < with &lt;, > with &gt;")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def directory_csv(rows: list[str]) -> str:
    return "\n".join([DIRECTORY_HEADER, *rows]) + "\n"


def many_members_csv(count: int, *, orgs: int = 12) -> str:
    """`count` partner members (no chat accounts) across `orgs` organisations, all managed by
    cam@vendor.example: a CAM whose list replies outgrow one chat message."""
    return directory_csv([
        f"bulk{i % orgs:02d},Bulk Partner {i % orgs:02d} GmbH,silver,emea,de,retail,medium,reseller,cam@vendor.example,"
        f"person{i:05d}@bulk{i % orgs:02d}.example,Person {i:05d} Lastname,sales,Europe/Berlin,de,,,,"
        for i in range(count)])


SAMPLE_DIRECTORY = directory_csv([
    f"acme,Acme Locks,gold,emea,de,security,large,distributor,cam@vendor.example,anna@acme.example,Anna Berg,sales,Europe/Berlin,de,{TEAM},UANNA,,",
    f"acme,Acme Locks,gold,emea,de,security,large,distributor,cam@vendor.example,bo@acme.example,Bo Chen,support,Europe/Berlin,en,{TEAM},UBO,,",
    f"bolt,Bolt Supply,silver,amer,us,retail,small,reseller,cam@vendor.example,cy@bolt.example,Cy Diaz,operations,America/Chicago,en,{TEAM},UCY,,",
    f"keys,Keys & Co,gold,apac,au,retail,medium,reseller,cam@vendor.example,di@keys.example,Di Evans,executive,Australia/Sydney,en,{TEAM},UDI,,",
    "keys,Keys & Co,gold,apac,au,retail,medium,reseller,cam@vendor.example,ed@keys.example,Ed Fox,sales,Australia/Sydney,en,,,,",
])


def in_database(db_url: str, work: Callable[[], Any]) -> Any:
    """Run `work()` (a coroutine function) against `db_url` outside any event loop, as a CLI test
    reads what a command left behind: connect without migrating, run, close."""
    from storage import db as storage_db

    async def run() -> Any:
        await storage_db.connect(db_url, run_migrations=False)
        try:
            return await work()
        finally:
            await storage_db.close()
    return asyncio.run(run())


async def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll a condition that background work (bolt listeners, the worker) will make true.

    This waits on an event, not on wall-clock time passing: it returns as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):  # a coroutine, or a query (tortoise's are awaitables, not coroutines)
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Reply:
    """What Slack got back for a request: the HTTP answer, or a Socket Mode acknowledgement
    (status 200 with the acknowledgement's payload as the body; 504 when none came)."""

    status: int
    body: str

    async def text(self) -> str:
        return self.body


@dataclass
class SlackHarness:
    fake: FakeSlackAPI
    server: TestServer
    app: web.Application
    clock: ManualClock
    session: aiohttp.ClientSession
    transport: str = "http"
    socket: FakeSocketMode | None = None

    @property
    def herald(self) -> Herald:
        return self.app[HERALD_KEY]

    @property
    def events_url(self) -> str:
        return str(self.server.make_url("/slack/events"))

    async def post_signed(self, body: str, *, timestamp: int | None = None, secret: str = SIGNING_SECRET,
                          headers: dict[str, str] | None = None) -> Reply:
        """Deliver a request as Slack would: signed to /slack/events, or as a Socket Mode envelope."""
        if self.transport == "socket":
            return await self._envelope(body)
        all_headers = signed_headers(secret, body, timestamp)
        all_headers.update(headers or {})
        async with self.session.post(self.events_url, data=body.encode(), headers=all_headers) as response:
            return Reply(response.status, await response.text())

    async def _envelope(self, body: str) -> Reply:
        """The Socket Mode envelope Slack sends instead of the HTTP request with this body."""
        assert self.socket is not None
        if body.startswith("{"):
            kind, payload = "events_api", json.loads(body)
        else:
            form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
            kind, payload = ("interactive", json.loads(form["payload"])) if "payload" in form else ("slash_commands", form)
        try:
            acknowledged = await self.socket.send(kind, payload)
        except TimeoutError:
            return Reply(504, "")
        return Reply(200, json.dumps(acknowledged) if acknowledged else "")

    async def command(self, text: str, *, user: str = CAM_USER, team: str = TEAM) -> tuple[Reply, str, str]:
        """Run `/herald <text>`; returns (the answer, its body, the response_url key)."""
        key = f"cmd-{len(self.fake.calls)}-{time.monotonic_ns()}"
        body = slash_command_body(text=text, user_id=user, team_id=team, response_url=self.fake.response_url(key),
                                  channel_id="CCAMDM")
        response = await self.post_signed(body)
        return response, response.body, key

    async def reply(self, text: str, *, user: str = CAM_USER) -> str:
        """`/herald <text>` as a signed slash command; the text Herald answered with (in the
        acknowledgement itself, or through the response_url)."""
        response, body, key = await self.command(text, user=user)
        assert response.status == 200
        if body:
            return body
        (call,) = await self.responses(key)
        return call.args.get("text", "")

    async def responses(self, key: str, count: int = 1) -> list[Call]:
        return await wait_until(lambda: (c := [x for x in self.fake.calls_to("response_url") if x.key == key])
                                and len(c) >= count and c, what=f"response_url {key}")

    async def click(self, action_id: str, value: str, *, user: str, team: str = TEAM,
                    message: dict | None = None, key: str | None = None, extra: dict | None = None) -> Reply:
        """`extra` replaces or adds payload fields as Slack sends them in other set-ups (an
        Enterprise Grid org's `enterprise`, `is_enterprise_install`, a null `team`, a Slack Connect
        user's `user` with their home `team_id`)."""
        key = key or f"click-{time.monotonic_ns()}"
        payload = {
            "type": "block_actions", "team": {"id": team}, "user": {"id": user},
            "api_app_id": "AHERALD", "trigger_id": "trig", "response_url": self.fake.response_url(key),
            "container": {"type": "message"}, "message": message or {},
            "actions": [{"action_id": action_id, "value": value, "type": "button", "block_id": "b"}],
            **(extra or {}),
        }
        self.last_click_key = key
        return await self.post_signed(interaction_body(payload))

    async def submit_view(self, view: dict, *, user: str = CAM_USER, team: str = TEAM,
                          kind: str = "view_submission") -> dict:
        payload = {"type": kind, "team": {"id": team}, "user": {"id": user}, "api_app_id": "AHERALD",
                   "view": {"type": "modal", "id": "VTEST", **view}}
        response = await self.post_signed(interaction_body(payload))
        assert response.status == 200, response.body
        return json.loads(response.body) if response.body else {}


async def start_harness(db_url: str, *, run_worker: bool = False, extra_settings: dict | None = None,
                        transport: str = "http") -> SlackHarness:
    """The real app on a local port. `transport` "socket": Slack over Socket Mode only (an app
    token and no signing secret, so /slack/events does not exist), through a fake Socket Mode server."""
    fake = FakeSlackAPI()
    await fake.start()
    fake.add_workspace(TEAM, TOKEN)
    for user in ("UANNA", "UBO", "UCY", "UDI", CAM_USER, "UOUTSIDER"):
        fake.add_user(TEAM, user)
    socket = None
    slack_settings: dict[str, Any] = {"slack_signing_secret": SIGNING_SECRET}
    if transport == "socket":
        socket = FakeSocketMode()
        await socket.start()
        fake.enable_socket_mode(APP_TOKEN, socket)
        slack_settings = {"slack_app_token": APP_TOKEN}
    settings = load_settings(database_url=db_url, slack_api_url=fake.url, outbox_poll_seconds=3600,
                             **{**slack_settings, **(extra_settings or {})})
    if settings.slack_client_id and settings.slack_client_secret:  # "Add to Slack": Slack knows Herald's app
        fake.add_oauth_app(settings.slack_client_id, settings.slack_client_secret.get_secret_value())
    clock = ManualClock()
    fake.message_clock = lambda: clock.now().timestamp()  # Slack's clock agrees with Herald's
    app = build_app(settings, clock=clock, run_worker=run_worker, manage_database=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession()
    if socket is not None:
        await asyncio.wait_for(socket.connected.wait(), 30)
    return SlackHarness(fake, server, app, clock, session, transport, socket)


async def restart_harness(h: SlackHarness, **changed: Any) -> None:
    """The same deployment after `herald serve` restarted: a new process (HTTP transport) on the same
    database and fake Slack, with the settings `changed` (validated as at start-up; None unsets one);
    nothing in the old one's memory survives."""
    assert h.transport == "http", "a restart over Socket Mode would need the fake to take a new connection"
    await h.server.close()
    settings = h.herald.settings
    if changed:
        kept = {name: getattr(settings, name) for name in settings.model_fields_set}
        settings = load_settings(**{k: v for k, v in {**kept, **changed}.items() if v is not None})
    h.app = build_app(settings, clock=h.clock, run_worker=False, manage_database=False)
    h.server = TestServer(h.app, host="127.0.0.1")
    await h.server.start_server()


@contextlib.asynccontextmanager
async def seeded_slack(db_url: str, *, transport: str = "http",
                       extra_settings: dict | None = None) -> AsyncIterator[SlackHarness]:
    """`start_harness` with the sample directory seeded, stopped on leaving."""
    harness = await start_harness(db_url, transport=transport, extra_settings=extra_settings)
    await seed_directory(harness.clock)
    try:
        yield harness
    finally:
        await stop_harness(harness)


def hold_publish(monkeypatch: Any) -> tuple[asyncio.Event, list[asyncio.Task]]:
    """`sending.publish` (a Send's outbox rows) waits for the returned event: the write of a large
    audience, taking as long as the test wants. The tasks it ran in are listed (cancelling them is
    the process dying while the rows are written)."""
    release, tasks = asyncio.Event(), []
    real = notices.publish

    async def held(*args: Any, **kwargs: Any) -> Any:
        tasks.append(asyncio.current_task())
        await release.wait()
        return await real(*args, **kwargs)
    monkeypatch.setattr(notices, "publish", held)
    return release, tasks


async def stop_harness(h: SlackHarness) -> None:
    await h.session.close()
    await h.server.close()
    if h.socket is not None:
        await h.socket.stop()
    await h.fake.stop()


async def seed_directory(clock: ManualClock, *, csv_text: str = SAMPLE_DIRECTORY) -> None:
    result = await import_directory(csv_text, now=clock.now(), actor="test")
    assert not result.rejected, result.rejected
    await add_slack_workspace(TEAM, TOKEN, now=clock.now(), actor="test")
    await add_staff("cam@vendor.example", "cam", name="Casey CAM", slack_user=CAM_USER, slack_team=TEAM,
                    now=clock.now(), actor="test")


async def bulk_members(n: int, *, joined_at: datetime, org_external_id: str = "bulk",
                       platform_account: bool = True) -> list[int]:
    """`n` active members in Europe/Berlin of one new organisation (CAM cam@vendor.example), each
    with a Slack account in the rig's workspace unless told otherwise. Returns their ids, in order."""
    from storage.models import Member, Organisation, PlatformAccount

    org = await Organisation.create(external_id=org_external_id, name="Bulk Partner GmbH", tier="gold",
                                    region="emea", cam_email="cam@vendor.example")
    await Member.bulk_create([
        Member(organisation_id=org.id, email=f"m{i:05d}@bulk.example", name=f"Member {i:05d}", role="sales",
               timezone="Europe/Berlin", joined_at=joined_at) for i in range(n)], batch_size=500)
    ids = list(await Member.filter(organisation_id=org.id).order_by("id").values_list("id", flat=True))
    if platform_account:
        await PlatformAccount.bulk_create([
            PlatformAccount(member_id=m, platform="slack", workspace_external_id=TEAM, user_id=f"UB{m}",
                            dm_channel=f"DUB{m}") for m in ids], batch_size=500)
    return ids


async def broadcast(herald: Herald, clock: ManualClock, audience: str, *, title: str = "Recall",
                    body: str = "Stop selling LX-200", variants: tuple = ()) -> int:
    """Send a must-know notice to `audience` as the operator (no preview round trip); its id."""
    command = SendCommand(importance="must-know", topic="announcements", audience=audience, title=title, body=body,
                          variants=variants)
    preview = await notices.create_draft(None, command, herald.catalog, now=clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, herald.catalog, now=clock.now(), operator="test")
    return preview.notice.id


async def updates_pushed(herald: Herald) -> None:
    """Every click written, the clicks' own pushes of their copies' updates done (Herald.acknowledged
    starts them as tasks), and then whatever else is due now sent (the outbox, as its worker would)."""
    await herald.settle()
    while herald._pushes:
        await asyncio.wait(list(herald._pushes))
    await herald.outbox.drain()


class Rig:
    def __init__(self, fake: FakeSlackAPI, herald: Herald, clock: ManualClock) -> None:
        self.fake, self.herald, self.clock = fake, herald, clock

    async def broadcast(self, audience: str = "all", importance: str = "must-know", *, topic: str = "announcements",
                        deadline=None, scheduled_at=None) -> int:  # noqa: ANN001
        command = SendCommand(importance=importance, topic=topic, audience=audience, title="Recall",
                              body="Stop selling LX-200", deadline=deadline, scheduled_at=scheduled_at)
        preview = await notices.create_draft(None, command, self.herald.catalog, now=self.clock.now(), operator="test")
        await notices.send_draft(preview.notice.id, None, self.herald.catalog, now=self.clock.now(), operator="test")
        return preview.notice.id

    def another_worker(self) -> Herald:
        return Herald(self.herald.settings, clock=self.clock, catalog=self.herald.catalog)


async def start_rig(db_url: str) -> Rig:
    fake = FakeSlackAPI()
    await fake.start()
    fake.add_workspace(TEAM, TOKEN)
    for user in ("UANNA", "UBO", "UCY", "UDI", CAM_USER):
        fake.add_user(TEAM, user)
    clock = ManualClock()
    fake.message_clock = lambda: clock.now().timestamp()  # Slack's clock agrees with Herald's
    settings = load_settings(database_url=db_url, slack_signing_secret="s", slack_api_url=fake.url,
                             delivery_batch_size=50)
    herald = Herald(settings, clock=clock)
    await seed_directory(clock)
    return Rig(fake, herald, clock)


async def stop_rig(rig: Rig) -> None:
    await rig.herald.close()
    await rig.fake.stop()


def crashes(caplog: Any) -> list[str]:
    """What a pytest ``caplog`` holds that means something crashed: ERROR or worse, or a traceback."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def listeners_done(h: SlackHarness) -> None:
    """Bolt runs listeners after the ack, in tasks: wait until every one of them has finished.

    The app hands each listener's task to ``Herald.answered`` before the listener runs (its
    ``_StopWaitsForListener``), so before Slack hears the ack: ``Herald.settle`` waits for them, and
    for the work they start after the ack, as a stop does."""
    await h.herald.settle()


def modal_state(selects: tuple[str, ...], **values: str) -> dict:
    """A modal's `state.values` as Slack sends it on submission: the blocks named in `selects` are
    static selects, the others plain text inputs (each block's one element is named "value")."""
    return {block: {"value": {"type": "static_select", "selected_option": {"value": value}}} if block in selects
            else {"value": {"type": "plain_text_input", "value": value}} for block, value in values.items()}


def block_texts(blocks: list[dict]) -> str:
    """The text of a Slack message's sections and context/action elements, one per line."""
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            text = element.get("text")
            out.append(text.get("text", "") if isinstance(text, dict) else (text or ""))
    return "\n".join(out)


async def preview_notice(slack: SlackHarness, text: str) -> tuple[str, int]:
    """`/herald <text>` as the CAM: the preview's text and the draft's id (its Send button; 0: none)."""
    response, _, key = await slack.command(text)
    assert response.status == 200, response.body
    (call,) = await slack.responses(key)
    blocks = call.args.get("blocks") or []
    notice_id = next((int(e["value"]) for b in blocks if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == SEND_ACTION), 0)
    return block_texts(blocks) or call.args.get("text", ""), notice_id


async def add_partner_contact(slack: SlackHarness, row: str, user: str) -> None:
    """One more partner contact (with a Slack account the fake knows) in the seeded directory."""
    slack.fake.add_user(TEAM, user)
    result = await import_directory(directory_csv([row]), now=slack.clock.now(), actor="test")
    assert not result.rejected, result.rejected
