"""Configuration errors, the `herald` command line, and /healthz."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from tortoise import Tortoise

from bot.app import build_app
from bot.cli import main
from config.settings import ConfigError, Settings, load_settings
from storage import db as storage_db
from tests.cli_support import herald, herald_at_a_terminal, herald_env, in_process_cli, serve_until_listening
from tests.conftest import POSTGRES_ONLY, POSTGRES_URL
from tests.support import SAMPLE_DIRECTORY, in_database

AS_CAM = "cam@vendor.example"


def _herald(*args: str, cwd: str | None = None, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True,
                          env={**clean, "PYTHONPATH": str(Path(__file__).parent.parent), **env}, timeout=60, cwd=cwd)


@pytest.mark.parametrize("env, message", [
    ({"HERALD_DATABASE_URL": "mysql://x/y"}, "must start with sqlite:// or postgres://"),
    ({"HERALD_DATABASE_URL": "postgres://"}, "needs a host and a database name"),
    ({"HERALD_SLACK_BOT_TOKEN": "xoxb-1"}, "HERALD_SLACK_SIGNING_SECRET is required"),
    ({"HERALD_PORT": "lots"}, "HERALD_PORT"),
    ({"HERALD_DELIVERY_LEASE_SECONDS": "3"}, "HERALD_DELIVERY_LEASE_SECONDS must be at least 7"),
    ({"HERALD_DELIVERY_HEARTBEAT_SECONDS": "10"},
     "HERALD_DELIVERY_HEARTBEAT_SECONDS must be more than 0 and less than 7 with HERALD_DELIVERY_LEASE_SECONDS=10"),
])
def test_invalid_configuration_is_one_line_and_exit_2(env: dict, message: str) -> None:
    result = _herald("notices", "list", **env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_sqlite_file_in_a_missing_folder_is_one_line_and_exit_2(tmp_path) -> None:  # noqa: ANN001
    """It used to hang in the migration engine, silently, for the CLI and for `serve`."""
    url = f"sqlite://{tmp_path}/no-such-folder/herald.db"
    for command in (("notices", "list"), ("db", "upgrade")):
        result = _herald(*command, HERALD_DATABASE_URL=url)
        assert result.returncode == 2, result
        assert result.stderr.strip() == (f"herald: cannot reach the database (the SQLite file {tmp_path}/no-such-folder/"
                                          f"herald.db is in a folder that does not exist: {tmp_path}/no-such-folder)")


@pytest.mark.skipif(not POSTGRES_URL, reason="needs HERALD_TEST_POSTGRES_URL")
@pytest.mark.parametrize("command", [("notices", "list"), ("db", "upgrade"), ("console-link", "cam@vendor.example"),
                                     ("serve", "--port", "0")], ids=" ".join)
def test_a_database_that_refuses_the_login_is_one_line_and_exit_2(command: tuple[str, ...]) -> None:
    """asyncpg's refusals are not OSErrors: a role that does not exist (or a wrong password) was an
    86-line traceback. Every path to the database says it in one line, without the password."""
    parts = urlsplit(POSTGRES_URL)
    url = urlunsplit((parts.scheme, f"herald_no_such_role:Secret-pw-1234@{parts.hostname}:{parts.port}",
                      parts.path, "", ""))
    result = _herald(*command, HERALD_DATABASE_URL=url, HERALD_SANDBOX="off", HERALD_KB_SEMANTIC="false")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "Secret-pw-1234" not in result.stderr + result.stdout
    prefix = "cannot start: " if command[0] == "serve" else ""
    assert result.stderr.strip().splitlines()[-1] == (
        f'herald: {prefix}the database refused the login (role "herald_no_such_role" does not exist)')


def test_in_sandbox_mode_a_command_uses_the_sandboxs_database_and_says_so(tmp_path) -> None:  # noqa: ANN001
    """`serve` runs the sandbox on herald-sandbox.db when no platform is configured; `status` of its
    notice used to look in an empty herald.db it created next to it."""
    result = _herald("notices", "list", cwd=str(tmp_path))
    assert result.returncode == 0, result
    assert "sandbox mode" in result.stderr and "herald-sandbox.db" in result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["herald-sandbox.db"]
    named = _herald("notices", "list", cwd=str(tmp_path), HERALD_DATABASE_URL="sqlite://real.db")
    assert named.returncode == 0 and "sandbox" not in named.stderr
    assert (tmp_path / "real.db").exists()
    # a member imported into the sandbox gets an inbox there (the sandbox has no Slack or Teams)
    (tmp_path / "more.csv").write_text(SAMPLE_DIRECTORY)
    imported = _herald("directory", "import", "more.csv", "--quiet", cwd=str(tmp_path))
    assert imported.returncode == 0, imported
    with sqlite3.connect(tmp_path / "herald-sandbox.db") as db:
        inboxes = db.execute("SELECT user_id FROM platform_account WHERE platform='sandbox'").fetchall()
    assert sorted(u for (u,) in inboxes) == sorted(line.split(",")[9] for line in SAMPLE_DIRECTORY.splitlines()[1:])


def test_in_sandbox_mode_the_doctor_and_db_upgrade_use_the_sandboxs_database_as_the_other_commands_do(
        tmp_path: Path) -> None:
    """The other commands work on herald-sandbox.db in sandbox mode, but `herald doctor` checked
    herald.db ("the SQLite file herald.db does not exist") and `herald db upgrade` created and
    migrated it."""
    upgrade = herald("db", "upgrade", cwd=tmp_path, HERALD_SANDBOX="auto")
    assert upgrade.returncode == 0 and "herald-sandbox.db" in upgrade.stderr, upgrade
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["herald-sandbox.db"]
    doctor = herald("doctor", "--json", cwd=tmp_path, HERALD_SANDBOX="auto")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert (checks["database"]["status"], checks["schema"]["status"]) == ("ok", "ok"), checks
    assert "herald-sandbox.db" in doctor.stderr
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["herald-sandbox.db"]


def test_the_doctor_does_not_create_a_missing_sqlite_file(tmp_path) -> None:  # noqa: ANN001
    result = _herald("doctor", cwd=str(tmp_path), HERALD_DATABASE_URL="sqlite://herald.db")
    assert "the SQLite file" in result.stdout + result.stderr and "does not exist" in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_settings_defaults_and_postgres_spelling() -> None:
    settings = load_settings(database_url="postgresql://u:p@db:5432/herald")
    assert settings.port == 3978 and settings.tortoise_db_url == "postgres://u:p@db:5432/herald?maxsize=20"
    # the pool's size: HERALD_DATABASE_POOL_SIZE, unless the URL gives one
    assert int(storage_db.tortoise_config(settings.tortoise_db_url)["connections"]["default"]["credentials"]["maxsize"]) == 20
    assert load_settings(database_url="postgres://u@db/herald?ssl=require", database_pool_size=8).tortoise_db_url \
        == "postgres://u@db/herald?ssl=require&maxsize=8"
    assert load_settings(database_url="postgres://u@db/herald?maxsize=3").tortoise_db_url == "postgres://u@db/herald?maxsize=3"
    assert load_settings(database_url="sqlite://herald.db").tortoise_db_url == "sqlite://herald.db"
    assert settings.slack_api_url == "https://slack.com/api/"
    with pytest.raises(ConfigError):
        load_settings(database_url="sqlite://")


@pytest.fixture
def cli_env(db_url: str, tmp_path, monkeypatch) -> CliRunner:
    return in_process_cli(monkeypatch, db_url)


RECALL = ["send", "--topic", "operations", "--importance", "must-know", "--audience", "tier:gold",
          "--title", "Recall of LX-200", "--body", "Stop selling LX-200 today.", "--deadline", "2099-01-01",
          "--yes", "--as", AS_CAM]


@pytest.fixture
def cli_sender(cli_env: CliRunner, tmp_path: Path) -> CliRunner:
    """`cli_env` with the sample directory, a CAM (AS_CAM) and a Slack workspace: ready for `herald send`."""
    partners = tmp_path / "partners.csv"
    partners.write_text(SAMPLE_DIRECTORY)
    for args in (["directory", "import", str(partners), "--quiet"],
                 ["staff", "add", AS_CAM, "--role", "cam", "--slack-user", "UCAM1", "--slack-team", "T0PARTNER"],
                 ["slack", "add-workspace", "T0PARTNER", "--token", "xoxb-abc"]):
        result = cli_env.invoke(main, args)
        assert result.exit_code == 0, result.output
    return cli_env


def _notices(db_url: str) -> list[tuple[int, str, int]]:
    """(id, status, copies of the notice in the outbox) for every notice, oldest first."""
    from storage.models import Delivery, Notice

    async def work() -> list[tuple[int, str, int]]:
        return [(n.id, n.status, await Delivery.filter(notice_id=n.id, kind="notice").count())
                for n in await Notice.all().order_by("id")]
    return in_database(db_url, work)


def test_directory_import_says_what_a_workbook_or_a_semicolon_file_is(cli_env: CliRunner, tmp_path) -> None:  # noqa: ANN001
    """An Excel workbook imported as is got "read it as windows-1252" and binary junk as the
    unknown column; Excel's semicolon "CSV" got "missing column(s)" for every column."""
    workbook = tmp_path / "partners.xlsx"
    workbook.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)))
    refused = cli_env.invoke(main, ["directory", "import", str(workbook), "--quiet"])
    assert refused.exit_code == 1 and "windows-1252" not in refused.output, refused.output
    assert "partners.xlsx: the directory file is a spreadsheet workbook (.xlsx or .ods), not CSV" in refused.output
    semicolons = tmp_path / "partners.csv"
    semicolons.write_text(SAMPLE_DIRECTORY.replace(",", ";"), encoding="cp1252")
    imported = cli_env.invoke(main, ["directory", "import", str(semicolons), "--quiet"])
    assert imported.exit_code == 0, imported.output
    assert "separates its cells with semicolons, not commas" in imported.output
    assert "created 5, updated 0, unchanged 0" in imported.output


def test_cli_directory_staff_send_list_status(cli_env: CliRunner, tmp_path) -> None:
    csv = tmp_path / "partners.csv"
    csv.write_text(SAMPLE_DIRECTORY + "zed,Zed,gold,emea,de,x,s,reseller,,bad-email,Zed,sales,UTC,en,,,,\n")
    dry = cli_env.invoke(main, ["directory", "import", str(csv), "--dry-run"])
    assert dry.exit_code == 1, dry.output  # a row is rejected: a script hears it
    assert "dry run: would have created 5" in dry.output and "rejected 1" in dry.output
    assert "line 7:" in dry.output
    real = cli_env.invoke(main, ["directory", "import", str(csv)])
    assert "created 5, updated 0, unchanged 0" in real.output and real.exit_code == 1
    again = cli_env.invoke(main, ["directory", "import", str(csv)])
    assert "created 0, updated 0, unchanged 5" in again.output

    added = cli_env.invoke(main, ["staff", "add", "Cam@Vendor.example", "--role", "cam", "--name", "Casey",
                                  "--slack-user", "UCAM1", "--slack-team", "T0PARTNER"])
    assert added.exit_code == 0 and "added cam@vendor.example as cam" in added.output
    listed = cli_env.invoke(main, ["staff", "list"])
    assert "cam@vendor.example" in listed.output and "T0PARTNER/UCAM1" in listed.output
    bad_role = cli_env.invoke(main, ["staff", "add", "x@vendor.example", "--role", "boss"])
    assert bad_role.exit_code == 2

    ws = cli_env.invoke(main, ["slack", "add-workspace", "T0PARTNER", "--token", "xoxb-abc"])
    assert ws.exit_code == 0 and "added Slack workspace T0PARTNER" in ws.output

    declined = cli_env.invoke(main, ["send", "--topic", "operations", "--importance", "must-know", "--audience",
                                     "tier:gold", "--title", "Recall", "--body", "Stop", "--as", AS_CAM], input="n\n")
    assert declined.exit_code == 2 and "add --yes" in declined.output  # not a terminal: nobody to confirm
    sent = cli_env.invoke(main, ["send", "--topic", "operations", "--importance", "must-know", "--audience",
                                 "tier:gold", "--title", "Recall", "--body", "Stop", "--deadline", "2099-01-01", "--yes", "--as", AS_CAM])
    assert sent.exit_code == 0, sent.output
    assert "queued for 4 recipients" in sent.output
    notice_id = int(sent.stdout.split()[1])

    bad = cli_env.invoke(main, ["send", "--topic", "operations", "--importance", "must-know", "--audience",
                                "teir:gold", "--title", "T", "--body", "B", "--yes", "--as", AS_CAM])
    assert bad.exit_code == 1 and "did you mean 'tier'?" in bad.output
    nobody = cli_env.invoke(main, ["send", "--topic", "operations", "--importance", "must-know", "--audience",
                                   "tier:diamond", "--title", "T", "--body", "B", "--yes", "--as", AS_CAM])
    assert nobody.exit_code == 1 and "nobody is in this audience; nothing was sent" in nobody.output
    late = cli_env.invoke(main, ["cancel", str(notice_id), "--as", AS_CAM])
    assert late.exit_code == 1 and f"herald retract {notice_id}" in late.output

    listing = json.loads(cli_env.invoke(main, ["notices", "list", "--json"]).output)
    assert [(n["id"], n["status"]) for n in listing] == [
        (notice_id + 1, "cancelled"), (notice_id, "sending")]  # newest first
    status = json.loads(cli_env.invoke(main, ["status", str(notice_id), "--json"]).output)
    assert status["recipients"] == 4 and status["pending"] == 3 and status["failed"] == 1
    missing = cli_env.invoke(main, ["status", "9999"])
    assert missing.exit_code == 1 and "notice 9999 does not exist" in missing.output
    beyond = cli_env.invoke(main, ["status", "99999999999"])  # past a 32-bit id: PostgreSQL refuses the query
    assert beyond.exit_code == 2 and "99999999999 is not in the range" in beyond.output

    edited = cli_env.invoke(main, ["edit", str(notice_id), "--body", "Stop selling LX-200 and LX-210", "--material",
                                   "--as", AS_CAM])
    assert edited.exit_code == 0 and "revision 2" in edited.output and "acknowledge it again" in edited.output
    retracted = cli_env.invoke(main, ["retract", str(notice_id), "--reason", "wrong model", "--as", AS_CAM])
    assert retracted.exit_code == 0 and "retracted" in retracted.output and "3 pending sends cancelled" in retracted.output
    again = cli_env.invoke(main, ["retract", str(notice_id), "--reason", "again", "--as", AS_CAM])
    assert again.exit_code == 0, again.output  # a retried script: done already, as `staff remove` says
    assert again.output.startswith(f"notice {notice_id} already retracted at ") and "(reason: wrong model)" in again.output
    other = cli_env.invoke(main, ["retract", str(notice_id + 1), "--reason", "never sent", "--as", AS_CAM])
    assert other.exit_code == 1 and "is cancelled and cannot be retracted" in other.output, other.output
    later = cli_env.invoke(main, ["send", "--topic", "operations", "--importance", "need-to-know", "--audience", "all",
                                  "--title", "Depot", "--body", "Closed", "--at", "2099-01-01T09:00Z", "--yes",
                                  "--as", AS_CAM])
    assert later.exit_code == 0 and "scheduled for 2099-01-01T09:00:00Z" in later.output


def test_the_status_text_lists_the_escalations_as_chat_does(cli_sender: CliRunner, db_url: str) -> None:
    """`herald status N` printed recipients and acknowledgements but no escalation at all, so an
    operator could not tell from it whether the partners' CAMs were told, while chat's status says
    how many went out and which failed with why. The text now has the same escalation lines."""
    from datetime import UTC, datetime

    from bot.core.notices import escalations

    sent = cli_sender.invoke(main, RECALL)
    assert sent.exit_code == 0, sent.output
    notice_id = int(sent.stdout.split()[1])
    after_the_deadline = datetime(2099, 1, 2, tzinfo=UTC)

    async def escalate() -> None:  # the deadline passed; the CAM's Slack is not configured here: they fail
        assert await escalations.plan_escalations(after_the_deadline) == 2
        await escalations.send_escalations({}, after_the_deadline)
    in_database(db_url, escalate)

    text = cli_sender.invoke(main, ["status", str(notice_id)])
    assert text.exit_code == 0, text.output
    assert "escalations: 0" in text.output, text.output
    assert "Escalations not sent, so nobody was told: 2" in text.output
    assert f"2 x {escalations.NO_CHAT_ACCOUNT}" in text.output


def test_a_retried_send_from_a_script_does_not_send_the_notice_twice(cli_sender: CliRunner, db_url: str) -> None:
    """A cron job runs `herald send ... --yes`; its SSH session drops (or the job's timeout fires)
    after Herald queued the notice, and the runner retries the very same command. SPEC: nothing is
    sent twice, across restarts, retries. Chat's Send is once-only per draft; from a script every
    run made and sent a new notice, so every partner got the recall twice, with two reminder
    series and two escalations. The identical command within 10 minutes now names the notice it
    already sent and queues nothing (exit 0); --again sends another; a changed command is new."""
    first = cli_sender.invoke(main, RECALL)
    assert first.exit_code == 0, first.output
    # Ed Fox is in the directory without Slack or Teams ids: his copy cannot be delivered
    assert "warning: 1 of them has no Slack or Teams account on file yet: its copy will fail" in first.stderr
    first_id = int(first.stdout.split()[1])

    retried = cli_sender.invoke(main, RECALL)

    assert retried.exit_code == 0, retried.output
    assert retried.output.startswith(f"notice {first_id} was already sent from an identical command at "), retried.output
    assert "not sending it again (--again sends another)" in retried.output
    live = [(i, status, copies) for i, status, copies in _notices(db_url) if status not in ("cancelled", "draft")]
    assert live == [(first_id, "sending", 4)], f"the retried command queued another notice: {live}"

    changed = cli_sender.invoke(main, [*RECALL, "--link", "https://vendor.example/lx-200"])
    again = cli_sender.invoke(main, [*RECALL, "--again"])
    assert changed.exit_code == 0 and again.exit_code == 0, (changed.output, again.output)
    assert "queued for 4 recipients" in changed.output and "queued for 4 recipients" in again.output
    assert [status for _, status, _ in _notices(db_url)] == ["sending"] * 3

    later = [*[a.replace("2099-01-01", "2099-02-01") for a in RECALL], "--at", "2099-01-06T09:00Z"]
    scheduled = cli_sender.invoke(main, later)
    scheduled_id = int(scheduled.stdout.split()[1])
    retried_later = cli_sender.invoke(main, later)
    assert retried_later.output.startswith(
        f"notice {scheduled_id} was already scheduled for 2099-01-06T09:00:00Z from an identical command at "), \
        retried_later.output
    cancelled = cli_sender.invoke(main, ["cancel", str(scheduled_id), "--as", AS_CAM])
    assert cancelled.exit_code == 0, cancelled.output
    resent = cli_sender.invoke(main, later)  # what was cancelled never went out: the same command sends it
    assert resent.exit_code == 0 and "scheduled for 2099-01-06T09:00:00Z" in resent.output, resent.output
    assert int(resent.stdout.split()[1]) == scheduled_id + 1


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
async def test_two_identical_sends_at_the_same_instant_send_one_notice(rig) -> None:  # noqa: ANN001
    """A cron job's `herald send ... --yes` and its retry start together (the runner gave up on a
    slow first run): each looked for an identical recent notice, found none, made a draft and sent
    it, so every partner got the recall twice (the check ran outside the draft's transaction, and
    the other run's notice was still a draft, which the check ignores). The runs now take turns
    per author, the check and the draft, its send already requested, in one transaction: one
    notice goes out, the other run is told it is a repeat."""
    import asyncio
    from datetime import timedelta

    from bot.core.commands.parser import SendCommand
    from bot.core.notices import sending
    from storage.models import Delivery, Notice, Staff

    cam, now = await Staff.get(email=AS_CAM), rig.clock.now()
    command = SendCommand(importance="must-know", topic="operations", audience="tier:gold", title="Recall of LX-200",
                          body="Stop selling LX-200 today.", deadline=now + timedelta(days=7))

    async def cron_run() -> sending.SendResult | Notice:  # the core calls of `herald send ... --yes`
        drafted = await sending.draft_unless_repeated(cam, command, rig.herald.catalog, now=now, confirmed=True)
        if isinstance(drafted, Notice):
            return drafted
        return await sending.send_draft(drafted.notice.id, cam, rig.herald.catalog, now=now)

    outcomes = await asyncio.gather(cron_run(), cron_run())

    sent = [o for o in outcomes if isinstance(o, sending.SendResult)]
    repeats = [o for o in outcomes if isinstance(o, Notice)]
    live = await Notice.exclude(status__in=["draft", "cancelled"]).values_list("id", "status")
    assert len(sent) == 1 and len(repeats) == 1, f"both runs sent the notice: {live}"
    assert live == [(sent[0].notice.id, "sending")] and repeats[0].id == sent[0].notice.id
    assert set(await Delivery.filter(kind="notice").values_list("notice_id", flat=True)) == {sent[0].notice.id}


async def test_the_check_for_a_retried_send_reads_the_authors_recent_notices_from_an_index(db: str) -> None:
    """Every `herald send` looks for its author's notices of the last minutes; notice only grows."""
    from datetime import UTC, datetime, timedelta

    from storage.models import Notice
    from tests.query_plans import uses_an_index_on

    recent = Notice.filter(author_id=1, created_at__gte=datetime(2026, 1, 5, tzinfo=UTC) - timedelta(minutes=10))
    indexed, plan = await uses_an_index_on(recent, "author_id")
    assert indexed, plan


def test_a_scheduled_send_confirms_the_time_it_will_go_out_in_utc(cli_sender: CliRunner) -> None:
    """README: the CLI gives UTC (ISO 8601); a time typed without an offset is UTC. `send --at`
    echoed the operator's own text: `--at 2099-01-06T09:00`, typed in Berlin meaning their
    morning, was confirmed as typed instead of as 09:00 UTC; with an offset, not in UTC at all.
    The confirmation states the moment Herald stored, in UTC."""
    later = [a.replace("2099-01-01", "2099-02-01") for a in RECALL]
    naive = cli_sender.invoke(main, [*later, "--at", "2099-01-06T09:00"])
    assert naive.exit_code == 0, naive.output
    offset = cli_sender.invoke(main, [*later, "--at", "2099-01-06T09:00+01:00"])
    assert offset.exit_code == 0, offset.output
    assert naive.output.rstrip().endswith("scheduled for 2099-01-06T09:00:00Z"), naive.output
    assert offset.output.rstrip().endswith("scheduled for 2099-01-06T08:00:00Z"), offset.output


def test_send_without_yes_from_a_script_is_refused_before_anything_is_created(cli_sender: CliRunner,
                                                                               db_url: str) -> None:
    """A script forgets --yes (standard input /dev/null or closed): the prompt met end of input,
    the command ended "Aborted!" (exit 1) without saying --yes was needed, and the draft made for
    the question stayed a draft for ever (in `notices list`, the API and the console, neither sent
    nor cancelled). Now it is refused before anything is created, saying to add --yes."""
    without_yes = [a for a in RECALL if a != "--yes"]
    result = cli_sender.invoke(main, without_yes, input="")  # end of input, as from /dev/null
    assert result.exit_code == 2, result.output
    assert "add --yes" in result.output and result.output.count("\n") == 1, result.output
    assert _notices(db_url) == []
    survey = cli_sender.invoke(main, ["survey", "send", "--topic", "announcements", "--audience", "all",
                                      "--question", "Which format?", "--option", "Webinar", "--option", "Workshop",
                                      "--as", AS_CAM], input="")
    assert survey.exit_code == 2 and "nobody can confirm this survey: add --yes" in survey.output, survey.output
    assert _notices(db_url) == []


def test_at_a_terminal_send_asks_and_a_no_or_an_aborted_prompt_cancels_the_draft(
        cli_sender: CliRunner, db_url: str, tmp_path: Path) -> None:
    """At a terminal, `send` without --yes shows what it would send and asks. "n" cancels the
    draft; so does Ctrl-D (end of input), which ended "Aborted!" and left the draft behind."""
    without_yes = [a for a in RECALL if a != "--yes"]
    declined = herald_at_a_terminal(*without_yes, typed="n\n", cwd=tmp_path, HERALD_DATABASE_URL=db_url)
    assert declined.returncode == 1, declined.stderr[-600:]
    assert "Send must-know notice #1 'Recall of LX-200' to 4 recipients?" in declined.stdout
    assert declined.stdout.rstrip().endswith("notice 1 cancelled"), declined.stdout
    aborted = herald_at_a_terminal(*without_yes, typed="\x04", cwd=tmp_path, HERALD_DATABASE_URL=db_url)
    assert aborted.returncode == 1 and "Traceback" not in aborted.stderr, aborted.stderr[-600:]
    assert aborted.stdout.rstrip().endswith("notice 2 cancelled"), aborted.stdout
    assert [(i, status) for i, status, _ in _notices(db_url)] == [(1, "cancelled"), (2, "cancelled")]
    accepted = herald_at_a_terminal(*without_yes, typed="y\n", cwd=tmp_path, HERALD_DATABASE_URL=db_url)
    assert accepted.returncode == 0 and "notice 3 queued for 4 recipients" in accepted.stdout, accepted.stderr[-600:]


def test_a_negative_or_zero_limit_is_a_usage_error_not_a_traceback(db_url: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC: bad input gets a clear message, never a stack trace. `--limit` took any integer:
    `herald notices list --limit -1` (a script computing the number) printed tortoise's
    ParamsError traceback and exited 1; so did the other listings' --limit."""
    result = herald("notices", "list", "--limit", "-1", cwd=tmp_path, HERALD_DATABASE_URL=db_url)
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert result.returncode == 2 and "-1 is not in the range 1<=x" in result.stderr, result.stderr[-300:]
    runner = in_process_cli(monkeypatch, db_url)
    for command in (["survey", "list"], ["qa", "unanswered"]):
        refused = runner.invoke(main, [*command, "--limit", "0"])
        assert refused.exit_code == 2 and "0 is not in the range 1<=x" in refused.output, (command, refused.output)


def test_an_operator_offboards_a_staff_member_from_the_cli_and_staff_add_brings_them_back(cli_env: CliRunner) -> None:
    """A CAM leaves the vendor: `herald staff remove EMAIL` makes them inactive (every check refuses
    them from then on), says what it ended, and running it again changes nothing; `staff add`
    reactivates them. An unknown address is refused."""
    added = cli_env.invoke(main, ["staff", "add", "leaver@vendor.example", "--role", "cam",
                                  "--slack-user", "ULEAVER", "--slack-team", "T0PARTNER"])
    assert added.exit_code == 0, added.output
    removed = cli_env.invoke(main, ["staff", "remove", "Leaver@Vendor.example"])
    assert removed.exit_code == 0, removed.output
    assert removed.output.startswith("removed leaver@vendor.example (cam): 0 console session(s) ended")
    line = next(x for x in cli_env.invoke(main, ["staff", "list"]).output.splitlines() if "leaver@vendor.example" in x)
    assert "(inactive)" in line
    again = cli_env.invoke(main, ["staff", "remove", "leaver@vendor.example"])
    assert again.exit_code == 0 and again.output.startswith("already inactive: leaver@vendor.example")
    unknown = cli_env.invoke(main, ["staff", "remove", "nobody@vendor.example"])
    assert unknown.exit_code == 1 and "no staff member with e-mail 'nobody@vendor.example'" in unknown.output

    back = cli_env.invoke(main, ["staff", "add", "leaver@vendor.example", "--role", "cam"])
    assert back.exit_code == 0 and "updated leaver@vendor.example as cam" in back.output
    line = next(x for x in cli_env.invoke(main, ["staff", "list"]).output.splitlines() if "leaver@vendor.example" in x)
    assert "(inactive)" not in line and "T0PARTNER/ULEAVER" in line  # their Slack identity was kept


async def test_healthz_reports_database_reachability(db: str) -> None:
    app = build_app(load_settings(database_url=db), run_worker=False, manage_database=False)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/healthz")
        assert response.status == 200 and (await response.json())["database"] == "ok"
    await storage_db.close()
    await Tortoise.init(config=storage_db.tortoise_config("postgres://herald@127.0.0.1:1/gone"))
    app = build_app(load_settings(database_url=db), run_worker=False, manage_database=False)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/healthz")
        assert response.status == 503 and (await response.json())["database"] == "unreachable"
        # liveness: the process is fine, a restart would not bring the database back
        live = await client.get("/livez")
        assert live.status == 200 and (await live.json()) == {"status": "alive"}


def test_cli_qa_ask_says_how_a_question_is_answered_and_why(cli_env: CliRunner, tmp_path) -> None:
    """`herald qa ask` for whoever writes the knowledge base: the outcome, the confidence against the
    threshold, and what the key-term check made of each word."""
    declined = cli_env.invoke(main, ["qa", "ask", "how do I reset the PIN of my bank card", "--json"])
    assert declined.exit_code == 0, declined.output
    report = json.loads(declined.output)
    assert not report["answered"] and report["did_you_mean"] == "portal-password-reset"
    assert report["confidence"] < report["threshold"] and report["key_term_penalty"] > 0
    assert report["words"] == {"reset": "covered", "pin": "alien", "bank": "alien", "card": "known"}
    answered = cli_env.invoke(main, ["qa", "ask", "our techs flashed the controller and it died"])
    assert answered.exit_code == 0, answered.output
    assert answered.output.startswith("answer: rma-process (")
    assert "against rma-process: " in answered.output and "flashed verb" in answered.output
    assert "the key-term check took 0.000" in answered.output
    # the deal-registration entry is tagged for sales: a support partner gets it, told so
    support = cli_env.invoke(main, ["qa", "ask", "how do I register a deal?", "--role", "support"])
    assert support.exit_code == 0, support.output
    assert support.output.startswith("answer: deal-registration-how (How do I register a deal?), saying it is "
                                     "mainly for other roles or tiers")
    broken = tmp_path / "kb"
    broken.mkdir()
    (broken / "faq.yaml").write_text("entries: [{id: x}]\n", encoding="utf-8")
    bad = cli_env.invoke(main, ["qa", "ask", "anything"], env={"HERALD_KB_DIR": str(broken)})
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines()[-1] == "herald: faq.yaml: entry 1 (x): 'title' is required"


def test_serve_port_0_listens_on_a_port_the_system_chooses_and_says_which(tmp_path: Path) -> None:
    """`herald serve --port 0` took 0 as "no port given" and listened on HERALD_PORT (or 3978):
    two such servers (the tests' own) collided, and one stopped on "address already in use".
    0 now asks the system for a free port, and the "Running on" line names the one it got."""
    url = f"sqlite://{tmp_path / 'herald.db'}"
    with socket.socket() as taken:  # HERALD_PORT names a port that is in use
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        configured = taken.getsockname()[1]
        code, output = serve_until_listening(tmp_path, HERALD_DATABASE_URL=url, HERALD_HOST="127.0.0.1",
                                             HERALD_PORT=str(configured))
    assert code is None, f"serve --port 0 did not start (exit {code}):\n{output[-600:]}"
    listening = re.search(r"Running on http://127\.0\.0\.1:(\d+)", output)
    assert listening is not None, output[-600:]
    assert int(listening.group(1)) not in (0, configured), output[-600:]


# ---- `serve` refuses what `doctor` fails -------------------------------------------------------

def test_serve_refuses_a_teams_app_id_without_its_password_as_the_doctor_does(tmp_path: Path) -> None:
    """`herald doctor` failed "HERALD_TEAMS_APP_ID is set without HERALD_TEAMS_APP_PASSWORD", but
    `herald serve` started: inbound Teams requests were JWT-checked against the app id, and every
    reply, notice and reminder went to the Bot Connector with no token and was refused there. Now
    the configuration is invalid (one line, exit 2) for every command, the doctor's first line
    says so, and only a local connector (HERALD_TEAMS_CHECK_SERVICE_URL=false) goes without one."""
    url = f"sqlite://{tmp_path / 'herald.db'}"
    app_id = "00000000-0000-0000-0000-000000000001"
    code, output = serve_until_listening(tmp_path, HERALD_DATABASE_URL=url, HERALD_TEAMS_APP_ID=app_id)
    assert code == 2, f"serve started with a Teams app id and no password:\n{output[-600:]}"
    assert output.strip() == ("herald: invalid configuration: HERALD_TEAMS_APP_PASSWORD is required when "
                              "HERALD_TEAMS_APP_ID is set (the app registration's client secret: the Bot "
                              "Connector refuses messages without it)")
    doctor = herald("doctor", cwd=tmp_path, HERALD_DATABASE_URL=url, HERALD_TEAMS_APP_ID=app_id)
    assert doctor.returncode == 1 and "FAIL  configuration" in doctor.stdout
    assert "HERALD_TEAMS_APP_PASSWORD is required" in doctor.stdout
    assert load_settings(teams_app_id=app_id, teams_check_service_url=False).teams_app_password is None


@pytest.mark.parametrize("setting, value, reason", [
    ("HERALD_TOPICS_FILE", "no-such-topics.yaml", "cannot read topics file no-such-topics.yaml: [Errno 2] No such file"),
    ("HERALD_TOPICS_FILE", "broken.yaml", "cannot read topics file broken.yaml: while parsing a flow sequence"),
    ("HERALD_KB_DIR", "no-such-kb", "knowledge base directory no-such-kb does not exist"),
], ids=["topics-missing", "topics-broken", "kb-missing"])
def test_serve_refuses_unreadable_content_files_in_one_line_as_the_doctor_does(
        tmp_path: Path, setting: str, value: str, reason: str) -> None:
    """`herald doctor` failed each of these naming the file, but `herald serve` printed a 40-line
    traceback for a missing or broken topics file (Herald() loaded the catalog outside serve's
    error handling), and with a missing knowledge base started, logged "background job
    knowledge_base failed", and failed every partner question. Both now read the files through
    one check (bot.ops.content_files): serve stops with one line naming the setting, exit 2."""
    (tmp_path / "broken.yaml").write_text("topics:\n  - name: [announcements\n")
    url = f"sqlite://{tmp_path / 'herald.db'}"
    code, output = serve_until_listening(tmp_path, HERALD_DATABASE_URL=url, **{setting: value})
    assert code == 2, f"serve with {setting}={value}: exit {code}\n{output[-900:]}"
    assert output.startswith(f"herald: cannot start: {setting}: {reason}") and len(output.splitlines()) == 1, output
    doctor = herald("doctor", "--json", cwd=tmp_path, HERALD_DATABASE_URL=url, **{setting: value})
    failing = [c for c in json.loads(doctor.stdout)["checks"] if c["status"] == "fail"]
    same = output.strip().removeprefix(f"herald: cannot start: {setting}: ")
    assert [c["detail"] for c in failing if c["name"] in ("topics", "knowledge base")] == [same]


def test_an_empty_secret_or_teams_setting_is_unset(tmp_path: Path) -> None:
    """`HERALD_SLACK_SIGNING_SECRET=` (an empty line in .env: `.env.example`'s commented line
    uncommented to fill in later) was taken as a secret (`SecretStr('')`): Slack counted as
    configured, and `herald serve` died in slack_sdk's SignatureVerifier with a traceback
    ("signing_secret must not be empty") while `herald doctor` said the configuration was valid.
    Every empty secret, Teams id and URL is now unset (or its default), as HERALD_SECRET_KEY and
    HERALD_METRICS_TOKEN already were."""
    url = f"sqlite://{tmp_path / 'herald.db'}"
    code, output = serve_until_listening(tmp_path, HERALD_DATABASE_URL=url, HERALD_SLACK_SIGNING_SECRET="")
    assert code is None and "Traceback" not in output, f"serve with an empty HERALD_SLACK_SIGNING_SECRET: exit {code}\n{output[-700:]}"
    doctor = herald("doctor", "--json", cwd=tmp_path, HERALD_DATABASE_URL=url, HERALD_SLACK_SIGNING_SECRET="")
    slack = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["slack"]
    assert slack["status"] == "skip", slack

    empty = load_settings(slack_signing_secret="", slack_bot_token=" ", teams_app_password="", teams_app_id="",
                          teams_tenant_id="", teams_service_url="", metrics_token="", slack_app_token="")
    assert not empty.slack_enabled and empty.sandbox_active
    assert [empty.slack_signing_secret, empty.slack_bot_token, empty.teams_app_password, empty.teams_app_id,
            empty.teams_tenant_id, empty.metrics_token, empty.slack_app_token] == [None] * 7
    assert empty.teams_service_url == "https://smba.trafficmanager.net/teams/"
    with pytest.raises(ConfigError, match="HERALD_TEAMS_SERVICE_URL must be an http"):
        load_settings(teams_service_url="smba.trafficmanager.net/teams/")


def test_socket_mode_with_add_to_slack_needs_no_signing_secret() -> None:
    """README (Behind a firewall): "set `HERALD_SLACK_APP_TOKEN` ... and create the app from
    `herald slack manifest --socket-mode` (add `--url` only if partners install it with "Add to
    Slack", for the OAuth redirect). ... only outbound https to slack.com is needed, and the
    signing secret is optional." With Socket Mode and "Add to Slack" configured as the Slack
    set-up section says (client id and secret, HERALD_SECRET_KEY, HERALD_PUBLIC_URL), every
    command stops with "HERALD_SLACK_SIGNING_SECRET is required when HERALD_SLACK_CLIENT_ID is set",
    although the OAuth routes (/slack/install, /slack/oauth_redirect) need no signing secret and
    bot.app adds them in Socket Mode too."""
    try:
        settings = load_settings(slack_app_token="xapp-1-A0HERALD-1-socketmode", slack_client_id="1111.2222",
                                 slack_client_secret="test-client-secret",
                                 secret_key="test-secret-key-0123456789-abcdefghijklmnop",
                                 public_url="https://herald.example.com", database_url="sqlite://herald.db")
    except ConfigError as exc:
        pytest.fail(f"Socket Mode + \"Add to Slack\" without a signing secret is refused: {exc}")
    assert settings.slack_enabled and settings.slack_oauth_enabled and not settings.slack_http_enabled
    with pytest.raises(ConfigError, match="HERALD_SLACK_SIGNING_SECRET .or HERALD_SLACK_APP_TOKEN"):
        load_settings(slack_client_id="1111.2222", slack_client_secret="test-client-secret",
                      secret_key="test-secret-key-0123456789-abcdefghijklmnop")  # no Slack transport at all


def test_a_variable_set_to_nothing_is_the_same_as_one_not_set(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """README (Configuration): "A variable set to nothing (`HERALD_SLACK_SIGNING_SECRET=`) is the
    same as one not set." Only the secrets, Teams ids and a few URLs keep that promise. An empty
    HERALD_DATABASE_URL, HERALD_PORT, HERALD_SANDBOX, HERALD_LOG_LEVEL, ... stops every command
    ("invalid configuration"); worse, an empty HERALD_CACHE_DIR / HERALD_KB_DIR / HERALD_TOPICS_FILE
    silently becomes the working directory ("."), and an empty HERALD_HOST / HERALD_METRICS_HOST
    the empty string instead of 0.0.0.0. Every setting, in the environment or in .env (a line of
    .env.example uncommented to fill in later, or compose's `${X:-}`), is now unset when empty."""
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("HERALD_")]:
        monkeypatch.delenv(key)
    unset = load_settings()
    wrong: dict[str, str] = {}
    for field in Settings.model_fields:
        monkeypatch.setenv(f"HERALD_{field.upper()}", "")
        try:
            value = getattr(load_settings(), field)
        except ConfigError as exc:
            wrong[f"HERALD_{field.upper()}="] = str(exc)
        else:
            if value != getattr(unset, field):
                wrong[f"HERALD_{field.upper()}="] = f"{value!r} instead of the default {getattr(unset, field)!r}"
        monkeypatch.delenv(f"HERALD_{field.upper()}")
    assert not wrong, "set to nothing, these are not the same as unset:\n" + "\n".join(
        f"  {k} -> {v}" for k, v in wrong.items())
    (tmp_path / ".env").write_text("".join(f"HERALD_{field.upper()}=\n" for field in Settings.model_fields))
    assert load_settings() == unset


def test_an_expiring_env_bot_token_is_refused_at_start_up() -> None:
    """With token rotation on, the "Bot User OAuth Token" shown in the app's settings is an
    expiring `xoxe.xoxb-...` token, valid 12 hours (docs.slack.dev/authentication/using-token-rotation).
    HERALD_SLACK_BOT_TOKEN took it, though Herald holds no refresh token for it: 12 hours later
    every send was refused `token_expired` and the single-workspace set-up was silently dead. Such
    a token (or a refresh token, `xoxe-...`) is refused, saying to connect through "Add to Slack"."""
    for token in ("xoxe.xoxb-1-MS0yLTEyMzQ1Njc4OTAtZXhwaXJpbmc", "xoxe-1-My0xLTEyMzQ1Njc4OTAtcmVmcmVzaA"):
        with pytest.raises(ConfigError, match="HERALD_SLACK_BOT_TOKEN .*expir.*Add to Slack"):
            load_settings(slack_signing_secret="s3cret-signing", slack_bot_token=token)
    assert load_settings(slack_signing_secret="s3cret-signing", slack_bot_token="xoxb-1-lasting").slack_bot_token


def test_a_report_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    """`herald report 1 | head` (its standard output closed) printed "herald: cannot reach the
    database ([Errno 32] Broken pipe)" and exited 2: `database_errors` took every OSError for the
    database's, and a script saw exit 2 and an operator went looking at a healthy database. Now it
    ends quietly, as cat, grep or git log do: nothing on standard error, exit code 1."""
    url = f"sqlite://{tmp_path / 'herald.db'}"
    header, *_ = SAMPLE_DIRECTORY.splitlines()
    rows = [f"p{i % 40},Partner {i % 40},gold,emea,de,security,large,distributor,cam@vendor.example,"
            f"member{i}@partner{i % 40}.example,Member Number {i},sales,Europe/Berlin,en,T0P,U{i:05d},,"
            for i in range(1500)]
    (tmp_path / "partners.csv").write_text("\n".join([header, *rows]) + "\n")
    for args in (("directory", "import", "partners.csv", "--quiet"),
                 ("staff", "add", "cam@vendor.example", "--role", "cam"),
                 ("send", "--topic", "operations", "--importance", "must-know", "--audience", "all",
                  "--title", "Recall", "--body", "Stop selling", "--yes", "--as", "cam@vendor.example")):
        done = herald(*args, cwd=tmp_path, HERALD_DATABASE_URL=url)
        assert done.returncode == 0, done
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "report", "1"], cwd=tmp_path,
                               env=herald_env(HERALD_DATABASE_URL=url), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()  # type: ignore[union-attr]  # like `| head -1`: read a line, then close
    process.stdout.close()  # type: ignore[union-attr]  # the report is far bigger than the pipe's buffer
    err = process.stderr.read()  # type: ignore[union-attr]
    process.wait(120)
    assert first.startswith("#"), first
    assert (process.returncode, err) == (1, "")
