"""Review (restart/outage area): drills with `herald serve` in its own process, as test_kill_drill does."""

from __future__ import annotations

import signal
from datetime import datetime, timezone
from pathlib import Path


from storage import db as storage_db
from storage.models import Delivery
from tests.fakes.slack_api import FakeSlackAPI
from tests.support import wait_until
from tests.test_kill_drill import _free_port, _stop


def _serve_with(db_url: str, fake: FakeSlackAPI, tmp_path: Path, *, port: int | None = None, **extra: str):
    """`herald serve` as test_kill_drill starts it, with more HERALD_* settings."""
    import os
    import subprocess
    import sys

    from tests.test_kill_drill import LANE_INFLIGHT, ROOT, RATE

    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), HERALD_DATABASE_URL=db_url, HERALD_SLACK_API_URL=fake.url,
               HERALD_SLACK_SIGNING_SECRET="drill", HERALD_SLACK_MAX_PER_SECOND=str(RATE),
               HERALD_DELIVERY_LANE_INFLIGHT=str(LANE_INFLIGHT), HERALD_OUTBOX_POLL_SECONDS="1",
               HERALD_KB_SEMANTIC="false", HERALD_CACHE_DIR=str(tmp_path / "cache"), HERALD_HOST="127.0.0.1")
    env.update({f"HERALD_{k.upper()}": v for k, v in extra.items()})
    log = open(tmp_path / "serve.log", "a")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port or _free_port())],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)


async def _settled(db_url: str) -> bool:
    from storage.models import OutboundMessage

    await storage_db.connect(db_url, run_migrations=False)
    try:
        busy = ["pending", "sending"]
        return not await Delivery.filter(status__in=busy).exists() and \
            not await OutboundMessage.filter(status__in=busy).exists()
    finally:
        await storage_db.close()


async def _members_only(db_url: str, fake: FakeSlackAPI, users: list[str]) -> None:
    from bot.core.directory.importer import import_directory
    from bot.core.directory.workspaces import add_slack_workspace
    from tests.support import TEAM, TOKEN, directory_csv

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
    finally:
        await storage_db.close()


async def test_kill_9_loses_no_journey_message_that_was_never_sent(db_url: str, tmp_path: Path) -> None:
    """README: "after kill -9 only the requests that were in flight are in doubt", and a plain
    message (journey step, digest, escalation, hand-off, relayed answer) "that was in flight when a
    replica died is not sent again". A lane claims up to HERALD_DELIVERY_LANE_INFLIGHT rows at
    once, and they wait for the workspace's pace (or the replica's concurrency) before their
    request: after a kill every claimed row is settled as *interrupted*, also those whose request
    never left. Here the first step was posted when the replica died, the claimed rows behind it
    never reached Slack, yet they are recorded as sent and never go out: those members never get
    their first onboarding step (an escalation or a CAM's relayed answer would be lost the same way)."""
    from storage.models import OutboundMessage

    users = [f"UJ{i}" for i in range(30)]
    settings = dict(tick_seconds="0.5", slack_max_per_second="2")
    async with FakeSlackAPI() as fake:
        await _members_only(db_url, fake, users)
        first = _serve_with(db_url, fake, tmp_path, **settings)
        try:
            await wait_until(lambda: fake.call_count("chat.postMessage") >= 1, timeout=60,
                             what="the first journey step posted")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            _stop(first)
        at_kill = fake.call_count("chat.postMessage")
        second = _serve_with(db_url, fake, tmp_path, **settings)
        try:
            await wait_until(lambda: _settled(db_url), timeout=90, what="every journey message settled")
            second.send_signal(signal.SIGTERM)
            second.wait(15)
        finally:
            _stop(second)
        reached = [u for u in users if fake.messages(fake.dm_channel_id(u))]
    await storage_db.connect(db_url, run_migrations=False)
    try:
        interrupted = await OutboundMessage.filter(error__contains="Herald stopped while sending").count()
    finally:
        await storage_db.close()
    missing = len(users) - len(reached)
    assert missing == 0, (
        f"killed after {at_kill} posts (at most one request on the wire at 2/s): {interrupted} journey messages "
        f"settled as interrupted, {missing} members never got their first step though Slack never saw a request "
        f"for it")
