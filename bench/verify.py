#!/usr/bin/env python
"""Verify benchmark: `herald audit verify` on the trail of a notice with 100,000 recipients.

    python bench/verify.py [--recipients 100000] [--orgs 500] [--code DIR ...] [--runs 2]
                           [--database-url sqlite:///tmp/x.db | postgres://user@host:port/db] [--keep]

1. A fresh database (bench.scratch_db), seeded as bench/report.py seeds it (one must-know notice:
   about 97 % delivered, 2 % failed, 1 % pending, 60 % of the delivered acknowledged, reminders
   for 1 %, an escalation per organisation; a second notice to 1,000 members).
2. The audit events those rows stand for, appended through `record` 5,000 to a call: one
   `delivery.delivered` / `delivery.failed` / `notice.reminded` per delivery row (by id, at its
   time, with its reason), one `notice.acknowledged` per acknowledgement, a `notice.escalated`
   and an `escalation.delivered` per escalation: the trail the outbox, the clicks and the clock
   would have written.
3. `herald audit verify --json` in a child process, once per `--code` tree (default: this one;
   give another checkout to compare before and after a change) and `--runs` times each,
   alternating: wall time and peak RSS (GNU time, else /proc VmHWM). Each run must say ok.

Prints one JSON object on stdout; progress goes to stderr. Memory figures are MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import T0, TIME, mib, progress, seed, watch_peak  # noqa: E402
from bench.scratch_db import ScratchDatabase  # noqa: E402

BATCH = 5000


async def chain_the_rows() -> int:
    """Append the events the seeded rows stand for; returns how many."""
    from bot.core.compliance.audit import audit_event, record
    from bot.core.compliance.crosscheck import members_digest
    from storage.models import Acknowledgement, Delivery, Escalation

    appended = 0

    async def append(events: list[Any]) -> None:
        nonlocal appended
        await record(events)
        appended += len(events)

    last = 0
    while rows := await Delivery.filter(id__gt=last, status__in=["delivered", "failed"]).order_by("id").limit(
            BATCH).values("id", "notice_id", "member_id", "kind", "platform", "status", "delivered_at", "error"):
        events = []  # a failed row of the seed has no time: its event takes the notice's
        for r in rows:
            common = dict(notice_id=r["notice_id"], member_id=r["member_id"], platform=r["platform"],
                          delivery_id=r["id"])
            if r["status"] == "failed":
                events.append(audit_event("delivery.failed", now=r["delivered_at"] or T0, reason=r["error"],
                                          attempts=1, **common))
            elif r["kind"] == "reminder":
                events.append(audit_event("notice.reminded", now=r["delivered_at"], reminder=1, channel="D",
                                          message_id="1.0", **common))
            else:
                events.append(audit_event("delivery.delivered", now=r["delivered_at"], channel="D", message_id="1.0",
                                          **common))
        await append(events)
        last = rows[-1]["id"]
    last = 0
    while rows := await Acknowledgement.filter(id__gt=last).order_by("id").limit(BATCH).values(
            "id", "notice_id", "member_id", "platform", "revision", "acknowledged_at"):
        await append([audit_event("notice.acknowledged", now=r["acknowledged_at"], notice_id=r["notice_id"],
                                  member_id=r["member_id"], platform=r["platform"], revision=r["revision"],
                                  via="notice") for r in rows])
        last = rows[-1]["id"]
    escalations = await Escalation.all().order_by("id").values(
        "notice_id", "organisation__external_id", "member_ids", "created_at", "sent_at")
    await append([audit_event("notice.escalated", now=e["created_at"], notice_id=e["notice_id"],
                              organisation=e["organisation__external_id"], escalated_to="cam@vendor.example",
                              unacknowledged=len(e["member_ids"]), members_sha256=members_digest(e["member_ids"]))
                  for e in escalations])
    await append([audit_event("escalation.delivered", now=e["sent_at"], notice_id=e["notice_id"],
                              organisation=e["organisation__external_id"], escalated_to="cam@vendor.example",
                              reason=None) for e in escalations])
    return appended


async def prepare(args: argparse.Namespace, database: ScratchDatabase) -> dict[str, Any]:
    from storage import db as storage_db

    await database.create()
    await storage_db.connect(database.url)
    try:
        progress(f"seeding {args.recipients} recipients over {args.orgs} organisations")
        started = time.perf_counter()
        seeded = await seed(args.recipients, args.orgs, 1000)
        progress("appending the events the rows stand for")
        events = await chain_the_rows()
        seconds = round(time.perf_counter() - started, 1)
        progress(f"seeded {events} events in {seconds}s")
    finally:
        await storage_db.close()
    return {"events": events, "seed_seconds": seconds, "expected": seeded["expected"]}


def run_verify(code: Path, database_url: str) -> dict[str, Any]:
    """`herald audit verify --json` from the tree `code`, in a child: its result, time and peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({"HERALD_DATABASE_URL": database_url, "HERALD_LOG_LEVEL": "WARNING", "PYTHONPATH": str(code)})
    command = [sys.executable, "-m", "bot.cli", "audit", "verify", "--json"]
    use_time = os.access(TIME, os.X_OK)
    if use_time:
        command = [TIME, "-v", *command]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=code, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_kib = 0.0
    if use_time:
        stdout, stderr = child.communicate()
    else:
        peak_kib = watch_peak(child)
        stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    for line in stderr.decode(errors="replace").splitlines():
        if "Maximum resident set size" in line:
            peak_kib = float(line.rsplit(":", 1)[1])
    result = json.loads(stdout or b"{}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": mib(peak_kib), "ok": result.get("ok"),
            "events": result.get("events"), "reason": result.get("reason")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=500)
    parser.add_argument("--code", type=Path, action="append", default=None,
                        help="a checkout whose `herald audit verify` to run (repeat to compare; default: this one)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    trees = [path.resolve() for path in (args.code or [ROOT])]
    database = ScratchDatabase(args.database_url, args.keep, name="verify_bench")
    try:
        seeded = asyncio.run(prepare(args, database))
        runs: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in trees}
        for n in range(args.runs):
            for tree in trees:
                progress(f"run {n + 1}: herald audit verify from {tree}")
                runs[str(tree)].append(run_verify(tree, database.url))
                progress(f"  {runs[str(tree)][-1]}")
        print(json.dumps({"database": database.kind, "recipients": args.recipients, **seeded, "runs": runs},
                         indent=2))
        return 0 if all(r["ok"] for rs in runs.values() for r in rs) else 1
    finally:
        asyncio.run(database.drop())


if __name__ == "__main__":
    sys.exit(main())
