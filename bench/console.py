#!/usr/bin/env python
"""Console benchmark: how long the console's pages take with 100,000 recipients on one notice.

    python bench/console.py [--recipients 100000] [--orgs 500] [--requests 15]
                            [--postgres postgres://user@host:port/db] [--keep]

For SQLite (a temporary file) and, when `--postgres` is given (default: HERALD_TEST_POSTGRES_URL),
PostgreSQL (a fresh database beside the one named, dropped afterwards):

1. Migrates and seeds with ``bulk_create``: ``--orgs`` organisations in 4 tiers and 3 regions,
   ``--recipients`` members with sandbox accounts, one sent must-know notice to all of them
   (97 % delivered, 2 % failed with a reason, 1 % pending; 60 % of the delivered acknowledged
   over the first day; an audit event per delivery and acknowledgement), and 60 small notices for
   the list. A CAM authors them all.
2. Serves the real app (``build_app``, no outbox worker) on a local port in this process, signs
   the CAM in through a real sign-in link, and requests each page ``--requests`` times after one
   warm-up request, the same way and in the same run as the baseline, ``GET /healthz`` (one
   ``SELECT 1``).
3. Prints one JSON object: per database, per page, the median and 95th percentile in ms, the
   first (cold) request in ms, the bytes of the answer, and the median minus the baseline's
   median (the page's own cost); and ``engagement_refresh``, the clock's share of the engagement
   page (run before serving, as `Herald.tick` does): working out every notice's figures, then
   the once-a-minute check when nothing changed.

Progress goes to stderr. Exits 1 if any page answers other than 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scratch_db import ScratchDatabase  # noqa: E402

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CAM = "cam@vendor.example"
_T0 = time.perf_counter()
TIERS, REGIONS = ("platinum", "gold", "silver", "registered"), ("emea", "amer", "apac")


def progress(message: str) -> None:
    print(f"[console {time.perf_counter() - _T0:7.2f}s] {message}", file=sys.stderr, flush=True)


async def seed(n: int, orgs: int) -> int:
    """Bulk-insert the directory, the big notice and its outcomes; returns the big notice's id."""
    from storage.models import (
        Acknowledgement,
        AuditEvent,
        Delivery,
        Member,
        Notice,
        Organisation,
        PlatformAccount,
        Staff,
    )

    batch = 5000
    await Organisation.bulk_create(
        [Organisation(external_id=f"org{i:04d}", name=f"Partner {i:04d} GmbH", tier=TIERS[i % 4],
                      region=REGIONS[i % 3], cam_email=CAM) for i in range(orgs)], batch_size=batch)
    org_ids = [o["id"] for o in await Organisation.all().order_by("id").values("id")]
    await Member.bulk_create([
        Member(organisation_id=org_ids[i % orgs], email=f"member{i:07d}@partner{i % orgs:04d}.example",
               name=f"Member {i}", role=("sales", "support", "operations")[i % 3], timezone="Europe/Berlin",
               topic_opt_outs=["incentives"] if i % 50 == 0 else [])
        for i in range(n)], batch_size=batch)
    member_orgs = dict(await Member.all().order_by("id").values_list("id", "organisation_id"))
    member_ids = list(member_orgs)
    await PlatformAccount.bulk_create([
        PlatformAccount(member_id=m, platform="sandbox", workspace_external_id="sandbox", user_id=f"u{m}",
                        dm_channel=f"u{m}") for m in member_ids], batch_size=batch)
    cam = await Staff.create(email=CAM, name="Bench CAM", role="cam")
    for k in range(60):  # the rest of the list
        await Notice.create(topic="announcements", importance="need-to-know", title=f"Update {k}", body="b",
                            audience="all", author=cam, status="sent", recipient_count=0,
                            created_at=T0 - timedelta(days=k + 1), sent_at=T0 - timedelta(days=k + 1))
    notice = await Notice.create(topic="operations", importance="must-know", title="Recall of LX-200",
                                 body="Stop selling **LX-200**:\n- return stock\n- tell customers", audience="all",
                                 author=cam, status="sent", recipient_count=n, created_at=T0, sent_at=T0,
                                 deadline=T0 + timedelta(days=5))
    deliveries, acks, events = [], [], []
    seq = 0

    async def flush(force: bool = False) -> None:
        nonlocal deliveries, acks, events
        if deliveries and (force or len(deliveries) >= batch):
            await Delivery.bulk_create(deliveries, batch_size=batch)
            deliveries = []
        if acks and (force or len(acks) >= batch):
            await Acknowledgement.bulk_create(acks, batch_size=batch)
            acks = []
        if events and (force or len(events) >= batch):
            await AuditEvent.bulk_create(events, batch_size=batch)
            events = []

    for i, member_id in enumerate(member_ids):
        status = "failed" if i % 100 in (7, 57) else "pending" if i % 100 == 99 else "delivered"
        delivered_at = T0 + timedelta(seconds=i // 50) if status == "delivered" else None
        deliveries.append(Delivery(
            notice_id=notice.id, member_id=member_id, organisation_id=member_orgs[member_id],
            platform="sandbox", status=status, attempts=1,
            next_attempt_at=T0, created_at=T0, workspace_external_id="sandbox", delivered_at=delivered_at,
            error="the member removed Herald in Teams or blocked it" if status == "failed" else ""))
        seq += 1
        events.append(AuditEvent(kind=f"delivery.{status}", occurred_at=delivered_at or T0, notice_id=notice.id,
                                 member_id=member_id, seq=seq, data={}))
        if status == "delivered" and i % 5 < 3:
            at = T0 + timedelta(minutes=5 + (i * 7919) % (24 * 60))
            acks.append(Acknowledgement(notice_id=notice.id, member_id=member_id, organisation_id=member_orgs[member_id],
                                        platform="sandbox", revision=1, acknowledged_at=at))
            seq += 1
            events.append(AuditEvent(kind="notice.acknowledged", occurred_at=at, notice_id=notice.id,
                                     member_id=member_id, seq=seq, data={}))
        await flush()
    await flush(force=True)
    from storage.models import AuditChainHead

    # the events are numbered but not hashed: move the chain's head past them (nothing verifies here)
    await AuditChainHead.update_or_create(id=1, defaults={"seq": seq, "hash": "0" * 64})
    return notice.id


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1)}


async def measure(db_url: str, *, recipients: int, orgs: int, requests: int) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web

    from bot.app import build_app
    from bot.common.clock import ManualClock
    from bot.core.directory.console_access import issue_link_for_email
    from config.settings import load_settings
    from storage import db as storage_db

    await storage_db.upgrade(db_url)
    await storage_db.connect(db_url, run_migrations=False)
    started = time.perf_counter()
    notice_id = await seed(recipients, orgs)
    progress(f"seeded {recipients} recipients in {time.perf_counter() - started:.1f} s")
    if storage_db.dialect() == "postgres":
        from tortoise import connections

        await connections.get("default").execute_script("VACUUM ANALYZE")  # as autovacuum leaves it
    clock = ManualClock(T0 + timedelta(days=1, hours=2))
    refresh = await _time_engagement_refresh(clock.now())
    progress(f"engagement refresh (the clock's work): {refresh}")
    settings = load_settings(database_url=db_url, kb_semantic=False, outbox_poll_seconds=3600)
    app = build_app(settings, clock=clock, run_worker=False, manage_database=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the port the OS chose
    base = f"http://127.0.0.1:{port}"
    pages = {
        "baseline /healthz": "/healthz",
        "notice list": "/console/notices",
        "notice page (100k)": f"/console/notices/{notice_id}",
        "not acknowledged, first page": f"/console/notices/{notice_id}/people",
        "not acknowledged, one organisation": f"/console/notices/{notice_id}/people?org=org0044",
        "failed deliveries": f"/console/notices/{notice_id}/people?state=failed",
        "live counts (json)": f"/console/notices/{notice_id}/live.json",
        "audience count, all (json)": "/console/audience-count?audience=all&topic=operations",
        "directory": "/console/directory",
        "engagement (90 days)": "/console/engagement",
    }
    results: dict[str, Any] = {}
    failures = []
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            token = (await issue_link_for_email(CAM, via="bench", now=clock.now(), actor="bench")).token
            async with session.get(f"{base}/console/sign-in?token={token}") as response:
                pre = re.search(r'name="pre" value="([^"]+)"', await response.text()).group(1)
            async with session.post(f"{base}/console/sign-in", data={"token": token, "pre": pre}) as response:
                assert response.status == 200 and response.url.path == "/console/notices"
            for label, path in pages.items():
                samples, size, first = [], 0, 0.0
                for attempt in range(requests + 1):
                    begun = time.perf_counter()
                    async with session.get(base + path) as response:
                        body = await response.read()
                    elapsed = (time.perf_counter() - begun) * 1000
                    if response.status != 200:
                        failures.append(f"{label}: HTTP {response.status}")
                        break
                    if attempt:  # the first request warms caches
                        samples.append(elapsed)
                    else:
                        first = elapsed
                    size = len(body)
                if samples:
                    results[label] = {**_summary(samples), "first_ms": round(first, 1), "bytes": size}
                    progress(f"{label}: median {results[label]['median_ms']} ms")
    finally:
        await runner.cleanup()
        await storage_db.close()
    baseline = results.get("baseline /healthz", {}).get("median_ms", 0.0)
    for label, figures in results.items():
        figures["over_baseline_ms"] = round(figures["median_ms"] - baseline, 1)
    return {"pages": results, "engagement_refresh": refresh, "failures": failures}


async def _time_engagement_refresh(now: datetime) -> dict[str, Any]:
    """The clock's share of the engagement page: working out every notice's figures (as after an
    upgrade), then the check it makes every minute when nothing changed."""
    from bot.core.insights.engagement import refresh_engagement

    begun = time.perf_counter()
    notices = await refresh_engagement(now)
    first = (time.perf_counter() - begun) * 1000
    begun = time.perf_counter()
    again = await refresh_engagement(now)
    unchanged = (time.perf_counter() - begun) * 1000
    return {"notices_worked_out": notices, "all_ms": round(first, 1), "worked_out_again": again,
            "unchanged_check_ms": round(unchanged, 1)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=500)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--postgres", default=os.environ.get("HERALD_TEST_POSTGRES_URL", ""))
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    os.environ.setdefault("HERALD_CACHE_DIR", "/tmp/herald-bench-cache")
    out: dict[str, Any] = {"recipients": args.recipients, "organisations": args.orgs, "requests": args.requests}
    failed = False
    for kind, given in (("sqlite", None), ("postgres", args.postgres or None)):
        if kind == "postgres" and not given:
            out[kind] = "skipped: give --postgres or set HERALD_TEST_POSTGRES_URL"
            continue
        scratch = ScratchDatabase(given, args.keep, name="console")
        url = await scratch.create()
        progress(f"{kind}: {url.split('@')[-1]}")
        try:
            out[kind] = await measure(url, recipients=args.recipients, orgs=args.orgs, requests=args.requests)
            failed = failed or bool(out[kind]["failures"])
        finally:
            await scratch.drop()
    print(json.dumps(out, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
