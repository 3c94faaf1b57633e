"""A notice's status and its report summary read the same in Slack and Teams, in each platform's
markup, user text escaped; list replies (status, report, questions, scheduled, progress) keep
within what one message may hold."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from bot.channels.slack_blocks import SLACK_REPLY, status_text
from bot.channels.teams_cards import MAX_ACTIVITY_BYTES, activity_size
from bot.channels.teams_replies import TEAMS_REPLY, report_markdown, result_markdown, status_markdown, text_activity
from bot.common.replies import ReplyBudget
from bot.core.commands.runner import Handoffs, ReportReady, Scheduled, handoffs_text
from bot.core.notices.status import NoticeStatusReport
from bot.handlers.slack.replies import scheduled_text, summary_text
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



def _organisation(external_id: str, name: str, **counts: int) -> dict:
    row = {"organisation_id": external_id, "organisation": name, "recipients": 0, "delivered": 0, "failed": 0,
           "pending": 0, "digest": 0, "cancelled": 0, "held": 0, "acknowledged": 0, **counts}
    return {**row, "rate": round(row["acknowledged"] / row["delivered"], 4) if row["delivered"] else None}


def _ready(organisations: list[dict], importance: str = "must-know") -> ReportReady:
    notice = Notice(id=7, title="Recall <!channel>", topic="operations", importance=importance, status="sent",
                    audience="tier:gold", body="")
    summary = {"recipients": 9, "delivered": 5, "failed": 4, "pending": 0, "digest": 0, "cancelled": 0, "held": 0,
               "acknowledged": 2, "rate": 0.4, "organisations": organisations}
    return ReportReady(notice, summary, None)  # type: ignore[arg-type]


def test_the_report_reply_says_the_same_things_in_slack_and_teams() -> None:
    """`report <id>`: one summary (bot.channels.report_lines) in each platform's markup. Teams
    showed the totals only, without the rate or a line per partner. Partners needing attention
    come first: nobody received it (a matched partner with no active member), nothing delivered,
    then the lowest rate."""
    ready = _ready([
        _organisation("acme", "Acme <Locks>", recipients=2, delivered=2, acknowledged=1),
        {**_organisation("keys", "Keys & Co", recipients=3, delivered=3, acknowledged=1, pending=0), "reminders_paused": {}},
        _organisation("bolt", "Bolt *Supply*", recipients=3, failed=3),
        {**_organisation("zeta", "Zeta Hardware"), "unreached": "no_active_member",
         "note": "no active recipient (no active member in the directory)"},
        _organisation("lynx", "Lynx", recipients=1, delivered=0, failed=1),
    ])
    slack = summary_text(ready).split("\n")
    teams = report_markdown(ready, "https://herald.example/r/x").split("\n\n")
    assert slack == [
        "*Report for notice #7: Recall &lt;!channel&gt;*",
        "Recipients 9 · delivered 5 · failed 4 · acknowledged 2 (40%)",
        "Matched partners nobody received it at: *1*",
        "Per partner, acknowledged of delivered, least acknowledged first:",
        "• Bolt *Supply*: none delivered · 3 failed",
        "• Lynx: none delivered · 1 failed",
        "• Zeta Hardware: no active recipient (no active member in the directory)",
        "• Keys &amp; Co: 1/3 (33%) · reminders paused",
        "• Acme &lt;Locks&gt;: 1/2 (50%)",
        "The full CSV report is in your direct messages with Herald.",
    ]
    assert teams == [
        "**Report for notice #7: Recall \\<!channel\\>**",
        "Recipients 9 · delivered 5 · failed 4 · acknowledged 2 (40%)",
        "Matched partners nobody received it at: **1**",
        "Per partner, acknowledged of delivered, least acknowledged first:",
        "- Bolt \\*Supply\\*: none delivered · 3 failed",
        "- Lynx: none delivered · 1 failed",
        "- Zeta Hardware: no active recipient \\(no active member in the directory\\)",
        "- Keys & Co: 1/3 (33%) · reminders paused",
        "- Acme \\<Locks\\>: 1/2 (50%)",
        "[Download the CSV report](https://herald.example/r/x) (the link works for 15 minutes)",
    ]


def test_a_report_of_a_notice_without_acknowledgements_counts_deliveries() -> None:
    """A need-to-know notice has no Acknowledge button: its reply counts delivered of recipients."""
    text = summary_text(_ready([_organisation("acme", "Acme", recipients=2, delivered=1, pending=1)], "need-to-know"))
    assert "Recipients 9 · delivered 5 · failed 4\n" in text and "acknowledged" not in text
    assert "• Acme: 1/2 · 1 pending" in text


def test_a_report_names_twenty_partners_and_counts_the_rest_on_each_platform() -> None:
    ready = _ready([_organisation(f"p{i:03d}", f"Partner {i:03d}", recipients=1, delivered=1) for i in range(250)])
    slack, teams = summary_text(ready), report_markdown(ready)
    assert slack.count("\n• Partner") == 20 and "\n… and 230 more organisations (see the CSV)\n" in slack
    assert teams.count("\n\n- Partner") == 20 and "\n\n… and 230 more organisations (see the CSV)\n\n" in teams
    assert teams.endswith("The full CSV: `herald report <id>` or the reports API.")
