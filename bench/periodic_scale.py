#!/usr/bin/env python
"""The periodic tick's reads at scale: what one tick does with 100,000 members.

    python bench/periodic_scale.py [--members 100000] [--orgs 100] [--postgres URL]

On a fresh database (a temporary SQLite file, or a database beside --postgres /
HERALD_TEST_POSTGRES_URL, dropped afterwards) seeds ``--members`` members in ``--orgs``
organisations (one large: a fifth of them), each with a Slack account, and measures:

* ``digests``: a nice-to-know notice kept for every member's digest, at the digest moment: one
  ``run_digests`` (what one 60 s tick does): seconds, digests queued, and the ticks (minutes)
  all members' digests take at that rate.
* ``reminders``: a must-know notice delivered to every member, 40 % unacknowledged, first
  reminders due: one ``plan_reminders``: seconds, reminders planned, ticks to plan them all.
* ``remind_now``: the escalation's **Remind now** on that notice for a small organisation and for
  the large one: seconds and reminders queued (its read of the notice, its acknowledgements and
  the reminders written).
* ``journeys_plan``: one ``run_journeys`` with nothing to do (no member reachable on a
  configured channel, no step done): the seconds one tick spends reading every member, account
  and journey step, on every replica, every minute.
* ``unacknowledged_by_organisation``: the escalation's and **Remind now**'s read for one
  organisation of S members, each with a Slack and a Teams copy, none acknowledged, for growing
  S: seconds (the `not in list` check is quadratic in S).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scratch_db import ScratchDatabase  # noqa: E402

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # Monday 11:00 Berlin
DIGEST_MOMENT = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)  # Tuesday 09:00 Berlin
TEAM = "TBENCH"


def progress(message: str) -> None:
    print(f"[periodic] {message}", file=sys.stderr, flush=True)


async def seed(members: int, orgs: int) -> tuple[list[int], dict[int, int], dict[int, int]]:
    from storage.models import Member, Organisation, PlatformAccount

    await Organisation.bulk_create([Organisation(external_id=f"org{i:04d}", name=f"Partner {i:04d}", tier="gold",
                                                 region="emea", cam_email="cam@vendor.example") for i in range(orgs)])
    org_ids = [o for o in await Organisation.all().order_by("id").values_list("id", flat=True)]
    big = members // 5

    def org_of(i: int) -> int:
        return org_ids[0] if i < big else org_ids[1 + i % (orgs - 1)]

    await Member.bulk_create([Member(organisation_id=org_of(i), email=f"m{i:07d}@p.example", name=f"M {i}", role="sales",
                                     timezone="Europe/Berlin", joined_at=T0 - timedelta(days=400))
                              for i in range(members)], batch_size=5000)
    member_org = dict(await Member.all().values_list("id", "organisation_id"))
    await PlatformAccount.bulk_create([PlatformAccount(member_id=m, platform="slack", workspace_external_id=TEAM,
                                                       user_id=f"U{m}", dm_channel=f"D{m}") for m in member_org],
                                      batch_size=5000)
    accounts = dict(await PlatformAccount.all().values_list("member_id", "id"))
    return sorted(member_org), member_org, accounts


async def measure(url: str, members: int, orgs: int, analyzed: bool = True) -> dict[str, Any]:
    from bot.common.clock import ManualClock
    from bot.core.notices.digests import run_digests
    from bot.core.notices.escalations import remind_organisation_now, unacknowledged_by_organisation
    from bot.core.notices.reminders import plan_reminders
    from bot.core.onboarding.journeys import run_journeys
    from bot.service import Herald
    from config.settings import load_settings
    from storage import db as storage_db
    from storage.models import Acknowledgement, Delivery, Member, Notice, Organisation, Staff

    await storage_db.upgrade(url)
    await storage_db.connect(url, run_migrations=False)
    out: dict[str, Any] = {}
    try:
        ids, member_org, accounts = await seed(members, orgs)
        async def analyze() -> None:
            """As autovacuum would have done by then: the digest moment and the reminders come a day
            after the notice (--no-analyze: the first minute after a bulk load)."""
            if analyzed and storage_db.dialect() == "postgres":
                from tortoise import connections

                await connections.get("default").execute_script("VACUUM ANALYZE")

        await analyze()
        progress(f"seeded {members} members")
        settings = load_settings(database_url=url, slack_signing_secret="s", slack_bot_token="xoxb-bench",
                                 kb_semantic=False)
        herald = Herald(settings, clock=ManualClock(DIGEST_MOMENT))

        # digests
        nice = await Notice.create(topic="announcements", importance="nice-to-know", title="n", body="b", audience="all",
                                   status="sent", recipient_count=members, created_at=T0, sent_at=T0)
        await Delivery.bulk_create([Delivery(notice_id=nice.id, member_id=m, organisation_id=member_org[m], platform="slack",
                                             status="digest", next_attempt_at=T0, created_at=T0,
                                             workspace_external_id=TEAM, account_id=accounts[m]) for m in ids],
                                   batch_size=5000)
        await analyze()
        begun = time.perf_counter()
        counts = await run_digests(herald.channels, herald.catalog, DIGEST_MOMENT)
        seconds = time.perf_counter() - begun
        out["digests"] = {"due": members, "queued_in_one_tick": counts["queued"], "tick_seconds": round(seconds, 2),
                          "ticks_to_queue_all": -(-members // max(counts["queued"], 1)),
                          "last_digest_queued_after_minutes": -(-members // max(counts["queued"], 1))}
        progress(f"digests: {out['digests']}")

        # reminders
        must = await Notice.create(topic="announcements", importance="must-know", title="m", body="b", audience="all",
                                   status="sent", recipient_count=members, created_at=T0, sent_at=T0,
                                   deadline=T0 + timedelta(days=5))
        due = T0 + timedelta(hours=24)
        await Delivery.bulk_create([Delivery(notice_id=must.id, member_id=m, organisation_id=member_org[m], platform="slack",
                                             status="delivered", next_attempt_at=T0, created_at=T0, delivered_at=T0,
                                             next_reminder_at=None if i % 5 < 3 else due,
                                             workspace_external_id=TEAM, account_id=accounts[m])
                                    for i, m in enumerate(ids)], batch_size=5000)
        await Acknowledgement.bulk_create([Acknowledgement(notice_id=must.id, member_id=m, organisation_id=member_org[m],
                                                           platform="slack", revision=1, acknowledged_at=T0)
                                           for i, m in enumerate(ids) if i % 5 < 3], batch_size=5000)
        unacked = sum(1 for i in range(len(ids)) if i % 5 >= 3)
        await analyze()
        begun = time.perf_counter()
        planned = await plan_reminders(due + timedelta(minutes=1), herald.catalog)
        seconds = time.perf_counter() - begun
        out["reminders"] = {"due": unacked, "planned_in_one_tick": planned, "tick_seconds": round(seconds, 2),
                            "ticks_to_plan_all": -(-unacked // max(planned, 1))}
        progress(f"reminders: {out['reminders']}")

        # Remind now: the escalation's button for one organisation of the 100,000-recipient notice
        # (an hour after the first reminders, so none counts as just reminded): a small partner's
        # and the large one's (a fifth of everyone), 40 % of each unacknowledged
        admin = await Staff.create(email="admin@vendor.example", role="admin")
        pressed = []
        for external_id in ("org0001", "org0000"):
            begun = time.perf_counter()
            queued = await remind_organisation_now(must.id, external_id, admin, now=due + timedelta(hours=1))
            pressed.append({"organisation": external_id, "members": await Member.filter(
                organisation__external_id=external_id).count(), "reminders_queued": queued,
                "seconds": round(time.perf_counter() - begun, 2)})
            progress(f"remind now: {pressed[-1]}")
        out["remind_now"] = pressed

        # journeys: nothing due (no configured channel reaches anyone: Slack not configured here)
        begun = time.perf_counter()
        await run_journeys({}, DIGEST_MOMENT)
        out["journeys_plan"] = {"members": members, "tick_seconds_with_nothing_to_do": round(time.perf_counter() - begun, 2)}
        progress(f"journeys: {out['journeys_plan']}")

        # escalation read: one organisation of growing size, a Slack and a Teams copy each
        scaling = []
        for size in (2000, 4000, 8000):
            org = await Organisation.create(external_id=f"esc{size}", name=f"Esc {size}", cam_email="cam@vendor.example")
            await Member.bulk_create([Member(organisation_id=org.id, email=f"e{size}-{i}@x.example", role="sales")
                                      for i in range(size)], batch_size=5000)
            mids = [m for m in await Member.filter(organisation_id=org.id).values_list("id", flat=True)]
            notice = await Notice.create(topic="announcements", importance="must-know", title="e", body="b",
                                         audience="all", status="sent", recipient_count=size, created_at=T0,
                                         sent_at=T0, deadline=T0)
            await Delivery.bulk_create([Delivery(notice_id=notice.id, member_id=m, organisation_id=org.id, platform=p,
                                                 status="delivered", next_attempt_at=T0, created_at=T0, delivered_at=T0)
                                        for m in mids for p in ("slack", "teams")], batch_size=5000)
            begun = time.perf_counter()
            missing = await unacknowledged_by_organisation(notice)
            scaling.append({"members": size, "copies": 2 * size, "unacknowledged": len(missing[org.id]),
                            "seconds": round(time.perf_counter() - begun, 3)})
            progress(f"escalation read: {scaling[-1]}")
        out["unacknowledged_by_organisation"] = scaling
        await herald.close()
    finally:
        await storage_db.close()
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=100)
    parser.add_argument("--postgres", default=os.environ.get("HERALD_TEST_POSTGRES_URL", ""))
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--no-analyze", action="store_true",
                        help="no VACUUM ANALYZE after the seed and each bulk load (PostgreSQL)")
    args = parser.parse_args()
    os.environ.setdefault("HERALD_CACHE_DIR", "/tmp/herald-bench-cache")
    scratch = ScratchDatabase(None if args.sqlite or not args.postgres else args.postgres, False, name="periodic")
    url = await scratch.create()
    try:
        result = {"database": scratch.kind, "members": args.members, "organisations": args.orgs,
                  "analyzed": not args.no_analyze,
                  **await measure(url, args.members, args.orgs, not args.no_analyze)}
    finally:
        await scratch.drop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
