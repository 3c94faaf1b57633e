"""The fake Bot Connector's limits mode: Microsoft's per-tenant and per-conversation limits,
429 + Retry-After, injected transient failures and the counters, over real HTTP with a manual clock."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.core.ports import OutcomeKind, Recipient
from bot.channels.teams import TeamsChannel
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.rate_limits import ManualMonotonic, Rate, WindowLog
from tests.fakes.seeding import generated_tenant
from tests.fakes.teams_limits import SEND_WINDOWS, TeamsLimits
from tests.test_teams_channel import view

TENANT = "tenant-1"
BOT = {"id": "28:herald", "name": "Herald"}


@pytest.fixture
def clock() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def limited(clock: ManualMonotonic) -> AsyncIterator[FakeBotConnector]:
    async with FakeBotConnector(limits=TeamsLimits(), clock=clock) as fake:
        yield fake


class Answer:
    def __init__(self, status: int, headers: Any, body: Any) -> None:
        self.status, self.headers, self.body = status, headers, body


async def create(http: aiohttp.ClientSession, fake: FakeBotConnector, user: str, tenant: str = TENANT) -> Answer:
    body = {"bot": BOT, "members": [{"id": user}], "tenantId": tenant, "isGroup": False}
    async with http.post(f"{fake.url}v3/conversations", json=body) as r:
        return Answer(r.status, r.headers, await r.json())


async def send(http: aiohttp.ClientSession, fake: FakeBotConnector, conversation: str, text: str = "hi") -> Answer:
    async with http.post(f"{fake.url}v3/conversations/{conversation}/activities",
                         json={"type": "message", "text": text}) as r:
        return Answer(r.status, r.headers, await r.json())


async def update(http: aiohttp.ClientSession, fake: FakeBotConnector, conversation: str, activity: str) -> Answer:
    async with http.put(f"{fake.url}v3/conversations/{conversation}/activities/{activity}",
                        json={"type": "message", "text": "edited"}) as r:
        return Answer(r.status, r.headers, await r.json())


def assert_throttled(answer: Answer, retry_after: str | None) -> None:
    assert answer.status == 429
    assert answer.headers.get("Retry-After") == retry_after
    assert answer.body["error"]["code"] == "TooManyRequests"


async def test_per_conversation_windows_of_one_and_two_seconds(
        limited: FakeBotConnector, http: aiohttp.ClientSession, clock: ManualMonotonic) -> None:
    conversation = limited.open_conversation("aad-anna", TENANT)
    for n in range(7):  # 7 in any 1 s
        assert (await send(http, limited, conversation, f"m{n}")).status == 201
    assert_throttled(await send(http, limited, conversation), "1")
    other = limited.open_conversation("aad-ben", TENANT)
    assert (await send(http, limited, other)).status == 201  # another conversation: its own windows

    clock.advance(1.0)
    assert (await send(http, limited, conversation)).status == 201  # the 8th in 2 s
    assert_throttled(await send(http, limited, conversation), "1")  # 8 in 2 s: wait for the first to age out
    clock.advance(1.0)
    assert (await send(http, limited, conversation)).status == 201
    assert len(limited.activities(conversation)) == 9


async def test_update_counts_against_its_conversation(
        limited: FakeBotConnector, http: aiohttp.ClientSession) -> None:
    conversation = limited.open_conversation("aad-anna", TENANT)
    first = (await send(http, limited, conversation)).body["id"]
    for _ in range(6):
        assert (await update(http, limited, conversation, first)).status == 200
    assert_throttled(await update(http, limited, conversation, first), "1")
    assert limited.limits_stats()["throttled"]["by_tenant"] == {TENANT: {"update_activity": 1}}


async def test_create_conversation_has_its_own_per_conversation_windows(
        limited: FakeBotConnector, http: aiohttp.ClientSession) -> None:
    for _ in range(7):  # creating (finding) the same 1:1 chat again and again
        assert (await create(http, limited, "aad-anna")).status == 201
    assert_throttled(await create(http, limited, "aad-anna"), "1")
    conversation = limited.conversation_id("aad-anna")
    assert (await send(http, limited, conversation)).status == 201  # sending is a separate scenario


async def test_fifty_requests_a_second_per_tenant(
        limited: FakeBotConnector, http: aiohttp.ClientSession, clock: ManualMonotonic) -> None:
    for n in range(50):  # one request per member: no conversation limit applies
        assert (await create(http, limited, f"aad-{n}")).status == 201
    assert_throttled(await create(http, limited, "aad-50"), "1")
    assert_throttled(await send(http, limited, limited.conversation_id("aad-0")), "1")
    assert (await create(http, limited, "aad-50", tenant="tenant-2")).status == 201  # per tenant
    clock.advance(0.02)  # one token back at 50 a second
    assert (await send(http, limited, limited.conversation_id("aad-0"))).status == 201
    assert_throttled(await send(http, limited, limited.conversation_id("aad-1")), "1")
    stats = limited.limits_stats()
    assert stats["throttled"]["by_reason"] == {"tenant": 3}
    assert stats["accepted"]["by_tenant"] == {TENANT: {"create_conversation": 50, "send_activity": 1},
                                              "tenant-2": {"create_conversation": 1}}


async def test_retry_after_can_be_left_out_and_rates_scaled(
        clock: ManualMonotonic, http: aiohttp.ClientSession) -> None:
    limits = TeamsLimits(per_tenant=Rate(2, 1.0), retry_after=False, scale=10)
    async with FakeBotConnector(limits=limits, clock=clock) as fake:
        for n in range(2):
            assert (await create(http, fake, f"aad-{n}")).status == 201
        assert_throttled(await create(http, fake, "aad-2"), None)
        clock.advance(0.05)  # 2 a second, scaled by 10
        assert (await create(http, fake, "aad-2")).status == 201
        assert fake.limits_stats()["retry_after"] == {}


async def test_injected_transient_failures(clock: ManualMonotonic, http: aiohttp.ClientSession) -> None:
    limits = TeamsLimits(transient_rate=1.0, transient_statuses=(502,), transient_applied=1.0)
    async with FakeBotConnector(limits=limits, clock=clock) as fake:
        conversation = fake.open_conversation("aad-anna", TENANT)
        answer = await send(http, fake, conversation)
        assert answer.status == 502 and answer.body["error"]["code"] == "BadGateway"
        assert len(fake.activities(conversation)) == 1  # the gateway failed, the send happened

        fake.set_limits(TeamsLimits(transient_rate=1.0, transient_statuses=(412,), transient_applied=1.0))
        answer = await send(http, fake, conversation)
        assert answer.status == 412 and answer.body["error"]["code"] == "PreconditionFailed"
        assert len(fake.activities(conversation)) == 1  # a 412 never carries the operation out
        assert fake.limits_stats()["transient"] == {
            "total": 2, "by_status": {"502": 1, "412": 1}, "by_method": {"send_activity": {"502": 1, "412": 1}}}


async def test_transient_failures_are_drawn_from_a_seeded_stream(clock: ManualMonotonic) -> None:
    async def statuses(seed: int) -> list[int]:
        async with FakeBotConnector(limits=TeamsLimits(transient_rate=0.3, seed=seed), clock=clock) as fake, \
                aiohttp.ClientSession() as session:
            found = []
            for n in range(40):
                clock.advance(1.0)
                found.append((await create(session, fake, f"aad-{n}")).status)
            return found

    first = await statuses(7)
    assert first == await statuses(7)
    assert {s for s in first if s != 201} <= {412, 502, 504} and 201 in first and len(set(first)) > 1


async def test_injected_429_and_transient_faults_are_counted(
        limited: FakeBotConnector, http: aiohttp.ClientSession) -> None:
    conversation = limited.open_conversation("aad-anna", TENANT)
    limited.fail_next("send_activity", 429, retry_after=4)
    limited.fail_next("send_activity", 504)
    assert_throttled(await send(http, limited, conversation), "4")
    assert (await send(http, limited, conversation)).status == 504
    assert (await send(http, limited, conversation)).status == 201
    stats = limited.limits_stats()
    assert stats["throttled"]["by_reason"] == {"injected": 1}
    assert stats["retry_after"] == {"send_activity": {"4": 1}}
    assert stats["transient"]["by_status"] == {"504": 1}
    assert stats["accepted"]["total"] == 1


async def test_limits_are_off_by_default(http: aiohttp.ClientSession) -> None:
    async with FakeBotConnector() as fake:
        conversation = fake.open_conversation("aad-anna", TENANT)
        for _ in range(20):
            assert (await send(http, fake, conversation)).status == 201
        assert fake.limits_stats()["limits"] is None and fake.limits_stats()["throttled"]["total"] == 0


async def test_teams_channel_reads_a_limits_mode_429_as_a_throttled_retry(limited: FakeBotConnector) -> None:
    conversation = limited.open_conversation("aad-anna", TENANT)
    async with aiohttp.ClientSession() as http:
        for _ in range(7):
            await send(http, limited, conversation)
    channel = TeamsChannel(None, None)
    try:
        recipient = Recipient(workspace_id=TENANT, user_id="aad-anna", service_url=limited.url,
                              dm_channel=conversation)
        outcome = await channel.deliver(recipient, view(), delivery_id=1, maybe_sent=False)
    finally:
        await channel.close()
    assert outcome.kind is OutcomeKind.RETRY and outcome.throttled and outcome.retry_after == 1.0


def test_window_log_keeps_every_window_of_microsofts_table() -> None:
    log, horizon = WindowLog(), max(seconds for _, seconds in SEND_WINDOWS)
    now = 0.0
    # two a second stays under 7/1 s and 8/2 s; the 30 s window (60) is what refuses the 61st
    for n in range(60):
        now = n * 0.5
        assert log.wait(now, SEND_WINDOWS, horizon) == 0.0
        log.record(now)
    assert log.wait(now + 0.5, SEND_WINDOWS, horizon) == 0.0  # the first has aged out of the 30 s window
    assert log.wait(now, SEND_WINDOWS, horizon) == pytest.approx(0.5)
    # the hour's 1800: fill it with one every 2 s, then the 1801st waits for the first to age out
    log, now = WindowLog(), 0.0
    for n in range(1800):
        now = n * 2.0
        assert log.wait(now, SEND_WINDOWS, horizon) == 0.0
        log.record(now)
    assert log.wait(now + 2.0, SEND_WINDOWS, horizon) == pytest.approx(3600.0 - (now + 2.0))
    assert log.wait(3600.0, SEND_WINDOWS, horizon) == 0.0


async def test_control_routes_seed_switch_limits_and_report_over_http(
        clock: ManualMonotonic, http: aiohttp.ClientSession) -> None:
    async with FakeBotConnector(clock=clock, record_calls=False) as fake:
        base = fake.url
        spec = {"tenants": [generated_tenant(0, 3, open_conversations=True), generated_tenant(1, 5)],
                "roster": [{"id": "aad-0000-000001", "email": "a@p.example"}]}
        async with http.post(f"{base}_fake/seed", json=spec) as r:
            assert (await r.json())["seeded"] == {"tenants": 2, "conversations": 3, "roster": 1}
        assert fake.conversation_party(fake.conversation_id("aad-0000-000002")) == ("tenant-0000", "aad-0000-000002")
        async with http.post(f"{base}_fake/limits", json={"per_tenant": [1, 1.0]}) as r:
            assert (await r.json())["limits"]["per_tenant"] == {"count": 1, "per": 1.0, "burst": 1.0}

        conversation = fake.conversation_id("aad-0000-000001")
        assert (await send(http, fake, conversation, "notice")).status == 201
        assert_throttled(await send(http, fake, conversation), "1")
        async with http.get(f"{base}_fake/stats") as r:
            stats = await r.json()
        assert stats["throttled"]["by_tenant"] == {"tenant-0000": {"send_activity": 1}}
        assert stats["requests"] == {"send_activity": 2}
        async with http.get(f"{base}_fake/activities") as r:
            [activity] = (await r.json())["activities"]
        assert activity["conversation_id"] == conversation and activity["tenant_id"] == "tenant-0000"
        assert activity["text"] == "notice" and activity["edited"] is False
        async with http.post(f"{base}_fake/stats/reset") as r:
            assert r.status == 200
        async with http.post(f"{base}_fake/limits", json={"enabled": False}) as r:
            assert (await r.json())["limits"] is None
        async with http.post(f"{base}_fake/limits", json={"per_tenant": "fast"}) as r:
            assert r.status == 400


async def test_standalone_connector_prints_its_url_and_serves(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.bot_connector", "--limits", "on", "--tenants", "2",
        "--users-per-tenant", "4", "--open-conversations", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        conversation = "a:conv-aad-0001-000003"
        async with http.post(f"{url}v3/conversations/{conversation}/activities",
                             json={"type": "message", "text": "hi"}) as r:
            assert r.status == 201
        async with http.get(f"{url}_fake/stats") as r:
            stats = await r.json()
        assert stats["limits"]["per_tenant"]["count"] == 50
        assert stats["accepted"]["by_tenant"] == {"tenant-0001": {"send_activity": 1}}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0
