#!/usr/bin/env python
"""Publish benchmark: how long `sending.publish` (the Send button's work: resolve the audience and
write one outbox row per recipient, one transaction) takes for a large audience.

    python bench/publish.py [--recipients 20000 100000] [--orgs 200] [--database-url postgres://...]

For each size: a fresh database (a temporary SQLite file, or a database created beside the one
given and dropped afterwards), migrated; --recipients members over --orgs organisations, half on
Slack and half on Teams (one platform account each), bulk-inserted; one must-know draft to
"all"; then `publish` is timed (wall clock, and the process's CPU time). The Teams Send button is
answered within 15 s (Bot Connector's invoke deadline), Slack's within 3 s: this is why both now
answer first and write the rows afterwards.

Prints one JSON object on stdout ({"runs": [...]}); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scratch_db import ScratchDatabase, progress  # noqa: E402

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def seed(n: int, orgs: int) -> int:
    from storage.models import Member, Notice, Organisation, PlatformAccount, Staff

    batch = 5000
    await Organisation.bulk_create([Organisation(external_id=f"org{i:04d}", name=f"Partner {i:04d}", tier="gold",
                                                 region="emea") for i in range(orgs)], batch_size=batch)
    org_ids = [o["id"] for o in await Organisation.all().order_by("id").values("id")]
    await Member.bulk_create([Member(organisation_id=org_ids[i % orgs], email=f"m{i:07d}@p{i % orgs:04d}.example",
                                     name=f"Member {i}", role="sales", timezone="Europe/Berlin")
                              for i in range(n)], batch_size=batch)
    ids = await Member.all().order_by("id").values_list("id", flat=True)
    await PlatformAccount.bulk_create(
        [PlatformAccount(member_id=member_id, platform="slack" if i % 2 else "teams",
                         workspace_external_id=f"W{i % orgs:04d}", user_id=f"U{i:07d}")
         for i, member_id in enumerate(ids)], batch_size=batch)
    cam = await Staff.create(email="cam@vendor.example", name="Bench CAM", role="cam")
    notice = await Notice.create(topic="announcements", importance="must-know", title="Recall",
                                 body="Stop selling LX-200.", audience="all", author=cam, status="draft",
                                 recipient_count=n, created_at=T0)
    return notice.id


async def run(url: str, n: int, orgs: int, kind: str) -> dict[str, Any]:
    from bot.core.notices import sending
    from bot.topics.catalog import load_catalog
    from storage import db as storage_db
    from storage.models import Delivery, NoticeStatus

    await storage_db.connect(url)
    try:
        progress(f"{kind} {n}: seeding")
        notice_id = await seed(n, orgs)
        from storage.models import Notice

        notice = await Notice.get(id=notice_id)
        catalog = load_catalog()
        progress(f"{kind} {n}: publishing")
        cpu, wall = time.process_time(), time.perf_counter()
        result = await sending.publish(notice, catalog, actor="bench", now=T0, from_status=NoticeStatus.DRAFT)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows = await Delivery.filter(notice_id=notice_id).count()
    finally:
        await storage_db.close()
    progress(f"{kind} {n}: {wall:.2f} s")
    return {"database": kind, "recipients": n, "organisations": orgs, "rows": rows,
            "recipients_resolved": result.recipients, "publish_seconds": round(wall, 2),
            "publish_cpu_seconds": round(cpu, 2)}


async def one(given: str | None, n: int, orgs: int) -> dict[str, Any]:
    database = ScratchDatabase(given, False, name="publish_bench")
    await database.create()
    try:
        return await run(database.url, n, orgs, database.kind)
    finally:
        await database.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--orgs", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="PostgreSQL server to create scratch databases on")
    args = parser.parse_args()
    runs = [asyncio.run(one(args.database_url, n, args.orgs)) for n in args.recipients]
    print(json.dumps({"runs": runs}, indent=2))
    return 0 if all(r["rows"] == r["recipients"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
