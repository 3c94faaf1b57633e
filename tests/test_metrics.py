"""Prometheus metrics over real HTTP: where /metrics is served, the bearer check, bounded labels,
and the values a broadcast, a 429, an acknowledgement and the assistant leave behind."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tortoise import Tortoise

from bot.channels.slack_blocks import SEND_ACTION
from bot.common import metrics
from bot.core.delivery.messages import Target, enqueue
from bot.core.notices.views import ACK_ACTION
from bot.core.onboarding.assistant import ask
from bot.core.onboarding.qa import KnowledgeBase
from bot.core.ports import DirectMessage, Recipient
from bot.ops.metrics_http import open_outbox
from storage import db as storage_db
from storage.models import Acknowledgement, AuditChainHead, Delivery, Member, MessagePurpose, OutboundMessage
from tests.query_plans import uses_an_index_on
from tests.support import CAM_USER, TEAM, SlackHarness, seed_directory, start_harness, stop_harness, wait_until

METRICS_TOKEN = "metrics-token-0123456789"


@pytest.fixture
async def served(db: str) -> AsyncIterator[SlackHarness]:
    harness = await start_harness(db, extra_settings={"metrics_token": METRICS_TOKEN})
    await seed_directory(harness.clock)
    try:
        yield harness
    finally:
        await stop_harness(harness)


async def _scrape(h: SlackHarness, url: str | None = None, token: str | None = METRICS_TOKEN) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with h.session.get(url or str(h.server.make_url("/metrics")), headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def _broadcast(h: SlackHarness) -> int:
    response, _, key = await h.command("send must-know operations tier:gold | Recall | Stop selling LX-200")
    (preview,) = await h.responses(key)
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["action_id"] == SEND_ACTION))
    await h.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await h.responses(h.last_click_key)
    return notice_id


async def test_metrics_are_off_unless_configured(slack: SlackHarness) -> None:
    async with slack.session.get(str(slack.server.make_url("/metrics"))) as response:
        assert response.status == 404


async def test_metrics_need_the_bearer_token(served: SlackHarness) -> None:
    url = str(served.server.make_url("/metrics"))
    for headers in ({}, {"Authorization": "Bearer wrong-token-000000000"}, {"Authorization": METRICS_TOKEN},
                    {"Authorization": f"Basic {METRICS_TOKEN}"}):
        async with served.session.get(url, headers=headers) as response:
            assert response.status == 401
            assert "herald_" not in await response.text()
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await _scrape(served)


async def test_the_outbox_gauges_count_escalations_and_hand_offs_as_well_as_notice_copies(
        served: SlackHarness) -> None:
    """README: escalations, hand-offs, relays, journey messages and digests are `outbound_message`
    rows sent through the same lanes as the notices; the gauges read only `delivery` before."""
    h = served
    for reference in (1, 2, 3):  # e.g. three escalation DMs to the CAM, waiting in the Slack lane
        await enqueue(key=f"escalation:{reference}", purpose=MessagePurpose.ESCALATION, reference=reference,
                      target=Target("slack", Recipient(workspace_id=TEAM, user_id=CAM_USER)),
                      message=DirectMessage(title="Escalation", lines=("x",)), now=h.clock.now())
    h.clock.advance(minutes=30)  # nothing has sent them for half an hour
    samples = await _scrape(h)
    assert _value(samples, "herald_outbox_depth", platform="slack") == 3
    assert _value(samples, "herald_outbox_oldest_due_age_seconds", platform="slack") == 1800
    await _broadcast(h)  # and three notice copies, due now: one gauge for both
    h.clock.advance(seconds=60)
    samples = await _scrape(h)
    assert _value(samples, "herald_outbox_depth", platform="slack") == 6
    assert _value(samples, "herald_outbox_oldest_due_age_seconds", platform="slack") == 1860
    await h.herald.outbox.drain()
    samples = await _scrape(h)
    assert _value(samples, "herald_outbox_depth", platform="slack") == 0
    assert _value(samples, "herald_outbox_oldest_due_age_seconds", platform="slack") == 0


async def test_a_broadcast_shows_in_outbox_delivery_and_audit_metrics(served: SlackHarness) -> None:
    before = await _scrape(served)
    notice_id = await _broadcast(served)
    served.clock.advance(seconds=90)
    during = await _scrape(served)
    assert _value(during, "herald_outbox_depth", platform="slack") == 3  # anna, bo, di; ed has no account
    assert _value(during, "herald_outbox_depth", platform="teams") == 0
    assert _value(during, "herald_outbox_oldest_due_age_seconds", platform="slack") == 90
    head = await AuditChainHead.first()
    assert _value(during, "herald_audit_chain_length") == head.seq > 0
    assert _value(during, "herald_database_up") == 1

    await served.herald.outbox.drain()
    after = await _scrape(served)
    delivered = ("herald_deliveries_total", {"platform": "slack", "outcome": "delivered"})
    assert _value(after, delivered[0], **delivered[1]) - _value(before, delivered[0], **delivered[1]) == 3
    assert _value(after, "herald_outbox_depth", platform="slack") == 0
    assert _value(after, "herald_outbox_oldest_due_age_seconds", platform="slack") == 0

    served.clock.advance(minutes=10)
    await served.click(ACK_ACTION, str(notice_id), user="UANNA")
    await wait_until(lambda: Acknowledgement.filter(notice_id=notice_id).exists(), what="the acknowledgement")
    count = ("herald_acknowledgement_latency_seconds_count", {"platform": "slack"})

    async def observed() -> bool:  # recorded by the click's handler just after its transaction
        return _value(await _scrape(served), *count[:1], **count[1]) > _value(before, *count[:1], **count[1])

    await wait_until(observed, what="the acknowledgement's latency")
    acked = await _scrape(served)
    total = ("herald_acknowledgement_latency_seconds_sum", {"platform": "slack"})
    assert _value(acked, *count[:1], **count[1]) - _value(before, *count[:1], **count[1]) == 1
    assert _value(acked, *total[:1], **total[1]) - _value(before, *total[:1], **total[1]) == 600

    _assert_bounded_labels(acked)


ALLOWED_LABELS = {
    "platform": {"slack", "teams", "other"}, "outcome": {*metrics.DELIVERY_OUTCOMES, "refreshed", "waited"},
    "result": {"answered", "abstained", "handed_off"}, "kind": {"step", "nudge", "milestone", "cam", "other"},
    "source": {*metrics.OUTBOX_SOURCES, "other"},
    "method": {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "other"},
    "job": {*metrics.TICK_JOBS, "other"},
}


def _assert_bounded_labels(samples: dict) -> None:
    """Every label of Herald's own metrics comes from a fixed vocabulary or a route template:
    no notice, member, delivery or workspace id can become a label value."""
    for name, labels in samples:
        if not name.startswith("herald_"):
            continue
        for label, value in labels:
            if label in ALLOWED_LABELS:
                assert value in ALLOWED_LABELS[label], (name, label, value)
            elif label == "route":
                assert value == "other" or (value.startswith("/") and not re.search(r"/\d", value)), value
            elif label == "status":
                assert value.isdigit() and 100 <= int(value) < 600
            else:
                assert label in ("le", "version"), (name, label)


async def test_requests_are_labelled_by_route_template(served: SlackHarness) -> None:
    before = await _scrape(served)
    for notice in ("12345", "67890"):
        async with served.session.get(str(served.server.make_url(f"/api/v1/notices/{notice}"))) as response:
            assert response.status == 401
    async with served.session.get(str(served.server.make_url("/no/such/path/4242"))) as response:
        assert response.status == 404
    after = await _scrape(served)
    route = {"route": "/api/v1/notices/{id}", "method": "GET", "status": "401"}
    assert _value(after, "herald_http_requests_total", **route) - _value(before, "herald_http_requests_total", **route) == 2
    other = {"route": "other", "method": "GET", "status": "404"}
    assert _value(after, "herald_http_requests_total", **other) - _value(before, "herald_http_requests_total", **other) == 1
    assert not any("12345" in v or "4242" in v for _, labels in after for _, v in labels)
    _assert_bounded_labels(after)
    slack = {"route": "/slack/events", "method": "POST"}
    await served.command("help")
    latency = await _scrape(served)
    assert _value(latency, "herald_http_request_duration_seconds_count", **slack) >= 1


async def test_a_429_counts_with_its_retry_after(served: SlackHarness) -> None:
    before = await _scrape(served)
    await _broadcast(served)
    served.fake.fail_next("chat.postMessage", retry_after=7)
    await served.herald.outbox.run_once()
    after = await _scrape(served)
    assert _value(after, "herald_rate_limited_total", platform="slack") - _value(
        before, "herald_rate_limited_total", platform="slack") == 1
    assert _value(after, "herald_rate_limit_retry_after_seconds_sum", platform="slack") - _value(
        before, "herald_rate_limit_retry_after_seconds_sum", platform="slack") == 7
    retried = {"platform": "slack", "outcome": "retried"}
    assert _value(after, "herald_deliveries_total", **retried) - _value(before, "herald_deliveries_total", **retried) == 1


async def test_a_broadcast_stuck_in_a_429_storm_shows_in_the_oldest_due_age(served: SlackHarness) -> None:
    """README: `herald_outbox_oldest_due_age_seconds` is how long the oldest undelivered row has
    been due: the gauge to alert on for a stuck broadcast. It was read from `next_attempt_at`, which
    every deferral moves forward: an hour of 429 Retry-After 30 kept it under 30 s while not one copy
    of a must-know notice went out. It is now measured from when the row first became due."""
    h = served
    await _broadcast(h)
    h.fake.fail_next("chat.postMessage", retry_after=30, times=10_000)
    ages = []
    for _ in range(120):  # an hour of 30 s pauses
        await h.herald.outbox.run_once()
        h.clock.advance(seconds=30)
        ages.append(_value(await _scrape(h), "herald_outbox_oldest_due_age_seconds", platform="slack"))
    assert not await Delivery.filter(status="delivered").exists()  # nothing went out in the hour
    assert ages == sorted(ages) and ages[-1] >= 3600, (
        f"a must-know broadcast stuck for an hour: the oldest due age peaked at {max(ages):.0f} s")


@pytest.mark.parametrize("model", [Delivery, OutboundMessage], ids=["delivery", "outbound_message"])
async def test_the_outbox_gauges_read_the_open_rows_not_a_year_of_history(db: str, model: type) -> None:
    """Every scrape, on every replica, reads the outbox gauges; delivery and outbound_message keep
    every row ever sent (a year: millions). The query reads the open rows from the index on status."""
    indexed, seen = await uses_an_index_on(open_outbox(model), "status")
    assert indexed, f"every scrape reads every {model._meta.db_table} row ever written: {seen}"


class _Blackhole:
    """A database host that accepts TCP connections and never answers (a host gone during a
    failover, a dropped route): what a hung PostgreSQL looks like to Herald."""

    async def start(self) -> int:
        self._held: list[asyncio.StreamWriter] = []

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._held:
            writer.close()
        self._server.close()


async def test_a_scrape_during_a_hung_database_answers_database_down_in_time(served: SlackHarness) -> None:
    """README: `herald_database_up` is the last scrape's database read, and the scrape answers
    even when the database does not. When the database host stops answering (no RST: a failover,
    a partition), /metrics awaited the outbox queries with no time limit: the scrape outlasted
    Prometheus' scrape_timeout (10 s by default), Prometheus saw the replica down, never
    `herald_database_up 0`, and lost every process counter during the outage. The read is now
    bounded (3 s, as the health check's)."""
    h = served
    await _broadcast(h)
    await h.herald.outbox.drain()
    hole = _Blackhole()
    port = await hole.start()
    try:
        await storage_db.close()
        await Tortoise.init(config=storage_db.tortoise_config(f"postgres://herald@127.0.0.1:{port}/herald"))
        try:
            samples = await asyncio.wait_for(_scrape(h), 10)  # Prometheus' default scrape_timeout
        except TimeoutError:
            pytest.fail("GET /metrics did not answer within 10 s while the database hangs")
        assert _value(samples, "herald_database_up") == 0
        assert _value(samples, "herald_deliveries_total", platform="slack", outcome="delivered") >= 3  # still there
        assert ("herald_outbox_depth", (("platform", "slack"),)) not in samples  # no stale reading
    finally:
        await hole.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_separate_metrics_port_keeps_metrics_off_the_main_port(db: str) -> None:
    port = _free_port()
    h = await start_harness(db, extra_settings={"metrics_port": port, "metrics_host": "127.0.0.1"})
    try:
        async with h.session.get(str(h.server.make_url("/metrics"))) as response:
            assert response.status == 404
        samples = await _scrape(h, f"http://127.0.0.1:{port}/metrics", token=None)
        assert ("herald_outbox_depth", (("platform", "slack"),)) in samples
        assert _value(samples, "herald_build_info", version=_version(samples)) == 1
    finally:
        await stop_harness(h)
    with pytest.raises(aiohttp.ClientConnectionError):  # the listener stops with the server
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/metrics")


def _version(samples: dict) -> str:
    return next(dict(labels)["version"] for name, labels in samples if name == "herald_build_info")


async def test_assistant_answers_abstentions_and_hand_offs_are_counted(rig) -> None:  # noqa: ANN001
    from pathlib import Path

    from config.settings import CONFIG_DIR

    kb = KnowledgeBase.load(Path(CONFIG_DIR / "kb"), semantic=False)
    member = await Member.get(email="anna@acme.example").select_related("organisation")
    before = {r: metrics.sample("herald_assistant_questions_total", {"result": r})
              for r in ("answered", "abstained", "handed_off")}
    answered = await ask(member, next(iter(kb.entries.values())).title, kb, platform="slack", channel_id="DUANNA",
                         now=rig.clock.now())
    abstained = await ask(member, "zzqx vorpal frumious bandersnatch", kb, platform="slack", channel_id="DUANNA",
                          now=rig.clock.now())
    assert not answered.answer.abstained and abstained.answer.abstained
    await rig.herald.hand_off_question(abstained.question.id, member)
    await rig.herald.hand_off_question(abstained.question.id, member)  # a second click hands nothing off
    after = {r: metrics.sample("herald_assistant_questions_total", {"result": r}) for r in before}
    assert {r: after[r] - before[r] for r in before} == {"answered": 1, "abstained": 1, "handed_off": 1}
