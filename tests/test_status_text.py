"""A notice's status reads the same in Slack and Teams, in each platform's markup, user text escaped;
list replies (status, questions, scheduled, progress) keep within what one message may hold."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from bot.channels.slack_blocks import SLACK_REPLY, status_text
from bot.channels.teams_cards import MAX_ACTIVITY_BYTES, activity_size
from bot.channels.teams_replies import TEAMS_REPLY, result_markdown, status_markdown, text_activity
from bot.common.replies import ReplyBudget
from bot.core.commands.runner import Handoffs, Scheduled, handoffs_text
from bot.core.notices.status import NoticeStatusReport
from bot.handlers.slack.replies import scheduled_text
from storage.models import Notice


def _report() -> NoticeStatusReport:
    notice = Notice(id=7, title="Recall <!channel>", topic="operations", importance="must-know", status="sent",
                    audience="all", body="", ack_revision=2, retract_reason="", scheduled_at=None)
    return NoticeStatusReport(notice=notice, recipients=5, delivered=3, failed=1, pending=0, digest=1,
                              acknowledged=2, failure_reasons=[("no DM channel **x**", 1)], reminders_sent=4,
                              escalations=1, paused_organisations=["acme"])


def test_slack_and_teams_say_the_same_things() -> None:
    slack = status_text(_report()).split("\n")
    teams = status_markdown(_report()).split("\n\n")
    assert len(slack) == len(teams) == 6
    assert slack[0] == "*Notice #7: Recall &lt;!channel&gt;* (must-know, operations, sent)"
    assert slack[1] == "Recipients: *5* · Delivered: *3* · Failed: *1* · Pending: *0*"
    assert teams[1] == "Recipients: **5** · Delivered: **3** · Failed: **1** · Pending: **0**"
    for text in (slack[2], teams[2]):  # re-acknowledgement of revision 2 is asked for
        assert text.startswith("Acknowledged (revision 2): ") and "reminders sent: 4 · escalations: 1" in text
    assert slack[3] == teams[3] == "Reminders paused for: acme"
    assert slack[4] == "Waiting for the digest: *1*" and teams[4] == "Waiting for the digest: **1**"
    assert slack[5].startswith("• 1 × ") and teams[5].startswith("- 1 × ")
    assert "<!channel>" not in teams[0] and "**x**" not in teams[5]  # Teams escapes too


def test_a_list_keeps_what_fits_and_says_how_many_more() -> None:
    budget = ReplyBudget(limit=60)
    items = [f"line {i}" for i in range(20)]
    text = budget.listing(["Head"], items, ["Tail"], more=lambda n: f"… and {n} more")
    assert text == "Head\nline 0\nline 1\nline 2\nline 3\nline 4\n… and 15 more\nTail"  # 59 characters
    assert budget.listing(["Head"], items[:3], more=lambda n: "never") == "Head\nline 0\nline 1\nline 2"
    assert ReplyBudget(limit=4).listing(["Head"], items, more=lambda n: f"+{n}") == "Head\n+20"  # nothing fits
    assert ReplyBudget(limit=1000).listing(["Head"], items, more=lambda n: f"+{n}", at_most=2) == "Head\nline 0\nline 1\n+18"
    assert ReplyBudget(limit=3).measure("é😀") == 3  # counted as UTF-16, never less than Slack or Teams count


def _question(number: int) -> SimpleNamespace:
    member = SimpleNamespace(name=f"Member {number}", email="", organisation=SimpleNamespace(name="Acme <Locks>"))
    return SimpleNamespace(id=number, member=member, text="How do I register a deal? " * 10)


def test_open_hand_offs_fit_one_message_and_point_to_the_console() -> None:
    """`questions` listed every open hand-off: a CAM with a backlog got a reply Slack cut or
    Teams refused. The oldest come first, the rest are counted, the console lists them all."""
    handoffs = Handoffs([_question(n) for n in range(1_000)])
    slack = handoffs_text(handoffs, bold="*", budget=SLACK_REPLY)
    assert len(slack) <= 40_000 and slack.startswith("*Questions waiting for your answer*\n• #0 Member 0 (Acme &lt;Locks&gt;)")
    shown = slack.count("\n• #")
    assert f"\n… and {1_000 - shown} more: the console's Questions page lists every one" in slack
    assert slack.endswith("Answer from the Reply button on the hand-off message.")
    teams = result_markdown(handoffs)
    assert activity_size(text_activity(teams)) <= MAX_ACTIVITY_BYTES and "more: the console's Questions page" in teams
    assert handoffs_text(Handoffs([_question(1)]), bold="*", budget=SLACK_REPLY).count("more") == 0


def test_scheduled_notices_fit_one_message() -> None:
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    notices = [Notice(id=n, title="T" * 150, topic="operations", importance="must-know", audience="all",
                      scheduled_at=at) for n in range(1_000)]
    slack, teams = scheduled_text(Scheduled(notices)), result_markdown(Scheduled(notices))
    assert len(slack) <= 40_000 and "more: the console's Notices page lists them all" in slack
    assert slack.endswith("Cancel one with `/herald cancel <notice-id>`.")
    assert activity_size(text_activity(teams)) <= TEAMS_REPLY.limit and "more: the console's Notices page" in teams


def test_a_status_names_twenty_paused_partners_and_counts_the_rest() -> None:
    report = _report()
    report.paused_organisations = [f"Partner {n:03d}" for n in range(250)]
    (line,) = [line for line in status_text(report).split("\n") if line.startswith("Reminders paused")]
    assert line.startswith("Reminders paused for: Partner 000, ") and line.endswith("Partner 019 and 230 more")

