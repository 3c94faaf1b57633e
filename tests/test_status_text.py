"""A notice's status reads the same in Slack and Teams, in each platform's markup, user text escaped."""

from __future__ import annotations

from bot.channels.slack_blocks import status_text
from bot.channels.teams_replies import status_markdown
from bot.core.notices.status import NoticeStatusReport
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
