"""Run a fake standalone, for a benchmark that keeps the fakes in their own processes::

    python -m tests.fakes.slack_api --limits on --scale 10 --workspaces 50 --users-per-workspace 2000
    python -m tests.fakes.bot_connector --limits on --tenants 50 --users-per-tenant 2000 --port 8790

The first line on stdout is the URL to use (Slack: the Web API base ending in ``/api/``; Bot
Connector: the service URL ending in ``/``); a JSON summary of what was seeded follows on stderr.
SIGINT or SIGTERM stops the fake. Counters: ``GET <base>/_fake/stats`` (tests/fakes/control.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from tests.fakes.seeding import generated_tenant, generated_workspace, slack_seed, teams_seed

__all__ = ["main"]


def _json_arg(value: str | None) -> dict[str, Any]:
    """A JSON object given inline or as ``@path``."""
    if not value:
        return {}
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    data = json.loads(text)
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return data


def _parser(kind: str) -> argparse.ArgumentParser:
    module = "slack_api" if kind == "slack" else "bot_connector"
    parser = argparse.ArgumentParser(prog=f"python -m tests.fakes.{module}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--limits", choices=("off", "on"), default="off",
                        help="keep the platform's documented rate limits (default: off)")
    parser.add_argument("--scale", type=float, default=None, help="multiply every rate (limits on)")
    parser.add_argument("--profile", default=None,
                        help="limits overrides as a JSON object, or @file.json (see *Limits.from_dict)")
    parser.add_argument("--seed", default=None, help="a seed spec as a JSON object, or @file.json")
    parser.add_argument("--record-calls", action="store_true", help="keep every request in memory")
    if kind == "slack":
        parser.add_argument("--workspaces", type=int, default=0, help="generated workspaces (tests/fakes/seeding.py)")
        parser.add_argument("--users-per-workspace", type=int, default=0)
        parser.add_argument("--non-marketplace", action="store_true",
                            help="generated workspaces are distributed non-Marketplace installs")
    else:
        parser.add_argument("--tenants", type=int, default=0, help="generated tenants (tests/fakes/seeding.py)")
        parser.add_argument("--users-per-tenant", type=int, default=0)
        parser.add_argument("--open-conversations", action="store_true",
                            help="generated members have the bot installed already")
        parser.add_argument("--expect-token", default=None, help="require this bearer token")
    return parser


def _build(kind: str, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The fake (not started) and its seed spec."""
    overrides = _json_arg(args.profile)
    if args.scale is not None:
        overrides["scale"] = args.scale
    if kind == "slack":
        from tests.fakes.slack_api import FakeSlackAPI, SlackLimits

        limits = SlackLimits.from_dict(overrides) if args.limits == "on" else None
        fake: Any = FakeSlackAPI(record_calls=args.record_calls, limits=limits, host=args.host, port=args.port)
        spec = _json_arg(args.seed)
        spec.setdefault("workspaces", [])
        spec["workspaces"] += [generated_workspace(i, args.users_per_workspace, non_marketplace=args.non_marketplace)
                               for i in range(args.workspaces)]
    else:
        from tests.fakes.bot_connector import FakeBotConnector, TeamsLimits

        limits = TeamsLimits.from_dict(overrides) if args.limits == "on" else None
        fake = FakeBotConnector(record_calls=args.record_calls, limits=limits, host=args.host, port=args.port)
        spec = _json_arg(args.seed)
        spec.setdefault("tenants", [])
        spec["tenants"] += [generated_tenant(i, args.users_per_tenant, open_conversations=args.open_conversations)
                            for i in range(args.tenants)]
        if args.expect_token:
            spec["expect_token"] = args.expect_token
    return fake, spec


async def _serve(kind: str, args: argparse.Namespace) -> None:
    fake, spec = _build(kind, args)
    await fake.start()
    try:
        seeded = (slack_seed if kind == "slack" else teams_seed)(fake, spec)
        print(fake.url, flush=True)
        print(json.dumps({"url": fake.url, "seeded": seeded,
                          "limits": None if fake.limits is None else fake.limits.as_dict()}),
              file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await fake.stop()


def main(kind: str, argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tests.fakes.slack_api`` (kind ``slack``) and
    ``python -m tests.fakes.bot_connector`` (kind ``teams``)."""
    args = _parser(kind).parse_args(argv)
    try:
        asyncio.run(_serve(kind, args))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
