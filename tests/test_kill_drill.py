"""The kill -9 drills (issue 12): `herald serve` in its own process sends a must-know notice to a
few hundred members of a fake Slack workspace and is SIGKILLed mid-broadcast. Either it is started
again, or a second replica already running takes its work over. Nothing is lost, nothing is sent
twice, only the requests that were in flight are looked for in the conversation history, and the
work resumes within 15 s (the lane lease, HERALD_DELIVERY_LEASE_SECONDS)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from bot.core.commands.parser import SendCommand
from bot.core.directory.importer import import_directory
from bot.core.directory.workspaces import add_slack_workspace
from bot.core.notices import sending as notices
from bot.topics import load_catalog
from config.settings import load_settings
from storage import db as storage_db
from bot.core.notices.views import ACK_ACTION
from storage.models import Acknowledgement, Delivery, OutboundMessage
from tests.conftest import POSTGRES_ONLY
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_signing import interaction_body, signed_headers
from tests.support import TEAM, TOKEN, directory_csv, wait_until

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = 300
RATE = 100  # HERALD_SLACK_MAX_PER_SECOND: the broadcast takes about 3 s
LANE_INFLIGHT = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _workspace_and_notice(fake: FakeSlackAPI, db_url: str, users: list[str]) -> int:
    """The workspace with its members in the fake Slack, and a must-know notice queued to them."""
    fake.add_workspace(TEAM, TOKEN)
    for user in users:
        fake.add_user(TEAM, user)
    return await _seed(db_url, users)


async def _seed(db_url: str, users: list[str]) -> int:
    """The directory, the workspace and a must-know notice to everyone (its outbox rows written)."""
    now = datetime.now(timezone.utc)
    await storage_db.connect(db_url, run_migrations=False)
    try:
        rows = [f"acme,Acme,gold,emea,de,retail,large,reseller,cam@vendor.example,m{i}@acme.example,M {i},sales,UTC,en,"
                f"{TEAM},{user},," for i, user in enumerate(users)]
        result = await import_directory(directory_csv(rows), now=now, actor="test")
        assert not result.rejected, result.rejected
        await add_slack_workspace(TEAM, TOKEN, now=now, actor="test")
        catalog = load_catalog(load_settings(database_url=db_url).topics_file)
        command = SendCommand(importance="must-know", topic="announcements", audience="all", title="Recall",
                              body="Stop selling LX-200")
        preview = await notices.create_draft(None, command, catalog, now=now, operator="test")
        await notices.send_draft(preview.notice.id, None, catalog, now=now, operator="test")
        return preview.notice.id
    finally:
        await storage_db.close()


def _serve(db_url: str, fake: FakeSlackAPI, tmp_path: Path, *, rate: int = RATE,
           port: int | None = None, **settings: str) -> subprocess.Popen:
    """`herald serve` in its own process; `settings` are more HERALD_* values (tick_seconds="0.5")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), HERALD_DATABASE_URL=db_url, HERALD_SLACK_API_URL=fake.url,
               HERALD_SLACK_SIGNING_SECRET="drill", HERALD_SLACK_MAX_PER_SECOND=str(rate),
               HERALD_DELIVERY_LANE_INFLIGHT=str(LANE_INFLIGHT), HERALD_OUTBOX_POLL_SECONDS="1",
               HERALD_KB_SEMANTIC="false", HERALD_CACHE_DIR=str(tmp_path / "cache"), HERALD_HOST="127.0.0.1")
    env.update({f"HERALD_{k.upper()}": v for k, v in settings.items()})
    log = open(tmp_path / "serve.log", "a")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port or _free_port())],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)


async def _healthy(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def _stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_kill_9_mid_broadcast_loses_and_duplicates_nothing(db_url: str, tmp_path: Path) -> None:
    users = [f"UK{i}" for i in range(MEMBERS)]
    async with FakeSlackAPI() as fake:
        notice_id = await _workspace_and_notice(fake, db_url, users)
        first = _serve(db_url, fake, tmp_path)
        try:
            await wait_until(lambda: fake.call_count("chat.postMessage") >= MEMBERS // 3, timeout=60,
                             what="the first replica half-way through the broadcast")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            _stop(first)
        at_kill = fake.call_count("chat.postMessage")
        assert at_kill < MEMBERS, "killed too late: the broadcast had finished"

        started = time.monotonic()
        second = _serve(db_url, fake, tmp_path)
        try:
            await wait_until(lambda: fake.call_count("chat.postMessage") > at_kill, timeout=60, what="resuming")
            resumed_after = time.monotonic() - started
            await wait_until(lambda: all(fake.messages(fake.dm_channel_id(u)) for u in users), timeout=60,
                             what="every member reached")
            second.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            second.wait(15)
            stopped_after = time.monotonic() - stopping
        finally:
            _stop(second)
        output = (tmp_path / "serve.log").read_text()

    print(f"drill: killed after {at_kill} posts, resumed after {resumed_after:.1f} s, history calls "
          f"{fake.call_count('conversations.history')}, SIGTERM stop {stopped_after:.1f} s")
    await _assert_each_member_reached_once(fake, users, db_url, notice_id, output)
    assert resumed_after < 15, f"resumed after {resumed_after:.1f} s"
    assert stopped_after < 10, f"SIGTERM took {stopped_after:.1f} s"


async def _assert_each_member_reached_once(fake: FakeSlackAPI, users: list[str], db_url: str, notice_id: int,
                                           output: str) -> None:
    """One copy in every member's DM, only the in-flight requests looked for in the history, no
    traceback in the servers' log, and every delivery recorded as delivered."""
    counts = [len(fake.messages(fake.dm_channel_id(u))) for u in users]
    assert counts.count(0) == 0, "missing"
    assert max(counts) == 1, f"{sum(c - 1 for c in counts if c > 1)} duplicates"
    assert fake.call_count("conversations.history") <= LANE_INFLIGHT
    assert "Traceback" not in output, output[-3000:]
    await storage_db.connect(db_url, run_migrations=False)
    try:
        statuses = await Delivery.filter(notice_id=notice_id).values_list("status", flat=True)
    finally:
        await storage_db.close()
    assert len(statuses) == len(users) and set(statuses) == {"delivered"}


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
async def test_kill_9_of_one_of_two_replicas_hands_its_work_to_the_other(db_url: str, tmp_path: Path) -> None:
    """Two replicas, one workspace: the first holds the workspace's lane and sends; the second,
    up and idle, takes the lane over once the killed one's lease runs out."""
    users = [f"UF{i}" for i in range(MEMBERS)]
    rate = 25  # the broadcast takes about 12 s: the second replica is up long before it ends
    async with FakeSlackAPI() as fake:
        notice_id = await _workspace_and_notice(fake, db_url, users)
        first = _serve(db_url, fake, tmp_path, rate=rate)
        second_port = _free_port()
        second = None
        try:
            await wait_until(lambda: fake.call_count("chat.postMessage") >= 10, timeout=60,
                             what="the first replica sending (it holds the lane)")
            # Slack answers the first replica's posts slowly until it is killed (each after 2 s, well
            # within its 20 s timeout: 8 in flight, 4 a second): however long the second replica
            # takes to start on a loaded machine (up to the 60 s it is given), the broadcast is still
            # mid-way at the kill, with posts in flight that land after it, as a post whose answer is lost
            fake.delay("chat.postMessage", 2.0)
            second = _serve(db_url, fake, tmp_path, rate=rate, port=second_port)
            await wait_until(lambda: _healthy(second_port), timeout=60, what="the second replica up")
            first.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            first.wait(10)
            at_kill = fake.call_count("chat.postMessage")
            fake.delay("chat.postMessage", 0)
            assert at_kill < MEMBERS, "killed too late: the broadcast had finished"
            await wait_until(lambda: fake.call_count("chat.postMessage") > at_kill, timeout=60,
                             what="the second replica taking the work over")
            taken_over_after = time.monotonic() - killed
            await wait_until(lambda: all(fake.messages(fake.dm_channel_id(u)) for u in users), timeout=90,
                             what="every member reached")
            second.send_signal(signal.SIGTERM)  # it records the last outcomes before it exits
            second.wait(15)
        finally:
            _stop(first, *([second] if second else []))
        output = (tmp_path / "serve.log").read_text()

    print(f"failover drill: killed after {at_kill} posts, the other replica sent again after "
          f"{taken_over_after:.1f} s, history calls {fake.call_count('conversations.history')}")
    await _assert_each_member_reached_once(fake, users, db_url, notice_id, output)
    assert taken_over_after < 15, f"taken over after {taken_over_after:.1f} s"


async def test_sigterm_in_a_burst_of_clicks_keeps_every_click_slack_was_answered_for(db_url: str,
                                                                                     tmp_path: Path) -> None:
    """Bolt answers Slack at ack(), and the Acknowledge listener writes the click after it (waiting
    for the write would keep Bolt's 10 ms poll loop spinning for every waiting click). Slack never
    sends an answered click again, so a stop must write every click already answered: SIGTERM in
    the middle of a burst of clicks, and each click that got its 200 is in the database."""
    users = [f"UT{i}" for i in range(MEMBERS)]
    port = _free_port()
    async with FakeSlackAPI() as fake:
        notice_id = await _workspace_and_notice(fake, db_url, users)
        server = _serve(db_url, fake, tmp_path, port=port)
        try:
            await wait_until(lambda: all(fake.messages(fake.dm_channel_id(u)) for u in users), timeout=60,
                             what="every member reached")
            answered, statuses = await _click_and_stop(server, port, users, notice_id, fake)
            # not server.wait(): the fake Slack answers the clicks' response_urls on this event
            # loop, and the stop waits for those answers (it drains for HERALD_DRAIN_SECONDS first)
            await wait_until(lambda: server.poll() is not None, timeout=30, what="the server stopped")
        finally:
            _stop(server)
        output = (tmp_path / "serve.log").read_text()

    await storage_db.connect(db_url, run_migrations=False)
    try:
        emails = await Acknowledgement.filter(notice_id=notice_id).values_list("member__email", flat=True)
    finally:
        await storage_db.close()
    recorded = {users[int(email.split("@")[0][1:])] for email in emails}
    print(f"click drill: {len(answered)} clicks answered 200 before the stop, {len(recorded)} recorded, "
          f"statuses {statuses}")
    assert len(answered) >= 30
    assert answered <= recorded, f"{len(answered - recorded)} clicks answered 200 were not recorded"
    assert "Traceback" not in output, output[-3000:]


async def _click_and_stop(server: subprocess.Popen, port: int, users: list[str], notice_id: int,
                          fake: FakeSlackAPI) -> tuple[set[str], dict[str, int]]:
    """Every member clicks Acknowledge at once; SIGTERM once 30 clicks are answered. Returns the
    members whose click got a 200, and the outcomes by kind."""
    enough = asyncio.Event()
    answered: set[str] = set()
    statuses: dict[str, int] = {}

    async def click(session: aiohttp.ClientSession, user: str) -> None:
        payload = {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "AHERALD",
                   "trigger_id": "trig", "response_url": fake.response_url(f"drill-{user}"),
                   "container": {"type": "message"}, "message": {},
                   "actions": [{"action_id": ACK_ACTION, "value": str(notice_id), "type": "button", "block_id": "b"}]}
        body = interaction_body(payload)
        try:
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                    headers=signed_headers("drill", body)) as response:
                outcome = str(response.status)
                if response.status == 200:
                    answered.add(user)
        except aiohttp.ClientError as exc:
            outcome = type(exc).__name__
        statuses[outcome] = statuses.get(outcome, 0) + 1
        if len(answered) >= 30:
            enough.set()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        clicks = [asyncio.create_task(click(session, user)) for user in users]
        await asyncio.wait([asyncio.create_task(enough.wait()), *clicks], return_when=asyncio.FIRST_COMPLETED)
        await enough.wait()
        server.send_signal(signal.SIGTERM)
        await asyncio.gather(*clicks)
    return answered, statuses


async def _add_slack_staff(db_url: str, email: str, role: str, user: str) -> None:
    from bot.core.directory.staff import add_staff

    await storage_db.connect(db_url, run_migrations=False)
    try:
        await add_staff(email, role, slack_user=user, slack_team=TEAM, now=datetime.now(timezone.utc), actor="test")
    finally:
        await storage_db.close()


async def _post_signed(port: int, body: str, secret: str = "drill") -> int:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}/slack/events", data=body.encode(), headers={
                **signed_headers(secret, body), "Content-Type": "application/x-www-form-urlencoded"}) as response:
        return response.status


async def test_sigterm_after_slack_was_answered_still_finishes_the_slash_commands_work(db_url: str,
                                                                                       tmp_path: Path) -> None:
    """A compliance officer types `/herald report N` during a rolling deploy: Herald acks the
    command (Slack hears 200 and never sends it again), writes `report.exported` to the audit
    trail, and is still opening the DM to upload the CSV when SIGTERM arrives. The stop finishes
    the work Slack was answered for (bolt's listener tasks are awaited by `Herald.settle`): the
    CSV arrives and the officer gets the reply. (It used to exit in 1 s with neither.)"""
    from storage.models import AuditEvent
    from tests.fakes.slack_signing import slash_command_body

    users = [f"UR{i}" for i in range(3)]
    port = _free_port()
    async with FakeSlackAPI() as fake:
        notice_id = await _workspace_and_notice(fake, db_url, users)
        fake.add_user(TEAM, "UCOMP")
        await _add_slack_staff(db_url, "officer@vendor.example", "compliance", "UCOMP")
        server = _serve(db_url, fake, tmp_path, port=port)
        try:
            await wait_until(lambda: all(fake.messages(fake.dm_channel_id(u)) for u in users), timeout=60,
                             what="the notice delivered")
            fake.delay("conversations.open", 2.0)  # Slack answering slowly (it is Tier 4: it happens)
            body = slash_command_body(text=f"report {notice_id}", team_id=TEAM, user_id="UCOMP",
                                      response_url=fake.response_url("report"))
            assert await _post_signed(port, body) == 200  # Slack was answered: it never sends this again
            await wait_until(lambda: fake.call_count("conversations.open") >= 1, timeout=10,
                             what="the report being delivered (its DM being opened)")
            server.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            # not server.wait(): the fake Slack answers on this event loop, and the stop waits for it
            await wait_until(lambda: server.poll() is not None, timeout=30, what="the server stopped")
            stopped_after = time.monotonic() - stopping
        finally:
            _stop(server)
        uploads = fake.call_count("files.completeUploadExternal")
        replies = fake.call_count("response_url")
    await storage_db.connect(db_url, run_migrations=False)
    try:
        exported = await AuditEvent.filter(kind="report.exported", notice_id=notice_id).count()
    finally:
        await storage_db.close()
    assert exported == 1
    assert uploads == 1 and replies >= 1, (
        f"SIGTERM {stopped_after:.1f} s after the 200: the report's CSV uploads={uploads}, replies to the officer="
        f"{replies}, yet the audit trail says report.exported (x{exported}): the answered command's work was dropped")


async def _settled(db_url: str) -> bool:
    """No notice delivery and no other message is waiting or being sent."""
    await storage_db.connect(db_url, run_migrations=False)
    try:
        busy = ["pending", "sending"]
        return not await Delivery.filter(status__in=busy).exists() and \
            not await OutboundMessage.filter(status__in=busy).exists()
    finally:
        await storage_db.close()


async def _answers_queued(db_url: str, fake: FakeSlackAPI, users: list[str]) -> None:
    """The workspace and its members, no notice, and one queued assistant answer for each member
    (`ANSWER`: what the outbox sends when Slack throttled answering at once). Not their journey
    steps: those wait for the member's working hours (weekdays, outside quiet hours) on the real
    clock `herald serve` runs on, so a drill built on them failed every evening and weekend. The
    members join next year, so the journeys' tick queues nothing for them meanwhile."""
    from bot.core.delivery.messages import Target, enqueue
    from bot.core.ports import DirectMessage
    from storage.models import Member, MessagePurpose, PlatformAccount

    fake.add_workspace(TEAM, TOKEN)
    for user in users:
        fake.add_user(TEAM, user)
    now = datetime.now(timezone.utc)
    await storage_db.connect(db_url, run_migrations=False)
    try:
        rows = [f"acme,Acme,gold,emea,de,retail,large,reseller,cam@vendor.example,j{i}@acme.example,J {i},sales,UTC,"
                f"en,{TEAM},{user},," for i, user in enumerate(users)]
        result = await import_directory(directory_csv(rows), now=now, actor="test")
        assert not result.rejected, result.rejected
        await add_slack_workspace(TEAM, TOKEN, now=now, actor="test")
        await Member.all().update(joined_at=now + timedelta(days=365))
        for n, account in enumerate(await PlatformAccount.filter(platform="slack").order_by("id")):
            assert await enqueue(key=f"answer:drill:{n}", purpose=MessagePurpose.ANSWER, reference=0,
                                 target=Target.of_account(account), now=now, member_id=account.member_id,  # type: ignore[attr-defined]
                                 message=DirectMessage(title="Your answer", lines=(f"Answer {n}",)))
    finally:
        await storage_db.close()


async def test_kill_9_loses_no_queued_message_that_was_never_sent(db_url: str, tmp_path: Path) -> None:
    """README: "after kill -9 only the requests that were in flight are in doubt", and a plain
    message (journey step, digest, escalation, hand-off, relayed answer) "that was in flight when a
    replica died is not sent again". A lane claims up to HERALD_DELIVERY_LANE_INFLIGHT rows at
    once, and they wait for the workspace's pace before their request: every claimed row used to
    be settled as *interrupted* after a kill, also those whose request never left, so those members
    never got their message (their first onboarding step, when this was found). Now only a row
    whose request had started is in doubt."""
    users = [f"UJ{i}" for i in range(30)]
    settings = dict(tick_seconds="0.5", slack_max_per_second="2")
    async with FakeSlackAPI() as fake:
        await _answers_queued(db_url, fake, users)
        first = _serve(db_url, fake, tmp_path, **settings)
        try:
            await wait_until(lambda: fake.call_count("chat.postMessage") >= 1, timeout=60,
                             what="the first answer posted")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            _stop(first)
        at_kill = fake.call_count("chat.postMessage")
        second = _serve(db_url, fake, tmp_path, **settings)
        try:
            await wait_until(lambda: _settled(db_url), timeout=90, what="every queued answer settled")
            second.send_signal(signal.SIGTERM)
            second.wait(15)
        finally:
            _stop(second)
        reached = [u for u in users if fake.messages(fake.dm_channel_id(u))]
        twice = [u for u in users if len(fake.messages(fake.dm_channel_id(u))) > 1]
    await storage_db.connect(db_url, run_migrations=False)
    try:
        interrupted = await OutboundMessage.filter(error__contains="Herald stopped while sending").count()
    finally:
        await storage_db.close()
    missing = len(users) - len(reached)
    assert missing == 0, (
        f"killed after {at_kill} posts (at most one request on the wire at 2/s): {interrupted} queued answers "
        f"settled as interrupted, {missing} members never got their answer though Slack never saw a request "
        f"for it")
    assert not twice and interrupted <= 1, f"sent twice to {twice}; {interrupted} in doubt (only the one on the wire may be)"
