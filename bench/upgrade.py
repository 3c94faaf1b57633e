#!/usr/bin/env python
"""Upgrade benchmark: how long an old replica's audit write waits while `herald db upgrade` runs.

    python bench/upgrade.py --database-url postgres://user@host:port/db [--events 5000000]
                            [--code DIR ...] [--runs 2] [--from 0030_tick_sweep_indexes]

PostgreSQL only (SQLite has one writer: an upgrade holds the file anyway). For each run, once per
`--code` tree (default: this one; give another checkout to compare before and after a change),
alternating:

1. A fresh database (bench.scratch_db) migrated up to `--from` (by this tree's migrations: the
   schema at a released migration is the same in every tree), with `--events` audit events
   written in one INSERT ... SELECT generate_series (the largest table after a year; migration 0031
   builds an index on it).
2. A writer stands for an old replica still serving: one audit event a time, in its own statement,
   every 10 ms, timing each.
3. `herald db upgrade` from the tree, in a child process, while the writer runs.

Reports per run: the upgrade's seconds and exit code, the number of writes, their p99 and longest
wait in milliseconds and how many waited over 1 s (Slack answers a click within 3 s, and a Send from
Slack stores its audit event before answering). Prints one JSON object on stdout; progress goes to
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scratch_db import ScratchDatabase, progress  # noqa: E402

WRITE_EVERY = 0.01
_AUDIT_ROW = "(occurred_at, kind, actor, data)"


async def seed(url: str, start: str, events: int) -> float:
    """Migrate to `start` and write `events` audit events; returns the seconds the events took."""
    import asyncpg
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    from storage import db as storage_db

    await migrate(config=storage_db.tortoise_config(url), target=f"models.{start}")
    await Tortoise.close_connections()
    connection = await asyncpg.connect(storage_db.asyncpg_dsn(url))
    try:
        started = time.perf_counter()
        await connection.execute(f"INSERT INTO audit_event {_AUDIT_ROW} SELECT now(), 'delivery.delivered', "
                                 f"'system', '{{}}' FROM generate_series(1, $1::int)", events)
        await connection.execute("ANALYZE audit_event")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def write_until(url: str, done: asyncio.Event) -> list[float]:
    """An old replica's audit writes, one every WRITE_EVERY seconds until `done`: their waits."""
    import asyncpg

    from storage import db as storage_db

    connection = await asyncpg.connect(storage_db.asyncpg_dsn(url))
    waits: list[float] = []
    try:
        while not done.is_set():
            started = time.perf_counter()
            await connection.execute(f"INSERT INTO audit_event {_AUDIT_ROW} "
                                     "VALUES (now(), 'notice.acknowledged', 'system', '{}')")
            waits.append(time.perf_counter() - started)
            await asyncio.sleep(WRITE_EVERY)
    finally:
        await connection.close()
    return waits


async def upgrade_from(tree: Path, url: str) -> tuple[float, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(HERALD_DATABASE_URL=url, PYTHONPATH=str(tree))
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "db", "upgrade", cwd=tree, env=env,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await child.communicate()
    return time.perf_counter() - started, child.returncode or 0, err.decode()[-500:]


async def one_run(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    database = ScratchDatabase(args.database_url, False, name="upgrade")
    url = await database.create()
    try:
        seed_seconds = await seed(url, args.start, args.events)
        progress(f"{tree}: {args.events} audit events in {seed_seconds:.1f} s; upgrading")
        done = asyncio.Event()
        writer = asyncio.create_task(write_until(url, done))
        seconds, code, stderr = await upgrade_from(tree, url)
        done.set()
        waits = sorted(await writer)
        return {"code": str(tree), "upgrade_seconds": round(seconds, 2), "exit_code": code,
                "writes": len(waits), "write_p99_ms": round(1000 * waits[int(0.99 * (len(waits) - 1))], 1),
                "write_max_ms": round(1000 * waits[-1], 1), "writes_over_1s": sum(w > 1 for w in waits),
                **({"stderr": stderr} if code else {})}
    finally:
        await database.drop()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    trees = [path.resolve() for path in (args.code or [ROOT])]
    runs = [await one_run(tree, args) for _ in range(args.runs) for tree in trees]
    return {"events": args.events, "from": args.start, "write_every_ms": WRITE_EVERY * 1000, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="postgres://... (a scratch database is made beside it)")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--code", type=Path, action="append", default=None,
                        help="a checkout whose `herald db upgrade` to run (repeat to compare; default: this one)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--from", dest="start", default="0030_tick_sweep_indexes",
                        help="the migration the database is at before the upgrade")
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("PostgreSQL only: give --database-url postgres://...")
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    return 1 if any(r["exit_code"] for r in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
