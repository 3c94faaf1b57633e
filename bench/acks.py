#!/usr/bin/env python
"""Acknowledgement benchmark: Acknowledge clicks at a steady rate against one `herald serve` on
PostgreSQL, half Slack ``block_actions`` and half Teams ``invoke`` (Action.Execute).

    python bench/acks.py [--rate 500] [--seconds 60] [--members N] [--duplicates 0.05]
                         [--workspaces 50] [--loadgen-processes 1] [--settle 300]
                         [--database-url postgres://...] [--keep] [--py-spy FILE]

1. PostgreSQL (a throwaway cluster from .ci/postgres.sh, or a fresh database on the server of
   --database-url), migrated once; the fake Slack API and the fake Bot Connector each in its own
   process (tests/fakes/cli.py); --members members written straight into the database (half Slack
   over --workspaces workspaces, half Teams over as many tenants).
2. One ``herald serve``; ``herald send --importance must-know --audience all --yes`` reaches every
   member with the fakes' limits OFF (setting up, not measured), then the fakes' limits are turned
   ON (Slack's and Microsoft's documented figures, ``POST /_fake/limits``) and their counters reset.
3. A separate load-generator process (aiohttp; --loadgen-processes of them) clicks Acknowledge on
   an open-loop schedule, --rate a second for --seconds: every member once, in random order, plus
   --duplicates of the clicks again (a double click; must change nothing). Slack clicks are signed
   with the signing secret as Slack signs them (v0 HMAC-SHA256) and carry what Slack's do: the
   pressed message's channel and ts, and a ``response_url`` (the fake Slack's, which counts its
   uses as ``response_url`` in its stats); Teams invokes are sent WITHOUT a
   Bot Framework JWT: the Agents SDK fetches its signing keys from Microsoft's fixed hosts, which
   no local fake can stand in for, so the server runs with /api/messages unauthenticated (no
   HERALD_TEAMS_APP_ID, HERALD_TEAMS_CHECK_SERVICE_URL=false: a local connector), as the Teams tests do.
4. Afterwards it waits (up to --settle seconds) for the acknowledged copies to be updated, then
   checks: one Acknowledgement row and one ``notice.acknowledged`` audit event per clicked member
   (duplicates none), copies still waiting for their update, and the 429s each fake sent for the
   update methods (``chat.update``: Slack Tier 3, 50 a minute per workspace; Teams: the tenant's 50
   a second and each conversation's window).

Latency is the HTTP answer time seen by the load generator. Note what it covers: Slack's answer
comes from Bolt's ``ack()`` (HERALD handles the click after answering: ``process_before_response``
is off), Teams' after the acknowledgement is stored and the card is rebuilt.

Prints one JSON object on stdout; progress goes to stderr. Exits 1 when a click was lost or
recorded twice, or a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale import (  # noqa: E402
    Child,
    PostgresCluster,
    Tenant,
    delivery_summary,
    fake_get,
    herald_cli,
    herald_env,
    seed_directory,
    send_must_know,
    start_replica,
    wait_healthy,
)
from bench.scratch_db import ScratchDatabase  # noqa: E402
from storage.db import shown_url  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
ACK_ACTION = "herald_ack"
ACK_VERB = "herald.ack"
FINAL = ("delivered", "failed", "cancelled", "digest")

_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[acks {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the load generator


def slack_click(notice_id: int, team: str, user: str, n: int, copy: dict[str, str],
                response_base: str) -> tuple[str, dict[str, str]]:
    """A signed ``block_actions`` body and headers, as Slack sends a button press on a message:
    with the pressed message's channel and ts and a ``response_url`` (here the fake Slack's, which
    records what is posted to it)."""
    from tests.fakes.slack_signing import FORM_CONTENT_TYPE, interaction_body, sign

    channel = copy.get("channel") or "D" + user
    payload = {"type": "block_actions", "team": {"id": team}, "user": {"id": user, "team_id": team},
               "api_app_id": "AHERALD", "token": "verification-token", "trigger_id": f"trig-{n}",
               "container": {"type": "message", "channel_id": channel, "message_ts": copy.get("ts", ""),
                             "is_ephemeral": False},
               "channel": {"id": channel}, "response_url": f"{response_base}response/click-{n}",
               "actions": [{"action_id": ACK_ACTION, "value": str(notice_id), "type": "button",
                            "block_id": f"ack-{notice_id}", "action_ts": f"{time.time():.6f}"}]}
    body = interaction_body(payload)
    timestamp = int(time.time())
    return body, {"Content-Type": FORM_CONTENT_TYPE, "X-Slack-Request-Timestamp": str(timestamp),
                  "X-Slack-Signature": sign(SIGNING_SECRET, body, timestamp)}


def teams_invoke(notice_id: int, tenant: str, aad: str, service_url: str, n: int) -> dict[str, Any]:
    """An ``adaptiveCard/action`` invoke for the Acknowledge button (Action.Execute)."""
    return {"type": "invoke", "name": "adaptiveCard/action", "id": f"invoke-{n}", "channelId": "msteams",
            "serviceUrl": service_url, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "from": {"id": f"29:{aad}", "aadObjectId": aad, "name": aad},
            "recipient": {"id": "28:herald-bot", "name": "Herald"},
            "conversation": {"id": f"a:conv-{aad}", "conversationType": "personal", "tenantId": tenant},
            "channelData": {"tenant": {"id": tenant}},
            "value": {"action": {"type": "Action.Execute", "verb": ACK_VERB, "data": {"notice_id": notice_id}}}}


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Send ``spec["clicks"]`` at ``spec["rate"]`` a second, open loop (a late answer never delays
    the next click); returns latencies and answer counts per platform."""
    import aiohttp

    url, rate, notice_id = spec["url"], spec["rate"], spec["notice_id"]
    latencies: dict[str, list[float]] = {"slack": [], "teams": []}
    statuses: dict[str, dict[str, int]] = {"slack": {}, "teams": {}}
    lag: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def one(n: int, platform: str, scope: str, user: str) -> None:
            if platform == "slack":
                body, headers = slack_click(notice_id, scope, user, n, spec["slack_copies"].get(user, {}),
                                            spec["slack_url"])
                request = session.post(url + "slack/events", data=body, headers=headers)
            else:
                request = session.post(url + "api/messages", json=teams_invoke(notice_id, scope, user,
                                                                               spec["service_url"], n))
            started = time.perf_counter()
            try:
                async with request as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            latencies[platform].append(time.perf_counter() - started)
            statuses[platform][status] = statuses[platform].get(status, 0) + 1

        start = time.perf_counter() + 0.2
        for n, (platform, scope, user) in enumerate(spec["clicks"]):
            target = start + n / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag.append(-delay)
            task = asyncio.create_task(one(n, platform, scope, user))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent_seconds = time.perf_counter() - start
        while tasks:
            await asyncio.gather(*list(tasks))
        total_seconds = time.perf_counter() - start
    return {"latencies": latencies, "statuses": statuses, "sent_seconds": sent_seconds,
            "total_seconds": total_seconds, "max_lag_seconds": max(lag, default=0.0), "late_clicks": len(lag)}


def loadgen_main(spec_file: str) -> int:
    """``--loadgen SPEC``: run the clicks of SPEC (JSON) and write the result to ``SPEC.out`` (a
    file, not stdout: tens of thousands of latencies overflow a pipe nobody reads until the end)."""
    spec = json.loads(Path(spec_file).read_text())
    result = asyncio.run(generate(spec))
    Path(spec_file + ".out").write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- the run


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def latency_summary(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    return {"count": len(ms), "p50_ms": _r(percentile(ms, 50)), "p90_ms": _r(percentile(ms, 90)),
            "p99_ms": _r(percentile(ms, 99)), "max_ms": _r(max(ms, default=None)),
            "mean_ms": _r(statistics.fmean(ms) if ms else None)}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def members_programme(members: int, workspaces: int) -> list[Tenant]:
    """Half the members on Slack over ``workspaces`` workspaces, half on Teams over as many tenants."""
    tenants: list[Tenant] = []
    for platform, count in (("slack", members - members // 2), ("teams", members // 2)):
        per = [count // workspaces + (1 if i < count % workspaces else 0) for i in range(workspaces)]
        tenants += [Tenant(i, platform, size) for i, size in enumerate(per) if size]
    return tenants


def update_ideal_seconds(clicked: list[tuple[str, str, str]], rate: float) -> dict[str, float]:
    """The least time, from the first click, until every acknowledged copy can have been updated
    under the platforms' documented limits (the fakes' defaults): Slack's ``chat.update`` is Tier 3
    per workspace (50 a minute, a bucket that starts full), Teams' update one request through the
    tenant's 50 a second. Clicks arrive at ``rate`` a second, so a workspace's last update cannot
    come before its last click either."""
    from bench.scale import bucket_seconds
    from tests.fakes.slack_limits import SlackLimits
    from tests.fakes.teams_limits import TeamsLimits

    slack, teams = SlackLimits(), TeamsLimits()
    update = slack.tiers[slack.method_tiers["chat.update"]]
    per_scope: dict[tuple[str, str], list[int]] = {}
    for n, (platform, scope, _) in enumerate(clicked):
        per_scope.setdefault((platform, scope), []).append(n)
    ideal = {"slack": 0.0, "teams": 0.0}
    for (platform, _), positions in per_scope.items():
        rate_s = update.per_second() if platform == "slack" else teams.per_tenant.per_second()
        burst = update.capacity if platform == "slack" else teams.per_tenant.capacity
        seconds = max(bucket_seconds(len(positions), rate_s, burst), positions[-1] / rate)
        ideal[platform] = max(ideal[platform], seconds)
    return {k: round(v, 1) for k, v in ideal.items()}


def profile_summary(raw: Path, top: int = 15) -> dict[str, Any]:
    """The top frames of a py-spy ``--format raw`` (collapsed stacks) file: by own samples (where
    the CPU went) and by samples anywhere on the stack (what it went for)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n

    def share(table: dict[str, int]) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return [{"frame": frame, "percent": round(100 * n / total, 1)} for frame, n in ranked]

    return {"samples": total, "own": share(own), "inclusive": share(inclusive)}


async def sample_db_activity(database_url: str, generators: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """Where the server's database sessions are while the clicks run, sampled every 0.25 s from
    ``pg_stat_activity``: how many sessions it has open (its pool) and what they wait for. Sessions
    idle outside a transaction are free; ``active`` and ``idle in transaction`` ones are in use."""
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    states: dict[str, int] = {}
    waits: dict[str, int] = {}
    sessions: list[int] = []
    busy: list[int] = []
    blocked: dict[str, int] = {}  # the statements that waited for a lock
    samples = 0
    try:
        name = await conn.fetchval("SELECT current_database()")
        while any(g.poll() is None for g in generators):
            rows = await conn.fetch("SELECT state, wait_event_type, wait_event, left(query, 90) AS query "
                                    "FROM pg_stat_activity "
                                    "WHERE datname=$1 AND pid <> pg_backend_pid()", name)
            samples += 1
            sessions.append(len(rows))
            busy.append(sum(r["state"] != "idle" for r in rows))
            for r in rows:
                states[str(r["state"])] = states.get(str(r["state"]), 0) + 1
                if r["state"] != "idle" and r["wait_event_type"]:
                    key = f"{r['wait_event_type']}:{r['wait_event']}"
                    waits[key] = waits.get(key, 0) + 1
                if r["wait_event_type"] == "Lock":
                    blocked[r["query"]] = blocked.get(r["query"], 0) + 1
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    return {"samples": samples, "max_sessions": max(sessions, default=0),
            "mean_busy_sessions": round(statistics.fmean(busy), 2) if busy else 0.0,
            "share_of_samples_all_busy": round(sum(b == s and s > 0 for b, s in zip(busy, sessions, strict=True))
                                               / samples, 3) if samples else 0.0,
            "states": states, "waits": dict(sorted(waits.items(), key=lambda kv: kv[1], reverse=True)[:8]),
            "lock_waits_by_statement": dict(sorted(blocked.items(), key=lambda kv: kv[1], reverse=True)[:5])}


def post_json(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    base = url.removesuffix("api/") if url.endswith("/api/") else url
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def start_fake(kind: str, tenants: list[Tenant], workdir: Path) -> tuple[Child, str]:
    """A fake in its own process, seeded with its tenants, limits off until the clicks start."""
    from tests.fakes.seeding import generated_tenant, generated_workspace

    if kind == "slack":
        seed = {"workspaces": [generated_workspace(t.index, t.size) for t in tenants]}
        module = "tests.fakes.slack_api"
    else:
        seed = {"tenants": [generated_tenant(t.index, t.size) for t in tenants]}
        module = "tests.fakes.bot_connector"
    seed_file = workdir / f"{kind}-seed.json"
    seed_file.write_text(json.dumps(seed))
    child = Child(f"fake-{kind}", [sys.executable, "-m", module, "--limits", "off", "--seed", f"@{seed_file}"],
                  capture_stdout=True)
    assert child.process.stdout is not None
    line = child.process.stdout.readline().decode().strip()
    if not line.startswith("http"):
        child.stop()
        raise RuntimeError(f"the fake {kind} did not start (first line {line!r})")
    return child, line


async def ack_counts(database_url: str, notice_id: int) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:  # one statement: one snapshot, while the server may still be writing
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM acknowledgement WHERE notice_id=$1) AS acknowledgements, "
            "(SELECT count(DISTINCT member_id) FROM acknowledgement WHERE notice_id=$1) AS acknowledged_members, "
            "(SELECT count(*) FROM audit_event WHERE notice_id=$1 AND kind='notice.acknowledged') AS audit_events, "
            "(SELECT count(*) FROM delivery WHERE notice_id=$1 AND update_pending) AS updates_pending", notice_id)
        return dict(row)
    finally:
        await conn.close()


async def slack_copies_of(database_url: str, notice_id: int) -> dict[str, dict[str, str]]:
    """Each Slack member's copy of the notice (user id -> its channel and ts), which a real click's
    payload names (``container``)."""
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        rows = await conn.fetch("SELECT a.user_id, d.channel_id, d.message_id FROM delivery d "
                                "JOIN platform_account a ON a.id = d.account_id "
                                "WHERE d.notice_id=$1 AND d.platform='slack' AND d.kind='notice'", notice_id)
        return {r["user_id"]: {"channel": r["channel_id"], "ts": r["message_id"]} for r in rows}
    finally:
        await conn.close()


def throttled(stats: dict[str, Any]) -> dict[str, Any]:
    return {"throttled": stats.get("throttled", {}).get("by_method", {}),
            "throttled_by_reason": stats.get("throttled", {}).get("by_reason", {}),
            "accepted": stats.get("accepted", {}).get("by_method", {})}


async def run(args: argparse.Namespace, server_url: str) -> dict[str, Any]:
    tenants = members_programme(args.members, args.workspaces)
    database = ScratchDatabase(server_url, args.keep, name="acks")
    await database.create()
    workdir = Path(tempfile.mkdtemp(prefix="herald-acks-"))
    children: list[Child] = []
    problems: list[str] = []
    try:
        progress(f"database {shown_url(database.url)}, logs in {workdir}")
        slack_fake, slack_url = start_fake("slack", [t for t in tenants if t.platform == "slack"], workdir)
        children.append(slack_fake)
        connector, connector_url = start_fake("teams", [t for t in tenants if t.platform == "teams"], workdir)
        children.append(connector)
        env = herald_env(argparse.Namespace(time_scale=1.0), database.url, slack_url, connector_url)
        herald_cli(env, "db", "upgrade")
        seed_seconds = await seed_directory(database.url, tenants, connector_url)
        progress(f"seeded {args.members} members in {seed_seconds:.1f}s")
        server, url = start_replica(0, env, workdir)
        children.append(server)
        wait_healthy([(server, url)])

        out = send_must_know(env)
        notice_id = int(out.split("notice ", 1)[1].split()[0])
        progress(f"{out.strip()}; waiting for every delivery (fakes' limits off)")
        deadline = time.monotonic() + args.settle + args.members / 100
        while True:
            summary = await delivery_summary(database.url, notice_id)
            if not sum(n for s, n in summary["by_status"].items() if s not in FINAL):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the notice was not delivered in time: {summary['by_status']}")
            await asyncio.sleep(1.0)
        if summary["by_status"] != {"delivered": args.members}:
            raise RuntimeError(f"set-up: deliveries {summary['by_status']}, errors {summary['errors']}")

        slack_copies = await slack_copies_of(database.url, notice_id)
        for fake_url in (slack_url, connector_url):
            post_json(fake_url, "_fake/limits", {"enabled": True})
            post_json(fake_url, "_fake/stats/reset", {})

        # every member once, in random order, plus a share of double clicks
        rng = random.Random(args.seed)
        members = [(t.platform, t.external_id, t.user_id(n)) for t in tenants for n in range(t.size)]
        rng.shuffle(members)
        clicks = list(members)
        for _ in range(round(len(members) * args.duplicates)):
            position = rng.randrange(1, len(clicks))
            clicks.insert(position, clicks[rng.randrange(0, position)])  # again, after the first click
        total_rate = args.rate
        spec_files = []
        for i in range(args.loadgen_processes):
            spec = {"url": url, "service_url": connector_url, "notice_id": notice_id, "slack_url": slack_url.removesuffix("api/"),
                    "slack_copies": slack_copies,
                    "rate": total_rate / args.loadgen_processes, "clicks": clicks[i::args.loadgen_processes]}
            path = workdir / f"loadgen-{i}.json"
            path.write_text(json.dumps(spec))
            spec_files.append(path)
        cpu_before = server.cpu_seconds()
        clicks_started = time.monotonic()
        progress(f"{len(clicks)} clicks ({len(clicks) - len(members)} duplicates) at {total_rate:.0f}/s "
                 f"from {args.loadgen_processes} load generator(s)")
        spy = None
        if args.py_spy:
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server.pid),
                                    "--duration", str(int(args.seconds) + 1), "--rate", "100", "--format", "raw",
                                    "--output", str(args.py_spy), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        generators = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--loadgen", str(p)],
                                       cwd=ROOT) for p in spec_files]
        db_activity = await sample_db_activity(database.url, generators)
        for g in generators:
            if g.wait():
                raise RuntimeError(f"a load generator failed (exit {g.returncode})")
        results = [json.loads(Path(str(p) + ".out").read_text()) for p in spec_files]
        cpu_clicks = server.cpu_seconds() - cpu_before
        profile = None
        if spy is not None:
            spy.wait(60)
            profile = profile_summary(Path(args.py_spy)) if Path(args.py_spy).exists() else {"error": "no output"}
        progress("clicks done; waiting for the acknowledgements and the copies' updates")

        settle_started = time.monotonic()
        while True:
            counts = await ack_counts(database.url, notice_id)
            if (counts["acknowledged_members"] >= len(members) and not counts["updates_pending"]) \
                    or time.monotonic() - settle_started > args.settle:
                break
            await asyncio.sleep(1.0)
        settle_seconds = time.monotonic() - settle_started
        cpu_total = server.cpu_seconds() - cpu_before  # clicks and the work they left behind
        first_clicks = list(dict.fromkeys(clicks))  # each member's first click, in click order
        update_ideal = update_ideal_seconds(first_clicks, total_rate)
        clicks_seconds = time.monotonic() - clicks_started

        latencies = {p: [v for r in results for v in r["latencies"][p]] for p in ("slack", "teams")}
        statuses: dict[str, dict[str, int]] = {"slack": {}, "teams": {}}
        for r in results:
            for p, counts_by in r["statuses"].items():
                for status, n in counts_by.items():
                    statuses[p][status] = statuses[p].get(status, 0) + n
        sent_seconds = max(r["sent_seconds"] for r in results)
        all_latencies = latencies["slack"] + latencies["teams"]
        failed = sum(n for p in statuses.values() for s, n in p.items() if s != "200")
        if failed:
            problems.append(f"{failed} clicks were not answered 200: {statuses}")
        if counts["acknowledgements"] != len(members) or counts["acknowledged_members"] != len(members):
            problems.append(f"{counts['acknowledgements']} acknowledgements for {len(members)} members clicked")
        if counts["audit_events"] != len(members):
            problems.append(f"{counts['audit_events']} notice.acknowledged audit events for {len(members)} members")
        slack_stats = throttled(fake_get(slack_url, "_fake/stats"))
        teams_stats = throttled(fake_get(connector_url, "_fake/stats"))
        p99 = percentile([v * 1000 for v in all_latencies], 99)
        result = {
            "rate_target": args.rate,
            "seconds": args.seconds,
            "members": args.members,
            "clicks": len(clicks),
            "duplicate_clicks": len(clicks) - len(members),
            "achieved_rate": round(len(clicks) / sent_seconds, 1) if sent_seconds else None,
            "answered_rate": round(len(clicks) / max(r["total_seconds"] for r in results), 1),
            "late_clicks": sum(r["late_clicks"] for r in results),
            "max_lag_seconds": round(max(r["max_lag_seconds"] for r in results), 3),
            "latency": {"all": latency_summary(all_latencies), "slack": latency_summary(latencies["slack"]),
                        "teams": latency_summary(latencies["teams"])},
            "p99_ms": _r(p99),
            "target_p99_ms": 300,
            "statuses": statuses,
            "recorded": counts,
            "exactly_once": counts["acknowledgements"] == counts["acknowledged_members"] == len(members)
                            == counts["audit_events"],
            "updates": {"pending_after_settle": counts["updates_pending"], "settle_seconds": round(settle_seconds, 1),
                        "all_done_after_seconds": (round(clicks_seconds, 1) if not counts["updates_pending"]
                                                   else None),
                        "ideal_seconds": update_ideal,
                        "slack": slack_stats, "teams": teams_stats},
            "server_cpu_seconds_during_clicks": round(cpu_clicks, 2),
            "server_cpu_ms_per_acknowledgement": (round(cpu_total / counts["acknowledgements"] * 1000, 2)
                                                  if counts["acknowledgements"] else None),
            "server_db_sessions_during_clicks": db_activity,
            "server_peak_rss_mb": server.peak_rss_mb(),
            "workspaces": args.workspaces,
            "loadgen_processes": args.loadgen_processes,
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # the machine is shared
            "notes": ("Teams invokes carry no JWT (the Agents SDK's key lookup cannot be pointed at a local fake; "
                      "the server runs with /api/messages unauthenticated); Slack answers come from Bolt's ack() "
                      "before the click is handled, Teams answers after it is stored; load generator, server, "
                      "PostgreSQL and both fakes share the machine"),
            "verified": not problems,
        }
        if profile is not None:
            result["server_profile"] = profile
        if problems:
            result["problems"] = problems
        return result
    finally:
        for child in reversed(children):
            child.stop()
        await database.drop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="clicks a second (default 500)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to click (default 60)")
    parser.add_argument("--members", type=int, default=None, help="members who click (default: rate x seconds less the duplicates)")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of clicks repeated (default 0.05)")
    parser.add_argument("--workspaces", type=int, default=50, help="Slack workspaces, and as many Teams tenants")
    parser.add_argument("--loadgen-processes", type=int, default=1)
    parser.add_argument("--settle", type=float, default=300.0,
                        help="seconds to wait for the copies' updates after the last click (default 300)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="FILE",
                        help="profile the server with py-spy while the clicks run (collapsed stacks to FILE; "
                             "the top frames go in the JSON)")
    args = parser.parse_args(argv)
    if args.members is None:
        args.members = max(2, round(args.rate * args.seconds / (1 + args.duplicates)))
    if args.rate <= 0 or args.seconds <= 0 or args.members < 2 or not 0 <= args.duplicates < 1:
        parser.error("--rate and --seconds must be positive, --members at least 2, --duplicates in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--loadgen"]:
        return loadgen_main(argv[1])
    args = parse_args(argv)
    cluster = None
    server_url = args.database_url
    if not server_url:
        progress("starting a throwaway PostgreSQL cluster (.ci/postgres.sh)")
        cluster = PostgresCluster()
        server_url = cluster.url
    try:
        result = asyncio.run(run(args, server_url))
    finally:
        if cluster is not None:
            cluster.stop()
    print(json.dumps({"benchmark": "acks", **result}))
    if not result["verified"]:
        progress("VERIFICATION FAILED: " + "; ".join(result.get("problems", [])))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
