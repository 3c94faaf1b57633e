"""`herald doctor`: check the configuration and everything Herald depends on, one line each."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from bot.cli.base import CLOCK, main, with_commands_database

_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


@main.command(help="Check the configuration, database, Slack and Teams credentials, public URL, "
                   "configuration files, audit trail and clock; exit 1 if anything fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    from bot.ops.doctor import FAIL, Check, failed, run_checks
    from config.settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        checks = [Check("configuration", FAIL, str(exc), "fix the HERALD_* variable named (environment or .env)")]
    else:
        checks = asyncio.run(run_checks(with_commands_database(settings), CLOCK))
    if as_json:
        click.echo(json.dumps({"ok": not failed(checks), "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            fix = f"  → fix: {c.fix}" if c.fix and c.status in ("fail", "warn") else ""
            click.echo(f"{_MARKS.get(c.status, c.status)}  {c.name:{width}}  {c.detail}{fix}")
    sys.exit(1 if failed(checks) else 0)
