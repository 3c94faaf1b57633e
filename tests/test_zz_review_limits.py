"""Review (area: platform message size and shape limits). Each test demonstrates a defect: a
message Herald builds that Slack or Teams would refuse or silently cut, or a fake kinder than the
platform it stands in for. They fail on the current code and pass once the defect is fixed."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.handlers.slack.common import SORRY
from bot.core.directory.importer import import_directory
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_signing import event_body
from bot.core.commands.parser import SendCommand
from bot.core.notices import sending as notices
from tests.support import TEAM, Rig, SlackHarness, directory_csv, seed_directory, start_harness, stop_harness, wait_until
from tests.teams_support import TeamsRig

pytestmark = pytest.mark.usefixtures("warm_knowledge_base")


# ---- 2. chat replies with no bound: `progress` for a CAM with many partner members ---------------

def _many_members(count: int, *, orgs: int = 12, slack: bool = False) -> str:
    """`count` partner members across `orgs` organisations, all managed by cam@vendor.example."""
    rows = []
    for i in range(count):
        org = i % orgs
        ids = f"{TEAM},UBULK{i:05d}" if slack else ","
        rows.append(f"bulk{org:02d},Bulk Partner {org:02d} GmbH,silver,emea,de,retail,medium,reseller,"
                    f"cam@vendor.example,person{i:05d}@bulk{org:02d}.example,Person {i:05d} Lastname,sales,"
                    f"Europe/Berlin,de,{ids},,")
    return directory_csv(rows)


async def test_teams_progress_for_many_members_still_reaches_the_cam(teams: TeamsRig) -> None:
    """Teams refuses a bot message over ~100 KB (the payload counted as UTF-16) with 413
    MessageSizeTooBig (learn.microsoft.com/microsoftteams/platform/bots/how-to/format-your-bot-messages;
    the fake Bot Connector keeps that limit). `progress` answers one Markdown line per active member
    of every organisation the CAM manages (teams_replies.result_markdown → runner.progress_text), with
    no cap: for a CAM with 1,200 partner members the reply is ~250 KB, the connector answers 413, the
    handler only logs a warning (TeamsHandler.reply) and the CAM sees nothing at all."""
    result = await import_directory(_many_members(1_200), now=teams.clock.now(), actor="test")
    assert not result.rejected
    conversation = "a:conv-aad-cam"
    before = len(teams.connector.activities(conversation))
    status, _ = await teams.post(teams.activity("message", "aad-cam", text="progress"))
    assert status == 200
    refused = [c for c in teams.connector.calls if c.conversation_id == conversation and c.status == 413]
    sent = teams.connector.activities(conversation)[before:]
    assert sent and not refused, (
        f"the `progress` reply never reached the CAM: the Bot Connector answered {[c.status for c in refused]} "
        f"({[c.error_code for c in refused]}) and nothing was shown instead")


async def test_slack_progress_for_many_members_is_not_cut_by_slack(slack_http: SlackHarness) -> None:
    """Slack truncates a message's `text` beyond 40,000 characters (docs.slack.dev/reference/methods/
    chat.postMessage, "Truncating content"; the changelog 2018-04 "truncating really long messages").
    `/herald progress` answers one line per member in a single text (replies.render → progress_text)
    with no cap and no "… and N more": for 1,200 members it is ~60,000 characters, so the last third of
    the CAM's partners silently disappear from the answer. (The fake Slack API keeps no text limit,
    which is how this went unnoticed.)"""
    result = await import_directory(_many_members(1_200), now=slack_http.clock.now(), actor="test")
    assert not result.rejected
    _, _, key = await slack_http.command("progress")
    (reply,) = await slack_http.responses(key)
    text = reply.args.get("text", "")
    assert len(text) <= 40_000, f"the `progress` reply is {len(text):,} characters; Slack keeps only the first 40,000"
