"""Review (rate limits): delivery under the platforms' documented limits.

Each test fails on the current code for the reason in its docstring and passes once the defect
is fixed. Two "replicas" are two Herald services in one process sharing the database, as in
tests/test_lanes.py; the fake Slack API keeps Slack's documented tiers (limits mode) on a manual
monotonic clock, so nothing depends on wall-clock time.
"""

from __future__ import annotations

from bot.core.directory.importer import import_directory
from bot.service import Herald
from tests.fakes.rate_limits import ManualMonotonic
from tests.fakes.slack_limits import SlackLimits
from tests.support import CAM_USER, TEAM, Rig, SlackHarness, directory_csv, listeners_done


def _replica(rig: Rig) -> Herald:
    return Herald(rig.herald.settings, clock=rig.clock, catalog=rig.herald.catalog)


async def _add_members(rig: Rig, count: int, *, org: str = "big") -> list[str]:
    users = [f"U{org.upper()}{i}" for i in range(count)]
    for user in users:
        rig.fake.add_user(TEAM, user)
    rows = [f"{org},{org.title()} Co,gold,emea,de,retail,large,reseller,cam@vendor.example,m{i}@{org}.example,"
            f"M {i},sales,UTC,en,{TEAM},{user},," for i, user in enumerate(users)]
    result = await import_directory(directory_csv(rows), now=rig.clock.now(), actor="test")
    assert not result.rejected, result.rejected
    return users


def _limits_on(rig: Rig) -> ManualMonotonic:
    """Slack's documented limits (chat.update: Tier 3, 50 a minute per workspace), on a clock the
    test moves."""
    clock = ManualMonotonic()
    rig.fake.clock = clock
    rig.fake.set_limits(SlackLimits())
    return clock


def _throttled(rig: Rig, method: str) -> int:
    return rig.fake.limits_stats()["throttled"]["by_method"].get(method, 0)


async def test_a_throttled_report_upload_is_not_reported_as_herald_failing(slack_http: SlackHarness) -> None:
    """`/herald report <id>` (and the escalation's Open report button) opens the CAM's DM with
    conversations.open (Tier 3, 50 a minute per workspace, the same budget the outbox's crash
    checks use) and uploads with files.getUploadURLExternal / files.completeUploadExternal (Tier 4),
    straight from the listener (handlers/slack/replies.py SlackCommands.deliver_report). A 429 there
    is Slack saying "in N seconds", yet the CAM is told "Sorry, something went wrong on Herald's
    side. The details are in its log." and gets no report. Teams does it right for the same button
    (test_teams_e2e: a throttled report is sent again after the pause it asks for)."""
    from bot.channels.slack_blocks import SEND_ACTION
    from bot.handlers.slack.common import SORRY

    slack = slack_http
    _, _, key = await slack.command("send must-know operations tier:gold | Recall | Stop selling LX-200")
    (preview,) = await slack.responses(key)
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["action_id"] == SEND_ACTION))
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()

    slack.fake.fail_next("conversations.open", retry_after=2)  # Slack: 429, Retry-After: 2
    _, _, key = await slack.command(f"report {notice_id}")
    (answer,) = await slack.responses(key)
    await listeners_done(slack)
    assert answer.args["text"] != SORRY, (
        f"a 429 (Retry-After: 2) on the report's upload was answered {answer.args['text']!r}; "
        f"files shared: {len(slack.fake.shared_files)}")
