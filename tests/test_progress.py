"""Progress of long commands: plain lines when standard error is not a terminal (CliRunner), a rich
bar on a (forced) terminal, nothing with --json; `herald status ID --follow` until delivery is done."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

import bot.cli.notices as notices_cli
from bot.cli import main
from storage.models import Delivery
from tests.support import DIRECTORY_HEADER, SAMPLE_DIRECTORY
from tests.cli_support import in_process_cli

ROWS = 20_000  # progress behaves the same for 100,000 (the README shows such a run); this keeps CI quick


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for key in ("TTY_COMPATIBLE", "FORCE_COLOR", "TTY_INTERACTIVE"):
        monkeypatch.delenv(key, raising=False)
    return in_process_cli(monkeypatch, db_url)


def _big_directory(path, rows: int = ROWS) -> None:  # noqa: ANN001
    lines = [DIRECTORY_HEADER]
    for i in range(rows):
        org = f"org{i // 25}"
        lines.append(f"{org},Org {i // 25},gold,emea,de,security,large,distributor,cam@vendor.example,"
                     f"m{i}@{org}.example,Member {i},sales,Europe/Berlin,en,T0BIG,U{i:07d},,")
    path.write_text("\n".join(lines) + "\n")


def test_import_prints_plain_progress_lines_when_not_a_terminal(cli: CliRunner, tmp_path) -> None:  # noqa: ANN001
    csv = tmp_path / "big.csv"
    _big_directory(csv)
    assert cli.invoke(main, ["staff", "add", "cam@vendor.example", "--role", "cam"]).exit_code == 0  # else a note
    result = cli.invoke(main, ["directory", "import", str(csv)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"created {ROWS}, updated 0, unchanged 0, deactivated 0, rejected 0"
    lines = result.stderr.strip().splitlines()
    checking = [line for line in lines if line.startswith("import: checking rows")]
    writing = [line for line in lines if line.startswith("import: writing")]
    assert checking[-1] == f"import: checking rows {ROWS}/{ROWS} (100%)"
    assert len(checking) == 11 and len(writing) == 11  # 0 %, every tenth, and done: not a line per row
    assert writing[-1].endswith("(100%)")
    percents = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in writing]
    assert percents == sorted(percents) and "\x1b[" not in result.stderr  # no terminal control codes

    quiet = cli.invoke(main, ["directory", "import", str(csv), "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_terminal_gets_a_progress_bar(cli: CliRunner, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat standard error as a terminal
    csv = tmp_path / "partners.csv"
    _big_directory(csv, 3000)
    result = cli.invoke(main, ["directory", "import", str(csv)])
    assert result.exit_code == 0, result.output
    assert "━" in result.stderr and "3000/3000" in result.stderr and "100%" in result.stderr
    assert "import: checking rows 1000/" not in result.stderr  # the bar, not the plain lines
    assert result.stdout.startswith("created 3000")


def test_audit_verify_shows_progress_but_not_with_json(cli: CliRunner, tmp_path) -> None:  # noqa: ANN001
    csv = tmp_path / "partners.csv"
    csv.write_text(SAMPLE_DIRECTORY)
    for _ in range(3):
        cli.invoke(main, ["staff", "add", "cam@vendor.example", "--role", "cam"])
    assert cli.invoke(main, ["directory", "import", str(csv)]).exit_code == 0
    plain = cli.invoke(main, ["audit", "verify"])
    assert plain.exit_code == 0 and plain.stdout.startswith("audit trail intact: 4 events")
    assert "audit trail: verifying 4/4 (100%)" in plain.stderr
    as_json = cli.invoke(main, ["audit", "verify", "--json"])
    assert as_json.exit_code == 0 and as_json.stderr == ""
    assert json.loads(as_json.stdout)["ok"] is True


def _send(cli: CliRunner, tmp_path) -> int:  # noqa: ANN001
    csv = tmp_path / "partners.csv"
    csv.write_text(SAMPLE_DIRECTORY)
    assert cli.invoke(main, ["directory", "import", str(csv)]).exit_code == 0
    cli.invoke(main, ["slack", "add-workspace", "T0PARTNER", "--token", "xoxb-abc"])
    cli.invoke(main, ["staff", "add", "cam@vendor.example", "--role", "cam"])
    sent = cli.invoke(main, ["send", "--topic", "operations", "--importance", "must-know", "--audience", "all",
                             "--title", "Recall", "--body", "Stop", "--yes", "--as", "cam@vendor.example"])
    assert sent.exit_code == 0, sent.output
    return int(sent.stdout.split()[1])


def test_report_to_a_file_shows_progress_and_to_stdout_does_not(cli: CliRunner, tmp_path) -> None:  # noqa: ANN001
    notice_id = _send(cli, tmp_path)
    out = tmp_path / "report.csv"
    to_file = cli.invoke(main, ["report", str(notice_id), "--output", str(out)])
    assert to_file.exit_code == 0, to_file.output
    assert f"report of notice {notice_id}: rows 5/5 (100%)" in to_file.stderr
    to_stdout = cli.invoke(main, ["report", str(notice_id)])
    assert to_stdout.exit_code == 0 and "rows 5/5" not in to_stdout.output
    produced = re.compile(r"^# (produced_at|audit_chain_head).*$", re.M)  # each export is its own event
    assert produced.sub("", to_stdout.stdout) == produced.sub("", out.read_text())  # untouched by progress


def test_status_follow_shows_counts_until_delivery_completes(cli: CliRunner, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    notice_id = _send(cli, tmp_path)
    looks: list[float] = []

    async def deliveries_happen(seconds: float) -> None:
        """Between two looks the outbox (another process in real life) settles two deliveries."""
        looks.append(seconds)
        ids = await Delivery.filter(notice_id=notice_id, status="pending").order_by("id").limit(2).values_list(
            "id", flat=True)
        await Delivery.filter(id__in=list(ids)).update(status="delivered")
        if not await Delivery.filter(notice_id=notice_id, status="pending").exists():
            from storage.models import Notice

            await Notice.filter(id=notice_id).update(status="sent")

    monkeypatch.setattr(notices_cli, "follow_sleep", deliveries_happen)
    result = cli.invoke(main, ["status", str(notice_id), "--follow", "--interval", "0.5"])
    assert result.exit_code == 0, result.output
    assert looks == [0.5, 0.5]  # 4 to send (Ed has no chat account: failed at once), two per pause
    settled = [line for line in result.stderr.splitlines() if "settled" in line]
    assert settled[0] == f"notice {notice_id}: settled 1/5 (20%)" and settled[-1] == f"notice {notice_id}: settled 5/5 (100%)"
    assert any("acknowledged 0/" in line for line in result.stderr.splitlines())
    assert "delivered 4  failed 1  pending 0" in result.stdout

    as_json = cli.invoke(main, ["status", str(notice_id), "--follow", "--json"])
    assert as_json.exit_code == 0 and as_json.stderr == ""
    assert json.loads(as_json.stdout)["delivered"] == 4
