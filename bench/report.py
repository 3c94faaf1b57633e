#!/usr/bin/env python
"""Report benchmark: the CSV acknowledgement report of one notice with 100,000 recipients.

    python bench/report.py [--recipients 100000] [--orgs 500] [--small 1000]
                           [--database-url sqlite:///tmp/x.db | postgres://user@host:port/db] [--keep]

What it does:

1. Creates a fresh database (a temporary SQLite file by default; a given ``sqlite://`` path must
   not exist yet; for a ``postgres://`` URL a uniquely named database is created next to the one
   named and dropped at the end) and migrates it.
2. Seeds it directly with ``bulk_create`` (not through the delivery engine): ``--orgs``
   organisations, ``--recipients`` members, one sent must-know notice with one delivery per member
   (about 97 % delivered, 2 % failed with a reason, 1 % pending), about 60 % of the delivered
   members acknowledged, a delivered reminder for 1 % of the members, and an escalation per
   organisation naming its members who had not acknowledged. A second notice goes to the first
   ``--small`` members only: the same export at a hundredth of the size, for comparison.
   A compliance officer and an API token are created through ``bot.core.compliance.api_tokens``.
3. CLI: runs ``herald report ID --format csv --output FILE`` (``python -m bot.cli``) in a child
   process; its peak RSS comes from ``/usr/bin/time -v`` (else from polling its VmHWM). Baselines: the
   same for ``herald notices list --limit 1`` (start-up, database connection, one query) and
   for the small notice.
4. HTTP: starts ``build_app`` (no outbox worker) with ``web.run_app`` in a child process, waits
   for /healthz, reads its RSS idle (``/proc/PID/status`` VmRSS/VmHWM), streams the small
   report, then ``GET /api/v1/notices/ID/report?format=csv`` with the bearer token, counting rows
   as they arrive (nothing is kept), then reads VmHWM (the peak since the server's exec) again
   and stops the server.
5. Verifies: both exports hold exactly N data rows; the CLI file's acknowledged, failed and
   escalated cells match what was seeded. Exits 1 if anything is off.

Prints one JSON object on stdout; progress goes to stderr. Memory figures are MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scratch_db import ScratchDatabase  # noqa: E402

COMPLIANCE_EMAIL = "compliance@vendor.example"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[report {time.perf_counter() - _T0:7.2f}s] {message}", file=sys.stderr, flush=True)


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


# --------------------------------------------------------------------------- databases


async def seed(n: int, orgs: int, small: int) -> dict[str, Any]:
    """Bulk-insert the directory, the notices and their outcomes; returns what to expect."""
    from bot.core.compliance.api_tokens import create_token
    from storage.models import (
        Acknowledgement,
        Delivery,
        Escalation,
        Member,
        Notice,
        Organisation,
        Staff,
    )

    batch = 5000
    await Organisation.bulk_create(
        [Organisation(external_id=f"org{i:04d}", name=f"Partner {i:04d} GmbH", tier="gold", region="emea")
         for i in range(orgs)], batch_size=batch)
    org_ids = [o["id"] for o in await Organisation.all().order_by("id").values("id")]
    members = [Member(organisation_id=org_ids[i % orgs], email=f"member{i:07d}@partner{i % orgs:04d}.example",
                      name=f"Member {i}", role=("sales", "support", "operations")[i % 3], timezone="Europe/Berlin")
               for i in range(n)]
    await Member.bulk_create(members, batch_size=batch)
    del members
    member_rows = await Member.all().order_by("id").values_list("id", "organisation_id")
    cam = await Staff.create(email="cam@vendor.example", name="Bench CAM", role="cam")
    await Staff.create(email=COMPLIANCE_EMAIL, name="Bench Compliance", role="compliance")
    deadline = T0 + timedelta(days=5)
    notice = await Notice.create(topic="operations", importance="must-know", title="Recall of LX-200",
                                 body="Stop selling LX-200 and return stock.", audience="all", author=cam,
                                 status="sent", recipient_count=n, created_at=T0, sent_at=T0, deadline=deadline)
    small_notice = await Notice.create(topic="operations", importance="must-know", title="Small recall",
                                       body="b", audience="all", author=cam, status="sent", recipient_count=small,
                                       created_at=T0, sent_at=T0)

    expected = {"rows": n, "delivered": 0, "failed": 0, "pending": 0, "acknowledged": 0, "escalated": 0,
                "reminded": 0}
    unacked_by_org: dict[int, list[int]] = {}
    deliveries, acks, reminders = [], [], []
    for i, (member_id, org_id) in enumerate(member_rows):
        status = "delivered"
        if i % 100 == 7 or i % 100 == 57:
            status = "failed"
        elif i % 100 == 99:
            status = "pending"
        expected[status] += 1
        deliveries.append(Delivery(
            notice_id=notice.id, member_id=member_id, platform="slack", status=status, attempts=1,
            next_attempt_at=T0, created_at=T0, workspace_external_id="T0BENCH",
            delivered_at=T0 + timedelta(seconds=i % 600) if status == "delivered" else None,
            error="UB0000 does not exist in workspace T0BENCH" if status == "failed" else ""))
        if status == "delivered" and i % 5 < 3:  # 60 % of the delivered
            acks.append(Acknowledgement(notice_id=notice.id, member_id=member_id, platform="slack", revision=1,
                                        acknowledged_at=T0 + timedelta(hours=1, seconds=i % 3600)))
            expected["acknowledged"] += 1
        else:
            unacked_by_org.setdefault(org_id, []).append(member_id)
            expected["escalated"] += 1
        if status == "delivered" and i % 100 == 3:
            reminders.append(Delivery(notice_id=notice.id, member_id=member_id, platform="slack", kind="reminder",
                                      sequence=1, status="delivered", next_attempt_at=T0, created_at=T0,
                                      delivered_at=T0 + timedelta(days=1)))
            expected["reminded"] += 1
        if len(deliveries) >= batch:
            await Delivery.bulk_create(deliveries, batch_size=batch)
            deliveries = []
        if len(acks) >= batch:
            await Acknowledgement.bulk_create(acks, batch_size=batch)
            acks = []
    await Delivery.bulk_create(deliveries, batch_size=batch)
    await Acknowledgement.bulk_create(acks, batch_size=batch)
    await Delivery.bulk_create(reminders, batch_size=batch)
    await Escalation.bulk_create(
        [Escalation(notice_id=notice.id, organisation_id=org_id, staff_id=cam.id, member_ids=ids, status="delivered",
                    created_at=deadline, sent_at=deadline + timedelta(minutes=1))
         for org_id, ids in unacked_by_org.items()], batch_size=500)
    await Delivery.bulk_create(
        [Delivery(notice_id=small_notice.id, member_id=member_id, platform="slack", status="delivered",
                  next_attempt_at=T0, created_at=T0, delivered_at=T0) for member_id, _ in member_rows[:small]],
        batch_size=batch)
    _, token = await create_token(COMPLIANCE_EMAIL, name="bench", now=datetime.now(UTC), actor="bench")
    return {"notice_id": notice.id, "small_notice_id": small_notice.id, "token": token, "expected": expected}


# --------------------------------------------------------------------------- measuring


def _env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({"HERALD_DATABASE_URL": database_url, "HERALD_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    return env


TIME = "/usr/bin/time"


def run_cli(args: list[str], database_url: str) -> dict[str, Any]:
    """Run `herald ARGS` in a child: wall time and the child's own peak RSS.

    The peak comes from GNU time's "Maximum resident set size" when /usr/bin/time exists (it is
    forked from the small `time` process, so the figure is the CLI's alone; `wait4`'s ru_maxrss of
    a child forked from this large process would include this process's pages from before the
    exec), else from polling the child's VmHWM in /proc."""
    command = [sys.executable, "-m", "bot.cli", *args]
    use_time = os.access(TIME, os.X_OK)
    if use_time:
        command = [TIME, "-v", *command]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=_env(database_url), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    peak_kib = 0.0
    if use_time:
        _, stderr = child.communicate()
    else:
        peak_kib = watch_peak(child)
        stderr = child.stderr.read() if child.stderr else b""  # type: ignore[union-attr]
    seconds = time.perf_counter() - started
    text = stderr.decode(errors="replace")
    if child.returncode != 0:
        raise RuntimeError(f"herald {' '.join(args)} exited {child.returncode}: {text[-2000:]}")
    if use_time:
        for line in text.splitlines():
            if "Maximum resident set size" in line:
                peak_kib = float(line.rsplit(":", 1)[1])
    return {"seconds": round(seconds, 2), "peak_rss_mb": mib(peak_kib),
            "measured_by": "/usr/bin/time -v" if use_time else "/proc VmHWM polling"}


def watch_peak(child: subprocess.Popen) -> float:
    """Poll a running child's peak resident memory until it exits, in KiB (VmHWM, as /usr/bin/time -v gives it)."""
    peak = 0.0
    while child.poll() is None:
        try:
            peak = max(peak, proc_memory(child.pid).get("VmHWM", 0.0) * 1024)
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.01)
    return peak


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak so far) of a live process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = mib(float(rest.split()[0]))
    return values


def count_csv(path: Path) -> dict[str, int]:
    counts = {"rows": 0, "acknowledged": 0, "failed": 0, "escalated": 0, "reminded": 0}
    with path.open(encoding="utf-8", newline="") as handle:
        data = (line for line in handle if not line.startswith("#"))
        reader = csv.reader(data)
        header = next(reader)
        col = {name: i for i, name in enumerate(header)}
        for row in reader:
            counts["rows"] += 1
            counts["acknowledged"] += bool(row[col["acknowledged_at"]])
            counts["failed"] += bool(row[col["failure_reason"]])
            counts["escalated"] += bool(row[col["escalated_at"]])
            counts["reminded"] += row[col["reminders_sent"]] not in ("", "0")
    return counts


SERVER = """
import sys
from aiohttp import web
from bot.app import build_app
from config.settings import load_settings
web.run_app(build_app(load_settings(), run_worker=False), host="127.0.0.1", port=int(sys.argv[1]),
            print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def stream_report(url: str, token: str) -> dict[str, Any]:
    """GET the report, counting data rows as the bytes arrive; nothing is kept."""
    import aiohttp

    rows, size, tail, header_seen = 0, 0, b"", False
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {response.status}: {(await response.text())[:500]}")
            content_type = response.headers.get("Content-Type", "")
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if line.startswith(b"#"):
                        continue
                    if not header_seen:
                        header_seen = True
                        continue
                    rows += 1
    if tail:
        rows += 1
    return {"seconds": round(time.perf_counter() - started, 2), "rows": rows, "bytes": size,
            "content_type": content_type}


async def measure_http(database_url: str, notice_id: int, small_id: int, token: str) -> dict[str, Any]:
    import aiohttp

    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=_env(database_url), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                if server.poll() is not None:
                    raise RuntimeError(f"the server exited: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                try:
                    async with session.get(base + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the server did not become healthy within 60 s")
        startup = time.perf_counter() - started
        idle = proc_memory(server.pid)
        small = await stream_report(f"{base}/api/v1/notices/{small_id}/report?format=csv", token)
        after_small = proc_memory(server.pid)
        big = await stream_report(f"{base}/api/v1/notices/{notice_id}/report?format=csv", token)
        after_big = proc_memory(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stderr is not None:
            server.stderr.close()
    return {"startup_seconds": round(startup, 2), "idle": idle, "small": small, "after_small": after_small,
            "big": big, "after_big": after_big}


# --------------------------------------------------------------------------- the run


async def prepare(args: argparse.Namespace, database: ScratchDatabase) -> dict[str, Any]:
    from storage import db as storage_db

    await database.create()
    progress(f"migrating {database.kind} database")
    await storage_db.connect(database.url)
    try:
        progress(f"seeding {args.orgs} organisations, {args.recipients} members, deliveries and acknowledgements")
        started = time.perf_counter()
        seeded = await seed(args.recipients, args.orgs, args.small)
        seeded["seed_seconds"] = round(time.perf_counter() - started, 2)
        progress(f"seeded in {seeded['seed_seconds']}s")
    finally:
        await storage_db.close()
    return seeded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=500)
    parser.add_argument("--small", type=int, default=1000, help="recipients of the comparison notice")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the database (and the report file)")
    args = parser.parse_args()
    if args.recipients < 1 or args.orgs < 1 or not 1 <= args.small <= args.recipients:
        parser.error("need recipients >= 1, orgs >= 1 and 1 <= small <= recipients")

    database = ScratchDatabase(args.database_url, args.keep, name="report_bench")
    workdir = Path(tempfile.mkdtemp(prefix="herald-report-out-"))
    problems: list[str] = []
    try:
        seeded = asyncio.run(prepare(args, database))
        expected = seeded["expected"]
        n = args.recipients

        progress("CLI baseline: herald notices list --limit 1")
        cli_idle = run_cli(["notices", "list", "--limit", "1"], database.url)
        progress(f"CLI: herald report {seeded['small_notice_id']} (small, {args.small} rows)")
        cli_small = run_cli(["report", str(seeded["small_notice_id"]), "--format", "csv",
                             "--output", str(workdir / "small.csv")], database.url)
        progress(f"CLI: herald report {seeded['notice_id']} ({n} rows)")
        out = workdir / "report.csv"
        cli = run_cli(["report", str(seeded["notice_id"]), "--format", "csv", "--output", str(out)], database.url)
        progress(f"CLI: {cli['seconds']}s, peak RSS {cli['peak_rss_mb']} MiB; verifying the file")
        counted = count_csv(out)
        small_counted = count_csv(workdir / "small.csv")
        for key in ("rows", "acknowledged", "failed", "escalated", "reminded"):
            if counted[key] != expected[key]:
                problems.append(f"CLI file: {counted[key]} {key}, expected {expected[key]}")
        if small_counted["rows"] != args.small:
            problems.append(f"small CLI file: {small_counted['rows']} rows, expected {args.small}")
        file_bytes = out.stat().st_size

        progress("HTTP: starting the server")
        http = asyncio.run(measure_http(database.url, seeded["notice_id"], seeded["small_notice_id"],
                                        seeded["token"]))
        progress(f"HTTP: {http['big']['seconds']}s, server peak RSS {http['after_big'].get('VmHWM')} MiB")
        if http["big"]["rows"] != n:
            problems.append(f"HTTP: {http['big']['rows']} rows, expected {n}")
        if http["small"]["rows"] != args.small:
            problems.append(f"HTTP small: {http['small']['rows']} rows, expected {args.small}")
        if not http["big"]["content_type"].startswith("text/csv"):
            problems.append(f"HTTP content type {http['big']['content_type']!r}")

        result = {
            "database": database.kind,
            "rows": counted["rows"],
            "organisations": args.orgs,
            "seed_seconds": seeded["seed_seconds"],
            "expected": expected,
            "cli": {"seconds": cli["seconds"], "peak_rss_mb": cli["peak_rss_mb"], "bytes": file_bytes,
                    "peak_measured_by": cli["measured_by"],
                    "rows_per_second": round(n / cli["seconds"]) if cli["seconds"] else None},
            "http": {"seconds": http["big"]["seconds"], "peak_rss_mb": http["after_big"].get("VmHWM"),
                     "peak_measured_by": "server VmHWM (/proc) after the export",
                     "rss_after_mb": http["after_big"].get("VmRSS"), "bytes": http["big"]["bytes"],
                     "rows": http["big"]["rows"],
                     "rows_per_second": round(n / http["big"]["seconds"]) if http["big"]["seconds"] else None},
            "baseline": {
                "cli_idle": {**cli_idle, "what": "herald notices list --limit 1 (start-up + one query)"},
                "cli_small_report": {**cli_small, "rows": small_counted["rows"]},
                "http_rss_before_mb": http["idle"].get("VmRSS"),
                "http_peak_rss_idle_mb": http["idle"].get("VmHWM"),
                "http_small_report": {"seconds": http["small"]["seconds"], "rows": http["small"]["rows"],
                                      "peak_rss_mb": http["after_small"].get("VmHWM")},
                "http_startup_seconds": http["startup_seconds"],
            },
            "memory_growth_mb": {
                "cli_vs_idle": round(cli["peak_rss_mb"] - cli_idle["peak_rss_mb"], 1),
                "cli_vs_small_report": round(cli["peak_rss_mb"] - cli_small["peak_rss_mb"], 1),
                "http_vs_idle": round((http["after_big"].get("VmHWM") or 0) - (http["idle"].get("VmHWM") or 0), 1),
                "http_vs_small_report": round((http["after_big"].get("VmHWM") or 0)
                                              - (http["after_small"].get("VmHWM") or 0), 1),
            },
            "ok": not problems,
            "problems": problems,
        }
        print(json.dumps(result, indent=2))
    finally:
        asyncio.run(database.drop())
        if args.keep:
            progress(f"kept the report files in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    progress("done" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
