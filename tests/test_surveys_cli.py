"""`herald survey ...`, `herald send --variant --share`, `herald rollout` and `herald variants`."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.core.surveys.answers import answer_survey
from storage.models import AuditEvent, Delivery, Notice, NoticeExperiment
from tests.support import TEAM, in_database
from tests.survey_support import big_directory, members
from tests.cli_support import in_process_cli


@pytest.fixture
def cli(db_url: str, tmp_path, monkeypatch) -> tuple[CliRunner, str]:
    runner = in_process_cli(monkeypatch, db_url)
    directory = tmp_path / "partners.csv"
    directory.write_text(big_directory())
    assert runner.invoke(main, ["directory", "import", str(directory)]).exit_code == 0
    assert runner.invoke(main, ["staff", "add", "admin@vendor.example", "--role", "admin"]).exit_code == 0
    return runner, db_url




def test_survey_from_the_command_line(cli: tuple[CliRunner, str]) -> None:
    runner, db_url = cli
    usage = runner.invoke(main, ["survey", "send", "--topic", "announcements", "--audience", "all", "--question",
                                 "Q?", "--yes", "--as", "admin@vendor.example"])
    assert usage.exit_code == 2 and "--scale or 2 to 5 --option" in usage.output
    sent = runner.invoke(main, ["survey", "send", "--topic", "announcements", "--audience", "org:acme", "--question",
                                "Which format?", "--option", "Webinar", "--option", "Workshop", "--yes",
                                "--as", "admin@vendor.example"])
    assert sent.exit_code == 0, sent.output
    assert "queued for 6 recipients" in sent.output
    survey_id = int(sent.stdout.split()[1])

    async def deliver_and_answer() -> None:
        await Delivery.filter(notice_id=survey_id).update(status="delivered", channel_id="D", message_id="1")
        for index, (_, _, user) in enumerate(members()[:4]):
            await answer_survey(survey_id, index % 2, platform="slack", workspace_id=TEAM, user_id=user,
                                now=datetime.now(UTC))
    in_database(db_url, deliver_and_answer)

    data = json.loads(runner.invoke(main, ["survey", "results", str(survey_id), "--json"]).output)
    assert data["total"]["answered"] == 4 and [c["count"] for c in data["total"]["distribution"]] == [2, 2]
    assert [a["email"] for a in data["answers"]] == [f"m{n}@acme.example" for n in range(1, 5)]
    table = runner.invoke(main, ["survey", "results", str(survey_id), "--format", "csv"]).output
    assert "total,all,6,4,0.6667,,,2,2" in table
    text = runner.invoke(main, ["survey", "results", str(survey_id)]).output
    assert "answered 4 of 6 delivered (67%)" in text and "- Webinar: 2 (50%)" in text
    listed = json.loads(runner.invoke(main, ["survey", "list", "--json"]).output)
    assert [(s["id"], s["open"]) for s in listed] == [(survey_id, True)]
    assert runner.invoke(main, ["survey", "close", str(survey_id)]).exit_code == 2  # --as is required
    assert "closed" in runner.invoke(main, ["survey", "close", str(survey_id), "--as", "admin@vendor.example"]).output
    assert "already closed" in runner.invoke(main, ["survey", "close", str(survey_id),
                                                    "--as", "admin@vendor.example"]).output
    assert "No journey surveys" in runner.invoke(main, ["survey", "stages"]).output
    missing = runner.invoke(main, ["survey", "results", "999"])
    assert missing.exit_code == 1 and "survey #999 does not exist" in missing.output


def test_survey_send_needs_an_accountable_sender(cli: tuple[CliRunner, str]) -> None:
    """As `herald send`: a survey is a notice, and the shell account alone is no sender."""
    runner, db_url = cli
    assert runner.invoke(main, ["staff", "add", "cam@vendor.example", "--role", "cam"]).exit_code == 0
    assert runner.invoke(main, ["staff", "add", "audit@vendor.example", "--role", "compliance"]).exit_code == 0
    survey = ["survey", "send", "--topic", "announcements", "--audience", "org:acme", "--question", "Which format?",
              "--option", "Webinar", "--option", "Workshop", "--yes"]

    nobody = runner.invoke(main, survey)
    assert nobody.exit_code == 2 and "--as" in nobody.output
    unknown = runner.invoke(main, [*survey, "--as", "someone@vendor.example"])
    assert unknown.exit_code == 1 and "no active staff member" in unknown.output
    not_a_sender = runner.invoke(main, [*survey, "--as", "audit@vendor.example"])
    assert not_a_sender.exit_code == 1 and "Only channel account managers and admins" in not_a_sender.output
    assert in_database(db_url, lambda: Notice.all().count()) == 0

    named = runner.invoke(main, [*survey, "--as", "CAM@vendor.example"])
    assert named.exit_code == 0, named.output
    survey_id = int(named.stdout.split()[1])
    notice = in_database(db_url, lambda: Notice.get(id=survey_id).prefetch_related("author"))
    assert notice.author.email == "cam@vendor.example"  # type: ignore[attr-defined]
    events = in_database(db_url, lambda: AuditEvent.filter(notice_id=survey_id, kind__startswith="notice.").order_by("id"))
    assert events and all(e.actor == "cam@vendor.example" and e.data.get("source") == "cli"  # type: ignore[attr-defined]
                          and e.data.get("os_user") == getpass.getuser() for e in events)  # type: ignore[attr-defined]


def test_variants_and_rollout_from_the_command_line(cli: tuple[CliRunner, str]) -> None:
    runner, db_url = cli
    bad = runner.invoke(main, ["send", "--topic", "announcements", "--importance", "need-to-know", "--audience", "all",
                               "--title", "A", "--body", "a", "--variant", "no bar", "--yes",
                               "--as", "admin@vendor.example"])
    assert bad.exit_code == 2 and "TITLE | BODY" in bad.output
    sent = runner.invoke(main, ["send", "--topic", "announcements", "--importance", "need-to-know", "--audience", "all",
                                "--title", "Title A", "--body", "Body A", "--variant", "Title B | Body B",
                                "--share", "25", "--yes", "--as", "admin@vendor.example"])
    assert sent.exit_code == 0, sent.output
    notice_id = int(sent.stdout.split()[1])
    rows = in_database(db_url, lambda: Delivery.filter(notice_id=notice_id).values_list("status", "variant"))
    assert sorted(rows) == sorted([("pending", "A")] * 2 + [("pending", "B")] + [("held", "")] * 9)  # type: ignore[arg-type]
    compared = json.loads(runner.invoke(main, ["variants", str(notice_id), "--json"]).output)
    assert compared["held"] == 9 and compared["share_percent"] == 25
    nobody = runner.invoke(main, ["rollout", str(notice_id), "b"])
    assert nobody.exit_code == 2 and "--as" in nobody.output  # it sends to everyone held back: someone answers for it
    admin = ["--as", "admin@vendor.example"]
    out = runner.invoke(main, ["rollout", str(notice_id), "b", *admin])
    assert out.exit_code == 0 and "queued for 9 held-back recipients" in out.output
    rolled_by = in_database(db_url, lambda: NoticeExperiment.get(notice_id=notice_id).values_list("rolled_out_by", flat=True))
    assert rolled_by == "admin@vendor.example"
    assert "already rolled out" in runner.invoke(main, ["rollout", str(notice_id), "B", *admin]).output
    refused = runner.invoke(main, ["rollout", str(notice_id), "A", *admin])
    assert refused.exit_code == 1 and "rolled out variant B" in refused.output
    text = runner.invoke(main, ["variants", str(notice_id)]).output
    assert "variant B rolled out" in text and "not enough data yet" in text
    assert "Rollout of variant B to 9 held-back members (not counted above or in the tests): delivered 0" in text
    compared = json.loads(runner.invoke(main, ["variants", str(notice_id), "--json"]).output)
    assert [v["assigned"] for v in compared["variants"]] == [2, 1]  # the first share only
    assert compared["rollout"] == {"variant": "B", "members": 9, "delivered": 0, "interacted": 0}
