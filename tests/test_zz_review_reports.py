"""Review of the acknowledgement reports (area: reports): each test fails on the current code for
the defect its docstring names, and passes once that defect is fixed."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from bot.core.compliance import reports
from bot.core.directory.importer import import_directory
from bot.core.notices import acks
from storage.models import Delivery, Member, Notice, Organisation, Staff
from tests.support import SAMPLE_DIRECTORY, TEAM, SlackHarness, directory_csv
from tests.test_slack_e2e import _sent_notice

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC
NOW = datetime(2026, 1, 12, 8, 0, tzinfo=UTC)


async def _collect(notice_id: int, fmt: str) -> str:
    return "".join([c async for c in reports.report_chunks(notice_id, fmt, now=NOW, actor="audit@vendor.example")])


def _meta_and_table(text: str) -> tuple[dict[str, list[str]], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    meta: dict[str, list[str]] = {}
    table = []
    for row in rows:
        if len(row) == 1 and row[0].startswith("# "):
            key, _, value = row[0][2:].partition(": ")
            meta.setdefault(key, []).append(value)
        else:
            table.append(row)
    return meta, table


# ---- 1. the Slack `report` reply never shows an acknowledgement rate ---------------------------

async def test_slack_report_reply_states_the_acknowledgement_rates(slack_http: SlackHarness) -> None:
    """`/herald report N` in Slack: the summary reply formats `acknowledgement_rate`, a key the
    summary (reports.notice_summary) does not have (it is `rate`), so the reply never shows the
    acknowledgement rate, neither in total nor per organisation."""
    slack = slack_http
    slack.clock.set(T0)
    notice_id = await _sent_notice(slack, "send must-know operations tier:gold | Recall of LX-200 | Stop selling")
    # anna, bo and di delivered (ed has no account); anna acknowledges
    result = await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=slack.clock.now())
    assert result.newly_recorded
    summary = await reports.notice_summary(notice_id)
    assert (summary["delivered"], summary["acknowledged"], summary["rate"]) == (3, 1, 0.3333)

    _, _, key = await slack.command(f"report {notice_id}")
    (reply,) = await slack.responses(key)
    text = reply.args["text"]
    assert "acknowledged 1" in text and "Acme Locks" in text  # the summary is there ...
    assert "acknowledged 1 (33%)" in text, text  # ... but not the rate
    assert "Acme Locks*: 1/2 (50%)" in text or "Acme Locks: 1/2 (50%)" in text, text


async def test_slack_report_reply_says_when_organisations_were_left_out(slack_http: SlackHarness) -> None:
    """The Slack summary lists the first 20 organisations (by id) and silently drops the rest: a
    CAM with 25 partners reads a list that looks complete, and the five left out (here the ones
    nobody acknowledged) are not mentioned at all."""
    slack = slack_http
    slack.clock.set(T0)
    rows = [f"p{i:02d},Partner {i:02d},gold,emea,de,retail,small,reseller,cam@vendor.example,"
            f"x{i:02d}@p{i:02d}.example,Person {i:02d},operations,Europe/Berlin,en,,,," for i in range(25)]
    result = await import_directory(directory_csv(rows), now=slack.clock.now(), actor="test")
    assert not result.rejected
    notice_id = await _sent_notice(slack, "send must-know operations tier:gold | Recall of LX-200 | Stop selling")
    summary = await reports.notice_summary(notice_id)
    assert len(summary["organisations"]) == 27  # acme, keys and the 25 new partners

    _, _, key = await slack.command(f"report {notice_id}")
    (reply,) = await slack.responses(key)
    text = reply.args["text"]
    listed = [line for line in text.splitlines() if line.startswith("•")]
    assert len(listed) == 20
    assert "Partner 24" in text or "7 more" in text, f"27 organisations, 20 listed, nothing says so:\n{text}"
