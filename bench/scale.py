#!/usr/bin/env python
"""Scale benchmark: one must-know notice to a partner programme of many Slack workspaces and
Teams tenants, through the platforms' rate limits, with one or more `herald serve` replicas.

    python bench/scale.py [--replicas 1 2] [--recipients 100000] [--tenants 100] [--time-scale 20]
                          [--seed 12] [--timeout 1800] [--database-url postgres://...] [--keep]
                          [--slack-workspace-rate 300]

Black box: everything Herald runs is a separate process, as in production.

1. PostgreSQL: a throwaway cluster from .ci/postgres.sh (or the server of --database-url); each
   run gets a fresh database beside it, migrated once (``herald db upgrade``).
2. The fake Slack Web API and the fake Bot Connector (tests/fakes/cli.py), each in its own
   process, in limits mode (tests/fakes/slack_limits.py, tests/fakes/teams_limits.py) with every
   rate multiplied by --time-scale K. Slack: ``conversations.open`` Tier 3, ``chat.postMessage`` one
   a second per channel and --slack-workspace-rate a minute per workspace; Teams: 50 requests a
   second per tenant and Microsoft's per-conversation windows.
3. The directory is written straight into the database with COPY: --recipients members over
   --tenants organisations, half on Slack (one workspace each) and half on Teams (one tenant each),
   sizes skewed like a partner programme (see ``tenant_sizes``; seeded RNG). Nobody has a stored DM
   channel or Teams conversation yet: it is the first broadcast.
4. N ``herald serve`` replicas (HERALD_MIGRATE_ON_START=false, a one-hour tick so only the outbox
   sends, the outbox polled every second), then ``herald send --importance must-know --audience all
   --yes``; the run waits until no delivery row is pending or sending, or --timeout.
5. Verification from the fakes' own records: which members got the notice (missing, duplicated,
   unexpected), and the 429s each fake sent (``GET /_fake/stats``).

Figures (per run):

* ``completion_seconds``: from the notice's ``sent_at`` to the last delivery (scaled seconds: what
  K times faster platforms take; multiply by K for real-platform seconds);
* ``ideal_seconds``: the slowest tenant's minimum time under the same limits the fakes apply
  (tenants run in parallel). Slack: every member is one ``chat.postMessage`` to the user id (no
  ``conversations.open``: Slack opens the DM itself), bounded by the workspace-wide bucket; Teams:
  one create-conversation plus one send per member, bounded by the tenant's bucket. A bucket starts
  full, so a tenant within its burst has an ideal of 0. ``ratio`` = completion / ideal (target
  <= 1.10);
* ``small_tenants``: tenants below 200 members: their last finish (fairness: a big tenant must not
  hold them up) against their own largest ideal;
* ``throttled``: 429s the fakes sent, per platform, by reason and method;
* ``cpu_seconds_per_1000`` (all replicas' user + system CPU from /proc/PID/stat between the send
  and the end, per 1,000 delivered) and ``peak_rss_mb`` per replica (VmHWM).

Prints one JSON object on stdout (``{"runs": [...]}``, one per --replicas value); progress goes to
stderr. Exits 1 when a run has missing or duplicated recipients, failed rows or timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `tests.fakes` is not part of the installed package

from bench.scratch_db import ScratchDatabase  # noqa: E402
from storage.db import shown_url  # noqa: E402
from tests.fakes.seeding import generated_tenant, generated_workspace  # noqa: E402
from tests.fakes.slack_limits import SlackLimits  # noqa: E402
from tests.fakes.teams_limits import TeamsLimits  # noqa: E402

SMALL_TENANT = 200  # "most below 200"
LARGE_TENANT = 5000  # "a few above 5,000"
FINAL = ("delivered", "failed", "cancelled", "digest")
CLK_TCK = os.sysconf("SC_CLK_TCK")

_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[scale {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the programme


@dataclass
class Tenant:
    """One partner organisation: a Slack workspace or a Teams tenant of ``size`` members."""

    index: int  # the fakes' generated index on its platform (tests/fakes/seeding.py names)
    platform: str
    size: int
    ideal_seconds: float = 0.0

    @property
    def external_id(self) -> str:
        return f"T{self.index:04d}BENCH" if self.platform == "slack" else f"tenant-{self.index:04d}"

    @property
    def org_id(self) -> str:
        return f"{self.platform}-{self.index:04d}"

    def user_id(self, n: int) -> str:
        return f"U{self.index:04d}N{n:06d}" if self.platform == "slack" else f"aad-{self.index:04d}-{n:06d}"

    def email(self, n: int) -> str:
        return f"{self.user_id(n).lower()}@{self.org_id}.example"


def tenant_sizes(recipients: int, tenants: int, rng: random.Random) -> list[int]:
    """Skewed sizes summing to ``recipients``, largest first: about 4% of the tenants ("large")
    hold 60% of the members, 16% ("medium") 30%, the other 80% ("small") 10%, each jittered
    log-normally. For 100,000 over 100 that is four tenants of ~15,000, sixteen of ~1,900 and
    eighty of ~125 (all below 200)."""
    large = max(1, round(tenants * 0.04))
    medium = max(1 if tenants > 2 else 0, round(tenants * 0.16))
    small = tenants - large - medium
    shares = [(large, 0.60), (medium, 0.30), (small, 0.10)]
    if small <= 0:
        shares = [(large, 0.65), (medium, 0.35), (0, 0.0)]
    weights: list[float] = []
    for count, share in shares:
        if count <= 0:
            continue
        jitter = [rng.lognormvariate(0.0, 0.25) for _ in range(count)]
        total = sum(jitter)
        weights += [share * j / total for j in jitter]
    sizes = [max(1, int(recipients * w)) for w in weights]
    sizes.sort(reverse=True)
    i = 0
    while sum(sizes) != recipients:  # spread the rounding over the largest tenants
        step = 1 if sum(sizes) < recipients else -1
        if sizes[i % len(sizes)] + step >= 1:
            sizes[i % len(sizes)] += step
        i += 1
    return sorted(sizes, reverse=True)


def programme(recipients: int, tenants: int, seed: int) -> list[Tenant]:
    """Sizes alternate between the platforms, largest first, so both get their share of big ones."""
    sizes = tenant_sizes(recipients, tenants, random.Random(seed))
    out: list[Tenant] = []
    counters = {"slack": 0, "teams": 0}
    for i, size in enumerate(sizes):
        platform = "slack" if i % 2 == 0 else "teams"
        out.append(Tenant(counters[platform], platform, size))
        counters[platform] += 1
    return out


# --------------------------------------------------------------------------- limits and ideal


def slack_limits(args: argparse.Namespace) -> SlackLimits:
    return SlackLimits.from_dict({"scale": args.time_scale,
                                  "post_per_workspace": {"count": args.slack_workspace_rate, "per": 60.0}})


def teams_limits(args: argparse.Namespace) -> TeamsLimits:
    return TeamsLimits.from_dict({"scale": args.time_scale})


def bucket_seconds(requests: int, per_second: float, burst: float) -> float:
    """The least time ``requests`` take through a token bucket that starts full."""
    return max(0.0, requests - burst) / per_second


def ideal_seconds(tenant: Tenant, slack: SlackLimits, teams: TeamsLimits) -> float:
    """The tenant's minimum time under the fakes' limits (scaled seconds).

    Slack: one ``chat.postMessage`` per member, each to its own DM channel, so only the workspace
    bucket binds (the per-channel 1/s does not, at one message per channel). Teams: a 1:1
    conversation is created and then posted to, two requests per member through the tenant's bucket
    (each conversation sees one send, within Microsoft's per-conversation windows)."""
    if tenant.platform == "slack":
        rate = slack.post_per_workspace
        return bucket_seconds(tenant.size, rate.per_second(slack.scale), rate.capacity)
    rate = teams.per_tenant
    return bucket_seconds(2 * tenant.size, rate.per_second(teams.scale), rate.capacity)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """A throwaway cluster from .ci/postgres.sh (PGPORT picks the first port tried)."""

    def __init__(self) -> None:
        script = ('source .ci/postgres.sh >/dev/null && pg_start && echo "$HERALD_TEST_POSTGRES_URL" '
                  '&& echo "$PG_TMP" && echo "${PG_CTL[*]}"')
        out = subprocess.run(["bash", "-c", script], cwd=ROOT, check=True, capture_output=True, text=True)
        self.url, self.tmp, ctl = out.stdout.strip().splitlines()[-3:]
        self.ctl = ctl.split()

    def stop(self) -> None:
        subprocess.run([*self.ctl, "-D", f"{self.tmp}/data", "-m", "fast", "-w", "stop"],
                       capture_output=True, check=False)
        subprocess.run(["rm", "-rf", self.tmp], check=False)


class Child:
    """A child process we started; stopped with SIGTERM (then SIGKILL) by its own pid."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, log: Path | None = None,
                 capture_stdout: bool = False) -> None:
        self.name = name
        self.log = log
        sink: Any = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE if capture_stdout else sink,
                                        stderr=sink, start_new_session=True)
        if log:
            sink.close()  # the child has its own copy

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process so far (fields 14 and 15 of /proc/PID/stat)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_fake(kind: str, args: argparse.Namespace, tenants: list[Tenant], workdir: Path) -> tuple[Child, str]:
    """A fake in its own process, limits on, seeded with its tenants; returns it and its URL."""
    if kind == "slack":
        seed = {"workspaces": [generated_workspace(t.index, t.size) for t in tenants]}
        profile = slack_limits(args).as_dict()
        module = "tests.fakes.slack_api"
    else:
        seed = {"tenants": [generated_tenant(t.index, t.size) for t in tenants]}
        profile = teams_limits(args).as_dict()
        module = "tests.fakes.bot_connector"
    seed_file, profile_file = workdir / f"{kind}-seed.json", workdir / f"{kind}-limits.json"
    seed_file.write_text(json.dumps(seed))
    profile_file.write_text(json.dumps(_profile_overrides(kind, profile)))
    child = Child(f"fake-{kind}", [sys.executable, "-m", module, "--limits", "on", "--profile", f"@{profile_file}",
                                   "--seed", f"@{seed_file}"],
                  log=None, capture_stdout=True)
    assert child.process.stdout is not None
    line = child.process.stdout.readline().decode().strip()
    if not line.startswith("http"):
        child.stop()
        raise RuntimeError(f"the fake {kind} did not start (first line {line!r})")
    return child, line


def _profile_overrides(kind: str, profile: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``as_dict()`` that ``from_dict`` reads back as overrides."""
    if kind == "slack":
        return {k: profile[k] for k in ("scale", "post_per_workspace")}
    return {"scale": profile["scale"]}


BENCH_SENDER = "bench-admin@vendor.example"  # the accountable sender `herald send --as` needs


def send_must_know(env: dict[str, str]) -> str:
    """`herald send` a must-know notice to everyone, as a staff member the run adds (admin)."""
    herald_cli(env, "staff", "add", BENCH_SENDER, "--role", "admin", "--name", "Benchmark run")
    return herald_cli(env, "send", "--as", BENCH_SENDER, "--topic", "announcements", "--importance", "must-know",
                      "--audience", "all", "--title", "Partner portal maintenance",
                      "--body", "The partner portal is unavailable on Saturday 02:00-04:00 UTC.", "--yes")


def herald_env(args: argparse.Namespace, database_url: str, slack_url: str, connector_url: str) -> dict[str, str]:
    """The environment of every Herald process of a run (replicas and the CLI)."""
    from config.settings import Settings

    defaults = Settings.model_fields
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({
        "HERALD_DATABASE_URL": database_url,
        "HERALD_SLACK_API_URL": slack_url,
        "HERALD_SLACK_SIGNING_SECRET": "bench-signing-secret",
        "HERALD_TEAMS_SERVICE_URL": connector_url,
        "HERALD_TEAMS_CHECK_SERVICE_URL": "false",
        "HERALD_MIGRATE_ON_START": "false",
        "HERALD_SANDBOX": "off",
        "HERALD_TICK_SECONDS": "3600",
        "HERALD_OUTBOX_POLL_SECONDS": "1",
        "HERALD_KB_SEMANTIC": "false",
        "HERALD_LOG_LEVEL": "WARNING",
        # Herald's own pacing, K times faster like the fakes (0 stays "no pacing")
        "HERALD_TEAMS_MAX_PER_SECOND": str(defaults["teams_max_per_second"].default * args.time_scale),
        "HERALD_SLACK_MAX_PER_SECOND": str(defaults["slack_max_per_second"].default * args.time_scale),
    })
    return env


def herald_cli(env: dict[str, str], *argv: str) -> str:
    out = subprocess.run([sys.executable, "-m", "bot.cli", *argv], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"herald {' '.join(argv[:2])} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout


def start_replica(i: int, env: dict[str, str], workdir: Path) -> tuple[Child, str]:
    port = free_port()
    child = Child(f"replica-{i}", [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1",
                                   "--port", str(port)],
                  env=env, log=workdir / f"replica-{i}.log")
    return child, f"http://127.0.0.1:{port}/"


def wait_healthy(replicas: list[tuple[Child, str]], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    for child, url in replicas:
        while True:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited ({child.process.returncode}); see {child.log}")
            try:
                with urllib.request.urlopen(url + "healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} not healthy after {timeout:.0f}s; see {child.log}")
            time.sleep(0.2)


def fake_get(url: str, path: str) -> dict[str, Any]:
    base = url.removesuffix("api/") if url.endswith("/api/") else url
    with urllib.request.urlopen(base + path, timeout=120) as r:
        return json.loads(r.read())


# --------------------------------------------------------------------------- the directory


async def seed_directory(database_url: str, tenants: list[Tenant], connector_url: str) -> float:
    """Organisations, members, platform accounts and Slack workspaces with COPY; returns seconds."""
    import asyncpg

    from storage.models import Member, Organisation, PlatformAccount, Workspace

    started = time.perf_counter()
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        orgs = [{"id": i + 1, "external_id": t.org_id, "name": f"Partner {t.org_id}", "tier": "gold"}
                for i, t in enumerate(tenants)]
        members: list[dict[str, Any]] = []
        accounts: list[dict[str, Any]] = []
        workspaces: list[dict[str, Any]] = []
        for org, t in zip(orgs, tenants, strict=True):
            if t.platform == "slack":
                workspaces.append({"id": len(workspaces) + 1, "platform": "slack", "external_id": t.external_id,
                                   "name": f"Workspace {t.index}", "bot_token": f"xoxb-bench-{t.index:04d}",
                                   "bot_user_id": f"UBOT{t.index:04d}"})
            for n in range(t.size):
                member_id = len(members) + 1
                members.append({"id": member_id, "organisation_id": org["id"], "email": t.email(n),
                                "name": f"Member {n}", "role": "sales", "preferred_platform": t.platform})
                accounts.append({"id": member_id, "member_id": member_id, "platform": t.platform,
                                 "workspace_external_id": t.external_id, "user_id": t.user_id(n),
                                 "service_url": connector_url if t.platform == "teams" else ""})
        for model, rows in ((Organisation, orgs), (Member, members), (PlatformAccount, accounts),
                            (Workspace, workspaces)):
            await copy_rows(conn, model, rows, now)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def copy_rows(conn: Any, model: Any, rows: list[dict[str, Any]], now: datetime) -> None:
    """COPY ``rows`` into the model's table; every other column gets the model's default (read
    from the model's fields, so new columns with defaults need no change here). Tortoise is not
    initialised here, so foreign-key columns come only from ``rows``."""
    if not rows:
        return
    meta = model._meta
    table = meta.db_table
    columns: list[str] = []
    defaults: dict[str, Any] = {}
    given = set(rows[0])
    for name in meta.db_fields:
        f = meta.fields_map[name]
        column = f.source_field or name
        columns.append(column)
        if column in given or name in given:
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            value: Any = now
        elif f.default is not None:
            value = f.default() if callable(f.default) else f.default
            if f.__class__.__name__ == "JSONField":
                value = json.dumps(value)
        else:
            value = None
        defaults[column] = value
    columns += [key for key in rows[0] if key not in columns]  # foreign keys (``organisation_id``)
    records = [tuple(row[c] if c in row else defaults[c] for c in columns) for row in rows]
    await conn.copy_records_to_table(table, records=records, columns=columns)
    await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM \"{table}\"))")


# --------------------------------------------------------------------------- the run


@dataclass
class RunState:
    children: list[Child] = field(default_factory=list)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()


async def delivery_summary(database_url: str, notice_id: int) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        by_status = {r["status"]: r["n"] for r in await conn.fetch(
            "SELECT status, count(*) AS n FROM delivery WHERE notice_id=$1 AND kind='notice' GROUP BY status",
            notice_id)}
        finishes = {r["w"]: r["last"] for r in await conn.fetch(
            "SELECT workspace_external_id AS w, max(delivered_at) AS last FROM delivery "
            "WHERE notice_id=$1 AND kind='notice' GROUP BY workspace_external_id", notice_id)}
        sent_at = await conn.fetchval("SELECT sent_at FROM notice WHERE id=$1", notice_id)
        attempts = await conn.fetchval("SELECT coalesce(sum(attempts), 0) FROM delivery WHERE notice_id=$1",
                                       notice_id)
        errors = [dict(r) for r in await conn.fetch(
            "SELECT error, count(*) AS n FROM delivery WHERE notice_id=$1 AND status='failed' "
            "GROUP BY error ORDER BY n DESC LIMIT 5", notice_id)]
    finally:
        await conn.close()
    return {"by_status": by_status, "finishes": finishes, "sent_at": sent_at, "attempts": int(attempts),
            "errors": errors}


def received_copies(slack_url: str, connector_url: str, notice_id: int) -> dict[tuple[str, str], int]:
    """(workspace or tenant, user) -> copies of the notice the fakes hold."""
    copies: dict[tuple[str, str], int] = {}
    for message in fake_get(slack_url, "_fake/messages?event_type=herald_notice")["messages"]:
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        if payload.get("notice_id") != notice_id or message.get("thread_ts"):
            continue
        user = message["channel"].removeprefix("D")
        team = f"T{user[1:5]}BENCH"
        copies[(team, user)] = copies.get((team, user), 0) + 1
    for activity in fake_get(connector_url, "_fake/activities")["activities"]:
        if activity.get("replyToId"):
            continue
        key = (activity["tenant_id"], activity["user_id"])
        copies[key] = copies.get(key, 0) + 1
    return copies


def throttled_summary(stats: dict[str, Any]) -> dict[str, Any]:
    throttled = stats.get("throttled", {})
    return {"total": throttled.get("total", 0), "by_reason": throttled.get("by_reason", {}),
            "by_method": throttled.get("by_method", {}),
            "accepted": stats.get("accepted", {}).get("by_method", {}),
            "transient": stats.get("transient", {}).get("total", 0)}


async def run_once(args: argparse.Namespace, replicas: int, server_url: str) -> dict[str, Any]:
    tenants = programme(args.recipients, args.tenants, args.seed)
    slack, teams = slack_limits(args), teams_limits(args)
    for t in tenants:
        t.ideal_seconds = ideal_seconds(t, slack, teams)
    database = ScratchDatabase(server_url, args.keep, name="scale")
    await database.create()
    state = RunState()
    workdir = Path(tempfile.mkdtemp(prefix="herald-scale-"))
    problems: list[str] = []
    try:
        progress(f"{replicas} replica(s): database {shown_url(database.url)}, logs in {workdir}")
        slack_fake, slack_url = start_fake("slack", args, [t for t in tenants if t.platform == "slack"], workdir)
        state.children.append(slack_fake)
        connector, connector_url = start_fake("teams", args, [t for t in tenants if t.platform == "teams"], workdir)
        state.children.append(connector)
        env = herald_env(args, database.url, slack_url, connector_url)
        herald_cli(env, "db", "upgrade")
        seed_seconds = await seed_directory(database.url, tenants, connector_url)
        progress(f"seeded {args.recipients} members over {len(tenants)} tenants in {seed_seconds:.1f}s")

        servers = [start_replica(i, env, workdir) for i in range(replicas)]
        state.children.extend(child for child, _ in servers)
        wait_healthy(servers)
        cpu_before = [child.cpu_seconds() for child, _ in servers]

        progress("herald send --importance must-know --audience all --yes")
        send_started = time.perf_counter()
        out = send_must_know(env)
        send_cli_seconds = time.perf_counter() - send_started
        notice_id = int(out.split("notice ", 1)[1].split()[0])
        progress(f"{out.strip()} ({send_cli_seconds:.1f}s)")

        deadline = time.monotonic() + args.timeout
        timed_out = False
        while True:
            summary = await delivery_summary(database.url, notice_id)
            open_rows = sum(n for s, n in summary["by_status"].items() if s not in FINAL)
            if not open_rows:
                break
            for child, _ in servers:
                if child.process.poll() is not None:
                    raise RuntimeError(f"{child.name} exited ({child.process.returncode}); see {child.log}")
            if time.monotonic() > deadline:
                timed_out = True
                problems.append(f"timed out after {args.timeout}s with {open_rows} rows not final")
                break
            progress(f"deliveries: {summary['by_status']}")
            await asyncio.sleep(2.0)
        cpu_after = [child.cpu_seconds() for child, _ in servers]
        peak_rss = [child.peak_rss_mb() for child, _ in servers]

        # ---- verification, from the fakes' records ----
        copies = received_copies(slack_url, connector_url, notice_id)
        expected = {(t.external_id, t.user_id(n)) for t in tenants for n in range(t.size)}
        missing = len(expected - copies.keys())
        duplicated = sum(c - 1 for key, c in copies.items() if c > 1 and key in expected)
        unexpected = sum(c for key, c in copies.items() if key not in expected)
        platform_of = {t.external_id: t.platform for t in tenants}
        duplicated_by_platform: dict[str, int] = {}
        for (tenant_id, _), c in copies.items():
            if c > 1 and tenant_id in platform_of:
                duplicated_by_platform[platform_of[tenant_id]] = duplicated_by_platform.get(platform_of[tenant_id], 0) + c - 1
        lease_losses = sum(Path(child.log).read_text(errors="replace").count("lost the lease")
                           for child, _ in servers)
        if missing:
            problems.append(f"{missing} recipients missing")
        if duplicated:
            problems.append(f"{duplicated} duplicate copies")
        if unexpected:
            problems.append(f"{unexpected} copies to unexpected recipients")
        failed = summary["by_status"].get("failed", 0)
        if failed:
            problems.append(f"{failed} delivery rows failed: {summary['errors']}")

        sent_at: datetime = summary["sent_at"]
        finish = {w: (last - sent_at).total_seconds() if last else None for w, last in summary["finishes"].items()}
        ideal = max(t.ideal_seconds for t in tenants)
        done = [s for s in finish.values() if s is not None]
        completion = max(done) if done and not timed_out else None
        small = [t for t in tenants if t.size < SMALL_TENANT]
        small_finish = [finish.get(t.external_id) for t in small]
        delivered = summary["by_status"].get("delivered", 0)
        cpu = sum(after - before for after, before in zip(cpu_after, cpu_before, strict=True))
        slowest = sorted(tenants, key=lambda t: t.ideal_seconds, reverse=True)[:5]

        result: dict[str, Any] = {
            "replicas": replicas,
            "recipients": args.recipients,
            "tenants": {"total": len(tenants), "slack": sum(t.platform == "slack" for t in tenants),
                        "teams": sum(t.platform == "teams" for t in tenants),
                        "above_5000": sum(t.size > LARGE_TENANT for t in tenants),
                        "below_200": len(small), "largest": tenants[0].size, "smallest": tenants[-1].size},
            "time_scale": args.time_scale,
            "completion_seconds": None if completion is None else round(completion, 2),
            "ideal_seconds": round(ideal, 2),
            "ratio": None if completion is None or ideal <= 0 else round(completion / ideal, 3),
            "target_ratio": 1.10,
            "missing": missing,
            "duplicated": duplicated,
            "unexpected": unexpected,
            "duplicated_by_platform": duplicated_by_platform,
            "lease_losses": lease_losses,  # "lost the lease" warnings in the replicas' logs
            "throttled": {"slack": throttled_summary(fake_get(slack_url, "_fake/stats")),
                          "teams": throttled_summary(fake_get(connector_url, "_fake/stats"))},
            "deliveries_by_status": summary["by_status"],
            "attempts": summary["attempts"],
            "cpu_seconds": round(cpu, 2),
            "cpu_seconds_per_1000": round(cpu / delivered * 1000, 3) if delivered else None,
            "peak_rss_mb": peak_rss,
            "small_tenants": {
                "count": len(small),
                "last_finish_seconds": (None if not small or None in small_finish
                                        else round(max(s for s in small_finish if s is not None), 2)),
                "ideal_seconds": round(max((t.ideal_seconds for t in small), default=0.0), 2),
            },
            "slowest_tenants": [{"tenant": t.external_id, "size": t.size, "ideal_seconds": round(t.ideal_seconds, 2),
                                 "finish_seconds": None if finish.get(t.external_id) is None
                                 else round(finish[t.external_id], 2)} for t in slowest],
            "send_cli_seconds": round(send_cli_seconds, 2),
            "seed_seconds": round(seed_seconds, 2),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # the machine is shared
            "limits": {"slack": {"post_per_workspace": slack.post_per_workspace.as_dict(),
                                 "post_per_channel": slack.post_per_channel.as_dict(),
                                 "conversations.open": slack.tiers[slack.method_tiers["conversations.open"]].as_dict()},
                       "teams": {"per_tenant": teams.per_tenant.as_dict()}},
            "verified": not problems,
        }
        if problems:
            result["problems"] = problems
        return result
    finally:
        state.stop_all()
        await database.drop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


NOTES = ("seconds are scaled: every limit period of the fakes and Herald's own pacing is divided by time_scale "
         "(real-platform seconds = scaled x time_scale); Retry-After is whole seconds (at least 1) as the platforms "
         "send it and Herald's retry backoff is not scaled, so a 429 costs relatively more at a high time_scale; "
         "ideal = the slowest tenant's minimum (Slack: one chat.postMessage per member through the workspace bucket; "
         "Teams: create conversation + send per member through the tenant bucket; buckets start full); completion "
         "is measured from the notice's sent_at to the last delivered_at; cpu covers every replica from just before "
         "`herald send` to the end")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2],
                        help="replica counts, run in turn, each on a fresh database (default: 1 2)")
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=100, help="organisations, half Slack and half Teams")
    parser.add_argument("--time-scale", type=float, default=20.0,
                        help="K: the fakes' rates and Herald's pacing are K times the platforms' (default 20)")
    parser.add_argument("--slack-workspace-rate", type=float, default=SlackLimits().post_per_workspace.count,
                        help="chat.postMessage per minute per workspace before scaling (default: the fake's 300)")
    parser.add_argument("--seed", type=int, default=12, help="RNG seed of the tenant sizes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for every delivery, per run")
    parser.add_argument("--database-url", default=None,
                        help="postgres://... of a server to create the runs' databases in (default: a throwaway "
                             "cluster from .ci/postgres.sh)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the replicas' logs")
    args = parser.parse_args(argv)
    if args.tenants < 2 or args.recipients < args.tenants:
        parser.error("--tenants must be at least 2 and --recipients at least --tenants")
    if args.time_scale <= 0 or any(r < 1 for r in args.replicas):
        parser.error("--time-scale must be positive and --replicas at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cluster = None
    server_url = args.database_url
    if not server_url:
        progress("starting a throwaway PostgreSQL cluster (.ci/postgres.sh)")
        cluster = PostgresCluster()
        server_url = cluster.url
    runs: list[dict[str, Any]] = []
    try:
        for replicas in args.replicas:
            runs.append(asyncio.run(run_once(args, replicas, server_url)))
            progress(f"{replicas} replica(s): completion {runs[-1]['completion_seconds']}s, "
                     f"ideal {runs[-1]['ideal_seconds']}s, ratio {runs[-1]['ratio']}")
    finally:
        if cluster is not None:
            cluster.stop()
    print(json.dumps({"benchmark": "scale", "seed": args.seed, "runs": runs, "notes": NOTES}))
    bad = [r for r in runs if not r["verified"]]
    for r in bad:
        progress(f"VERIFICATION FAILED ({r['replicas']} replica(s)): " + "; ".join(r.get("problems", [])))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
