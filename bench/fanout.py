#!/usr/bin/env python
"""Fan-out benchmark: one must-know notice to N Slack members through the real Herald path.

    python bench/fanout.py [--recipients 10000] [--concurrency 64] [--lane-inflight 64] [--batch-size 200]
                           [--database-url sqlite:///tmp/x.db | postgres://user@host:port/db] [--keep]
                           [--latency-ms 0] [--cold-start]

What it does:

1. Starts the fake Slack Web API (tests/fakes/slack_api.py, ``record_calls=False``) in a child
   process (``multiprocessing`` spawn), with workspace T0BENCH, its bot token and N users. The
   fake gets its own interpreter and core, so the numbers below are Herald's alone (CPU and
   memory), and Herald and the baseline compete for the same one core on a 2-core machine.
2. Creates a fresh database (a temporary SQLite file by default; a given ``sqlite://`` path must
   not exist yet; for a ``postgres://`` URL a uniquely named database is created next to the one
   named and dropped at the end) and migrates it (``storage.db.connect``).
3. Seeds N members of one organisation through ``import_directory`` (the real path; its time is
   ``seed_seconds``), stores the workspace token and adds a CAM. Then it freezes the start-up
   heap as ``herald serve`` does once started (``bot.common.heap``), before either timed part.
4. Baseline: a bare ``aiohttp.ClientSession`` doing what SlackChannel does on a fresh directory
   -- ``chat.postMessage`` to the member's user id with the same JSON body (channel, text,
   blocks, unfurl flags, metadata) and the same headers -- for every recipient, with
   ``asyncio.Semaphore(concurrency)``. It runs once before and once after the Herald run; the
   mean is reported. It posts a separate (never sent) draft's view so its messages are told
   apart from Herald's.
5. Herald: ``create_draft`` (untimed), then ``send_draft`` + ``herald.outbox.drain()`` timed
   together as ``seconds``.
6. Verifies: every delivery row delivered exactly once (one attempt), the fake saw exactly N
   ``chat.postMessage`` calls during the Herald run, every DM channel holds exactly one copy of
   the notice, and the (channel, ts) the database recorded are exactly the messages the fake
   holds. Exits 1 if anything is off.

Without --latency-ms the fake answers as fast as it can, so the run is CPU-bound and measures
Herald's cost per delivery; --latency-ms N delays the fake's answers to look like Slack's round trip.

--cold-start adds ``cold_start``: delivery throughput while the knowledge base's semantic index is
built on a first start (issue 10: it must stay within 10% of a warm start), see
``cold_start_comparison``.

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `tests.fakes` is not part of the installed package

from bench.scratch_db import ScratchDatabase  # noqa: E402
from storage.db import shown_url  # noqa: E402

TEAM = "T0BENCH"
TOKEN = "xoxb-bench-token"
CAM_EMAIL = "cam@vendor.example"
CAM_USER = "UCAMBENCH"
METADATA_EVENT = "herald_notice"

_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[fanout {time.perf_counter() - _T0:7.2f}s] {message}", file=sys.stderr, flush=True)


def user_id(i: int) -> str:
    return f"UB{i:07d}"


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux reports KiB


# --------------------------------------------------------------------------- the fake, in a child


def _fake_process(conn: Any, recipients: int) -> None:
    """Child process: serve the fake Slack API until told to stop; answer questions over `conn`."""
    from tests.fakes.slack_api import FakeSlackAPI

    users = [user_id(i) for i in range(recipients)]

    def answer(fake: FakeSlackAPI, command: str, arg: Any) -> Any:
        if command == "counts":
            return {m: fake.call_count(m) for m in ("conversations.open", "chat.postMessage",
                                                    "conversations.history")}
        if command == "copies":  # every (channel, ts) carrying notice `arg`, and per-channel counts
            copies: list[tuple[str, str]] = []
            per_channel: dict[int, int] = {}
            for uid in users:
                channel = fake.dm_channel_id(uid)
                found = [m["ts"] for m in fake.messages(channel)
                         if ((m.get("metadata") or {}).get("event_payload") or {}).get("notice_id") == arg]
                per_channel[len(found)] = per_channel.get(len(found), 0) + 1
                copies.extend((channel, ts) for ts in found)
            return {"copies": copies, "channels_by_copy_count": per_channel}
        if command == "latency":  # answer the two hot methods after `arg` seconds (0 = at once)
            for method in ("conversations.open", "chat.postMessage"):
                fake.delay(method, arg)
            return None
        raise ValueError(f"unknown command {command!r}")

    async def serve() -> None:
        fake = FakeSlackAPI(record_calls=False)
        await fake.start()
        fake.add_workspace(TEAM, TOKEN)
        fake.add_user(TEAM, CAM_USER)
        for uid in users:
            fake.add_user(TEAM, uid)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def on_readable() -> None:
            try:
                while conn.poll():
                    command, arg = conn.recv()
                    if command == "stop":
                        done.set()
                        return
                    try:
                        conn.send(("ok", answer(fake, command, arg)))
                    except Exception as exc:  # noqa: BLE001 - report to the parent, keep serving
                        conn.send(("error", repr(exc)))
            except (EOFError, OSError):  # the parent went away
                done.set()

        loop.add_reader(conn.fileno(), on_readable)
        conn.send(("ready", fake.url))
        await done.wait()
        loop.remove_reader(conn.fileno())
        await fake.stop()

    asyncio.run(serve())


class FakeHandle:
    def __init__(self, recipients: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_fake_process, args=(child_conn, recipients), daemon=True,
                                   name="fake-slack")
        self.process.start()
        child_conn.close()
        try:
            if not self.conn.poll(120):
                raise RuntimeError("the fake Slack API did not start within 120 s")
            status, self.url = self.conn.recv()
        except EOFError:
            raise RuntimeError("the fake Slack API process exited during start-up (see its traceback above)") from None
        if status != "ready":
            raise RuntimeError(f"the fake Slack API failed to start: {self.url}")

    def ask(self, command: str, arg: Any = None) -> Any:
        self.conn.send((command, arg))
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"fake Slack API: {value}")
        return value

    def stop(self) -> None:
        try:
            self.conn.send(("stop", None))
        except OSError:
            pass
        self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# --------------------------------------------------------------------------- databases


# --------------------------------------------------------------------------- seeding


def directory_csv(recipients: int) -> str:
    from bot.core.directory.importer import COLUMNS

    lines = [",".join(COLUMNS)]
    for i in range(recipients):
        lines.append(
            f"bench,Bench Partner Ltd,gold,emea,de,security,large,distributor,{CAM_EMAIL},"
            f"member{i:07d}@bench-partner.example,Member {i},sales,Europe/Berlin,en,{TEAM},{user_id(i)},,"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the baseline


async def baseline_run(api_url: str, view: Any, recipients: int, concurrency: int) -> tuple[float, float]:
    """chat.postMessage to the recipient's user id with a bare aiohttp session: what
    SlackChannel.deliver puts on the wire for a member without a stored DM channel (Slack opens
    the DM and answers with its id; no conversations.open since issue 12).
    Returns (wall seconds, this process's CPU seconds)."""
    import aiohttp

    from bot.channels.slack_blocks import notice_blocks, notice_fallback_text

    text, blocks = notice_fallback_text(view), notice_blocks(view)
    # The headers slack_sdk sends for json= calls.
    json_headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json;charset=utf-8"}
    post_url = api_url + "chat.postMessage"
    semaphore = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                     timeout=aiohttp.ClientTimeout(total=20)) as session:
        async def one(i: int) -> None:
            async with semaphore:
                body = {"channel": user_id(i), "text": text, "blocks": blocks,
                        "unfurl_links": False, "unfurl_media": False,
                        "metadata": {"event_type": METADATA_EVENT,
                                     "event_payload": {"notice_id": view.notice_id, "delivery_id": i}}}
                async with session.post(post_url, json=body, headers=json_headers) as r:
                    posted = await r.json()
                if not posted.get("ok"):
                    failures.append(str(posted.get("error")))

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(recipients)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if failures:
        raise RuntimeError(f"baseline: {len(failures)} calls failed, e.g. {failures[:3]}")
    return elapsed, cpu


# --------------------------------------------------------------------------- the run


async def run(args: argparse.Namespace, fake: FakeHandle) -> dict[str, Any]:
    from bot.core.commands.parser import SendCommand
    from bot.core.directory.importer import import_directory
    from bot.core.notices.sending import create_draft, send_draft
    from bot.core.directory.staff import add_staff
    from bot.core.notices.views import notice_view
    from bot.core.directory.workspaces import add_slack_workspace
    from bot.common.heap import freeze_startup_heap
    from bot.service import Herald
    from config.settings import load_settings
    from storage import db as storage_db
    from storage.models import Delivery, DeliveryStatus, Notice, NoticeStatus

    n = args.recipients
    database = ScratchDatabase(args.database_url, args.keep, name="fanout")
    await database.create()
    result: dict[str, Any] = {}
    problems: list[str] = []
    herald = None
    extra: dict[str, Any] = {}
    try:
        if args.cold_start:  # an empty vector store: the index build is a first start's
            extra["cache_dir"] = Path(tempfile.mkdtemp(prefix="herald-fanout-cold-"))
        settings = load_settings(database_url=database.url, slack_api_url=fake.url,
                                 slack_signing_secret="bench-signing-secret",
                                 delivery_concurrency=args.concurrency, delivery_batch_size=args.batch_size,
                                 delivery_lane_inflight=args.lane_inflight or args.concurrency,
                                 outbox_poll_seconds=3600, **extra)
        progress(f"migrating {database.kind} database {shown_url(database.url)}")
        await storage_db.connect(settings.tortoise_db_url)
        herald = Herald(settings)
        now = herald.clock.now()

        progress(f"seeding {n} members through import_directory")
        csv_text = directory_csv(n)
        started = time.perf_counter()
        imported = await import_directory(csv_text, now=now, actor="bench")
        seed_seconds = time.perf_counter() - started
        del csv_text
        if imported.rejected or imported.created != n:
            raise RuntimeError(f"directory import: created {imported.created}, rejected {imported.rejected[:3]}")
        await add_slack_workspace(TEAM, TOKEN, name="Bench", now=now, actor="bench")
        cam, _ = await add_staff(CAM_EMAIL, "cam", name="Bench CAM", slack_user=CAM_USER, slack_team=TEAM,
                                 now=now, actor="bench")
        progress(f"seeded in {seed_seconds:.2f}s")

        command = SendCommand(
            importance="must-know", topic="announcements", audience="all",
            title="Scheduled maintenance of the partner portal",
            body=("The partner portal will be unavailable on Saturday from 02:00 to 04:00 UTC while we "
                  "upgrade the ordering backend. Orders placed during the window are queued and processed "
                  "afterwards. Please acknowledge that you have read this notice."),
            link="https://partners.example/maintenance",
        )
        # The baseline posts a never-sent draft's view: the same payload, a different notice id.
        baseline_view = notice_view((await create_draft(cam, command, herald.catalog, now=now)).notice,
                                    herald.catalog)

        baseline_seconds_runs: list[float] = []
        baseline_cpu_runs: list[float] = []

        async def baseline(label: str) -> None:
            progress(f"baseline ({label}): {n} x chat.postMessage to the user id, "
                     f"concurrency {args.concurrency}")
            wall, cpu = await baseline_run(fake.url, baseline_view, n, args.concurrency)
            baseline_seconds_runs.append(wall)
            baseline_cpu_runs.append(cpu)
            progress(f"baseline ({label}): {wall:.2f}s")

        # As `herald serve` does once started; before the baseline too, so both run under it.
        freeze_startup_heap()
        await baseline("before")

        preview = await create_draft(cam, command, herald.catalog, now=herald.clock.now())
        if preview.recipients != n:
            problems.append(f"the draft previews {preview.recipients} recipients, expected {n}")
        counts_before = fake.ask("counts")
        rss_before_send = peak_rss_mb()
        progress(f"Herald: send_draft + outbox.drain (concurrency {args.concurrency}, batch {args.batch_size})")
        started, cpu_started = time.perf_counter(), time.process_time()
        sent = await send_draft(preview.notice.id, cam, herald.catalog, now=herald.clock.now())
        send_seconds = time.perf_counter() - started
        handled = await herald.outbox.drain()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        counts_after = fake.ask("counts")
        progress(f"Herald: {seconds:.2f}s (send_draft {send_seconds:.2f}s, drain {seconds - send_seconds:.2f}s)")

        await baseline("after")

        # ---- verification ----
        progress("verifying")
        notice_id = preview.notice.id
        if sent.already or sent.recipients != n:
            problems.append(f"send_draft: already={sent.already} recipients={sent.recipients}")
        if handled != n:
            problems.append(f"outbox.drain handled {handled} rows, expected {n}")
        by_status: dict[str, int] = {}
        for status in DeliveryStatus:
            count = await Delivery.filter(notice_id=notice_id, status=status.value).count()
            if count:
                by_status[status.value] = count
        if by_status != {DeliveryStatus.DELIVERED.value: n}:
            problems.append(f"delivery rows by status: {by_status}, expected {{'delivered': {n}}}")
        retried = await Delivery.filter(notice_id=notice_id).exclude(attempts=1).count()
        if retried:
            problems.append(f"{retried} delivery rows took other than exactly one attempt")
        notice = await Notice.get(id=notice_id)
        if notice.status != NoticeStatus.SENT.value:
            problems.append(f"notice status is {notice.status!r}, expected 'sent'")
        delta = {m: counts_after[m] - counts_before[m] for m in counts_after}
        if delta["chat.postMessage"] != n:
            problems.append(f"the fake saw {delta['chat.postMessage']} chat.postMessage calls, expected {n}")
        if delta["conversations.open"] != 0:  # posts go to the user id (issue 12)
            problems.append(f"the fake saw {delta['conversations.open']} conversations.open calls, expected 0")
        copies = fake.ask("copies", notice_id)
        by_count = {int(k): v for k, v in copies["channels_by_copy_count"].items()}
        if by_count != {1: n}:
            problems.append(f"DM channels by number of copies of the notice: {by_count}, expected {{1: {n}}}")
        recorded = set(await Delivery.filter(notice_id=notice_id).values_list("channel_id", "message_id"))
        held = {tuple(c) for c in copies["copies"]}
        if recorded != held or len(held) != n:
            problems.append(f"(channel, ts) recorded in the database ({len(recorded)}) differ from the "
                            f"messages the fake holds ({len(held)}): {len(recorded ^ held)} mismatches")

        baseline_seconds = sum(baseline_seconds_runs) / len(baseline_seconds_runs)
        deliveries_per_s = n / seconds
        baseline_per_s = n / baseline_seconds
        result = {
            "recipients": n,
            "seconds": round(seconds, 3),
            "deliveries_per_s": round(deliveries_per_s, 1),
            "baseline_seconds": round(baseline_seconds, 3),
            "baseline_per_s": round(baseline_per_s, 1),
            "ratio": round(deliveries_per_s / baseline_per_s, 3),
            "peak_rss_mb": peak_rss_mb(),
            "seed_seconds": round(seed_seconds, 3),
            "concurrency": args.concurrency,
            "batch_size": args.batch_size,
            "lane_inflight": args.lane_inflight or args.concurrency,
            "database": database.kind,
            "verified": not problems,
            "latency_ms": args.latency_ms,
            "send_draft_seconds": round(send_seconds, 3),
            "drain_seconds": round(seconds - send_seconds, 3),
            "baseline_runs_seconds": [round(s, 3) for s in baseline_seconds_runs],
            "baseline_mode": "mean of one run before and one run after the Herald run",
            "rss_mb_before_send": rss_before_send,
            "herald_cpu_seconds": round(cpu_seconds, 3),
            "baseline_cpu_seconds": round(sum(baseline_cpu_runs) / len(baseline_cpu_runs), 3),
            "fake_calls_during_herald_run": delta,
            "notes": ("the fake Slack API runs in a child process (multiprocessing spawn), so peak_rss_mb is "
                      "this process only: Herald plus the seeding and the baseline client; rss_mb_before_send "
                      "is the peak before send_draft; seconds = send_draft + outbox.drain; *_cpu_seconds are this "
                      "process's CPU time (all threads, aiosqlite's included) over the same interval"),
        }
        if args.cold_start:
            result["cold_start"] = await cold_start_comparison(herald, cam, command, n, problems)
            result["verified"] = not problems
        if problems:
            result["problems"] = problems
        return result
    finally:
        if herald is not None:
            await herald.close()
        if "cache_dir" in extra:
            shutil.rmtree(extra["cache_dir"], ignore_errors=True)
        await storage_db.close()
        await database.drop()


async def cold_start_comparison(herald: Any, cam: Any, command: Any, n: int, problems: list[str]) -> dict[str, Any]:
    """Deliveries while the knowledge base's semantic index is built on a first start, against the same
    deliveries with no build running.

    The build starts (empty vector store) as the first cold notice is sent; notices of n recipients
    follow one another until the build is done and the service has switched over. Then as many
    notices are sent with nothing else running (warm). Every notice goes to the same n members,
    who all have a DM channel by then, so cold and warm notices cost the same work."""
    from bot.core.notices.sending import create_draft, send_draft
    from storage.models import Delivery, DeliveryStatus

    async def one_notice() -> tuple[float, float]:
        preview = await create_draft(cam, command, herald.catalog, now=herald.clock.now())
        started, cpu_started = time.perf_counter(), time.process_time()
        await send_draft(preview.notice.id, cam, herald.catalog, now=herald.clock.now())
        handled = await herald.outbox.drain()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        delivered = await Delivery.filter(notice_id=preview.notice.id, status=DeliveryStatus.DELIVERED.value,
                                          attempts=1).count()
        if handled != n or delivered != n:
            problems.append(f"notice {preview.notice.id}: handled {handled}, delivered at the first attempt "
                            f"{delivered}, expected {n}")
        return wall, cpu

    progress("cold start: building the semantic index (empty cache) while sending notices")
    build_started = time.perf_counter()
    build = herald.start_index_build()
    cold: list[tuple[float, float]] = []
    while not build.done() or not cold:
        cold.append(await one_notice())
        progress(f"cold notice {len(cold)}: {n / cold[-1][0]:.0f} deliveries/s, build done: {build.done()}")
        if len(cold) >= 500:
            problems.append("the index build did not finish within 500 notices")
            break
    kb = await build if build.done() else None
    build_seconds = time.perf_counter() - build_started
    if kb is None or not kb.semantic:
        problems.append("the index build failed (see the log)")
    progress(f"warm: {len(cold)} notices with no build running")
    warm = [await one_notice() for _ in cold]
    cold_rate = n * len(cold) / sum(w for w, _ in cold)
    warm_rate = n * len(warm) / sum(w for w, _ in warm)
    return {
        "notices_each": len(cold),
        "cold_deliveries_per_s": round(cold_rate, 1),
        "warm_deliveries_per_s": round(warm_rate, 1),
        "cold_over_warm": round(cold_rate / warm_rate, 3),
        "cold_notice_seconds": [round(w, 3) for w, _ in cold],
        "warm_notice_seconds": [round(w, 3) for w, _ in warm],
        "cold_cpu_seconds": round(sum(c for _, c in cold), 3),
        "warm_cpu_seconds": round(sum(c for _, c in warm), 3),
        "index_build_seconds": round(build_seconds, 2),
        "semantic_after_build": bool(kb is not None and kb.semantic),
        "notes": ("cold = notices sent back to back from the start of a first-start index build (child "
                  "process, empty vector store) until the service switched to the semantic index; warm = "
                  "the same number of notices afterwards; *_cpu_seconds are this process's"),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64,
                        help="delivery_concurrency (and the baseline's); default 64, Herald's own default")
    parser.add_argument("--lane-inflight", type=int, default=0,
                        help="delivery_lane_inflight: the lane's window of sends not yet recorded, so the most "
                             "rows in doubt after a crash (default: --concurrency)")
    parser.add_argument("--batch-size", type=int, default=200,
                        help="delivery_batch_size (default 200, as in production)")
    parser.add_argument("--database-url", default=None,
                        help="sqlite://PATH (must not exist) or postgres://... (a fresh database is created "
                             "beside it); default: a temporary SQLite file")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="make the fake answer conversations.open and chat.postMessage after this many ms "
                             "(simulates Slack's round trip; default 0 = as fast as the fake can)")
    parser.add_argument("--cold-start", action="store_true",
                        help="also measure deliveries while the knowledge base's semantic index is built on a "
                             "first start (empty cache) against the same deliveries warm; both in the output "
                             "under cold_start")
    args = parser.parse_args(argv)
    if args.recipients < 1:
        parser.error("--recipients must be at least 1")
    if args.concurrency < 1 or args.batch_size < 1 or args.latency_ms < 0:
        parser.error("--concurrency and --batch-size must be at least 1, --latency-ms at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.chdir(ROOT)  # config/.env lookups behave as in the service
    progress(f"starting the fake Slack API (child process) with {args.recipients} users")
    fake = FakeHandle(args.recipients)
    try:
        if args.latency_ms:
            fake.ask("latency", args.latency_ms / 1000)
        result = asyncio.run(run(args, fake))
    finally:
        fake.stop()
    result["fake_peak_rss_mb"] = peak_rss_mb(resource.RUSAGE_CHILDREN)
    print(json.dumps(result))
    if not result.get("verified"):
        progress("VERIFICATION FAILED: " + "; ".join(result.get("problems", [])))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
