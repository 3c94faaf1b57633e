"""What writing a group of Acknowledge clicks costs as the notice grows.

For each size, a fresh database holds one must-know notice delivered to that many Slack members;
then groups of clicks by distinct members are written through `acks.acknowledge` (concurrent
clicks share one group commit, as on the server). Prints JSON: per size, the time per group
(median and p95), this process's CPU per click, and a check that every click was recorded once.

A group's cost should not depend on the notice's size: a click is looked up by its presser.

    python bench/ack_groups.py --database-url postgres://... [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.acks import percentile  # noqa: E402
from bench.scratch_db import ScratchDatabase, progress  # noqa: E402
from storage.db import shown_url  # noqa: E402

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WORKSPACE = "T0BENCH"
BATCH = 5000


def user_id(i: int) -> str:
    return f"U{i:08d}"


async def seed(n: int) -> int:
    """`n` members with a Slack account each and one notice delivered to all; the notice's id."""
    from storage.models import Delivery, Member, Notice, Organisation, PlatformAccount, Staff

    org = await Organisation.create(external_id="org0", name="Partner GmbH", tier="gold", region="emea")
    await Member.bulk_create([Member(organisation_id=org.id, email=f"m{i:08d}@partner.example", name=f"Member {i}",
                                     role="operations", timezone="Europe/Berlin") for i in range(n)], batch_size=BATCH)
    member_ids = [m for (m,) in await Member.all().order_by("id").values_list("id")]
    await PlatformAccount.bulk_create([PlatformAccount(member_id=m, platform="slack", workspace_external_id=WORKSPACE,
                                                       user_id=user_id(i), dm_channel=f"D{i:08d}")
                                       for i, m in enumerate(member_ids)], batch_size=BATCH)
    accounts = dict(await PlatformAccount.all().values_list("member_id", "id"))
    cam = await Staff.create(email="cam@vendor.example", name="Bench CAM", role="cam")
    notice = await Notice.create(topic="operations", importance="must-know", title="Recall", body="Return stock.",
                                 audience="all", author=cam, status="sent", recipient_count=n, created_at=T0,
                                 sent_at=T0, deadline=T0 + timedelta(days=5))
    for start in range(0, n, BATCH):
        await Delivery.bulk_create([
            Delivery(notice_id=notice.id, member_id=m, account_id=accounts[m], platform="slack",
                     workspace_external_id=WORKSPACE, status="delivered", attempts=1, next_attempt_at=T0,
                     created_at=T0, delivered_at=T0, channel_id=f"D{start + k:08d}", message_id=f"{start + k}.0001")
            for k, m in enumerate(member_ids[start:start + BATCH])], batch_size=BATCH)
    return notice.id


async def click_groups(notice_id: int, n: int, groups: int, size: int, seed_value: int) -> dict[str, Any]:
    from bot.core.notices import acks
    from storage.models import Acknowledgement, Delivery

    pressers = random.Random(seed_value).sample(range(n), groups * size)
    now = T0 + timedelta(hours=1)
    seconds: list[float] = []
    cpu = time.process_time()
    for g in range(groups):
        chunk = pressers[g * size:(g + 1) * size]
        started = time.perf_counter()
        results = await asyncio.gather(*(acks.acknowledge(notice_id, platform="slack", workspace_id=WORKSPACE,
                                                          user_id=user_id(i), now=now) for i in chunk))
        seconds.append(time.perf_counter() - started)
        assert all(r.newly_recorded for r in results)
    cpu = time.process_time() - cpu
    recorded = await Acknowledgement.filter(notice_id=notice_id).count()
    flagged = await Delivery.filter(notice_id=notice_id, update_pending=True).count()
    ms = [s * 1000 for s in seconds]
    return {"group_ms_p50": round(statistics.median(ms), 2), "group_ms_p95": round(percentile(ms, 95) or 0.0, 2),
            "cpu_ms_per_click": round(cpu * 1000 / (groups * size), 3),
            "recorded": recorded, "exactly_once": recorded == groups * size,
            "copies_flagged_for_update": flagged}


async def run_size(args: argparse.Namespace, n: int) -> dict[str, Any]:
    from storage import db

    database = ScratchDatabase(args.database_url, keep=False, name="ackgroups")
    url = await database.create()
    try:
        await db.connect(url)
        started = time.perf_counter()
        notice_id = await seed(n)
        if args.analyze:  # as autovacuum would within a minute of the broadcast's rows
            from tortoise import connections

            await connections.get("default").execute_script("ANALYZE")
        progress(f"[ack_groups] {n} members seeded in {time.perf_counter() - started:.1f}s")
        result = {"recipients": n, **await click_groups(notice_id, n, args.groups, args.group_size, args.seed)}
        progress(f"[ack_groups] {json.dumps(result)}")
        return result
    finally:
        await db.close()
        await database.drop()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs = [await run_size(args, n) for n in args.sizes]
    return {"benchmark": "ack_groups", "database": shown_url(args.database_url or "sqlite (temporary file)"),
            "groups": args.groups, "group_size": args.group_size, "analyzed": args.analyze, "runs": runs,
            "verified": all(r["exactly_once"] and r["copies_flagged_for_update"] == r["recorded"] for r in runs),
            "notes": "one process, no other load; group_ms is the wall time of one group of concurrent clicks"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--group-size", type=int, default=10)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--no-analyze", dest="analyze", action="store_false",
                        help="click before the planner has statistics of the new rows (as in the first minute)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL to create scratch databases beside")
    args = parser.parse_args()
    if args.groups * args.group_size > min(args.sizes):
        parser.error("groups x group-size must not exceed the smallest size (every click is a new presser)")
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=1))
    return 0 if result["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
