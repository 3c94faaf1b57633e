"""Review (authz): who may do what, across the lifecycle of vendor staff.

Each test fails on the current code for the reason in its docstring and passes once it is fixed.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from bot.channels.slack_blocks import REPLY_CALLBACK
from bot.cli import main
from bot.core.commands.parser import SendCommand
from bot.core.directory.staff import add_staff
from bot.core.notices import sending as notices
from bot.core.notices.escalations import REMIND_NOW_ACTION
from storage.models import Delivery, Member, Notice, Question, Staff
from tests.support import CAM_USER, SAMPLE_DIRECTORY, Rig, SlackHarness, listeners_done, modal_state, wait_until

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, a working hour


# ---- 1. no way to take a CAM's access away ------------------------------------------------------

@pytest.fixture
def cli_env(db_url: str, monkeypatch) -> CliRunner:
    for key in [k for k in os.environ if k.startswith("HERALD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HERALD_DATABASE_URL", db_url)
    return CliRunner()


def test_an_operator_can_offboard_a_staff_member_from_the_cli(cli_env: CliRunner, tmp_path) -> None:
    """A CAM leaves the vendor: the operator must be able to take their access away (every check in
    the code already refuses a staff member with `active = False`: chat, console, API, report links).
    But `herald staff` has only `add` (which always sets active) and `list`: there is no
    `staff remove` / `staff deactivate`, so offboarding means editing the database by hand, and a
    former CAM keeps /herald, the console and their Teams/Slack powers."""
    added = cli_env.invoke(main, ["staff", "add", "leaver@vendor.example", "--role", "cam",
                                  "--slack-user", "ULEAVER", "--slack-team", "T0PARTNER"])
    assert added.exit_code == 0, added.output
    attempts = {}
    for verb in ("remove", "deactivate", "disable"):
        result = cli_env.invoke(main, ["staff", verb, "leaver@vendor.example"])
        attempts[verb] = (result.exit_code, result.output.strip()[-200:])
        if result.exit_code == 0:
            break
    listed = cli_env.invoke(main, ["staff", "list"])
    line = next(x for x in listed.output.splitlines() if "leaver@vendor.example" in x)
    assert "(inactive)" in line, (
        f"no `herald staff` command deactivates a staff member; tried {attempts}; `staff list` still shows: {line!r}")


# ---- 3. changes allowed to a staff member whose role changes nothing --------------------------

async def _demoted_author_notice(slack: SlackHarness) -> int:
    """A must-know notice the CAM (Slack UCAM1) sent to Acme, delivered; then the CAM is made a
    compliance officer (`herald staff add cam@vendor.example --role compliance`)."""
    slack.clock.set(MONDAY_9_UTC)
    cam = await Staff.get(email="cam@vendor.example")
    command = SendCommand(importance="must-know", topic="announcements", audience="org:acme", title="Recall",
                          body="Stop selling LX-200", deadline=MONDAY_9_UTC + timedelta(days=2))
    preview = await notices.create_draft(cam, command, slack.herald.catalog, now=slack.clock.now())
    await notices.send_draft(preview.notice.id, cam, slack.herald.catalog, now=slack.clock.now())
    await slack.herald.outbox.drain()
    assert await Delivery.filter(notice_id=preview.notice.id, status="delivered").count() == 2
    await add_staff("cam@vendor.example", "compliance", now=slack.clock.now(), actor="ops")
    return preview.notice.id
