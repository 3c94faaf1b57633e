"""Review (area: scripts): Herald driven by other tools — the `herald` command line in cron jobs
and pipelines, and the /api/v1 reports API. Each test demonstrates a defect and passes once it is
fixed."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from bot.app import build_app
from bot.cli import main
from bot.common.clock import ManualClock
from bot.core.compliance.api_tokens import create_token
from bot.core.directory.importer import import_directory
from config.settings import load_settings
from tests.cli_support import herald
from tests.conftest import POSTGRES_ONLY
from tests.support import SAMPLE_DIRECTORY, directory_csv, in_database
from tests.test_reports import NOW, seed_reports

AS_CAM = "cam@vendor.example"
RECALL = ["send", "--topic", "operations", "--importance", "must-know", "--audience", "tier:gold",
          "--title", "Recall of LX-200", "--body", "Stop selling LX-200 today.", "--deadline", "2099-01-01",
          "--yes", "--as", AS_CAM]


@pytest.fixture
def cli_env(db_url: str, tmp_path, monkeypatch) -> CliRunner:  # noqa: ANN001
    """The CLI on a migrated database with the sample directory, a CAM and a Slack workspace."""
    for key in [k for k in os.environ if k.startswith("HERALD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HERALD_DATABASE_URL", db_url)
    monkeypatch.setenv("HERALD_SANDBOX", "off")
    monkeypatch.setenv("HERALD_KB_SEMANTIC", "false")
    runner = CliRunner()
    partners = tmp_path / "partners.csv"
    partners.write_text(SAMPLE_DIRECTORY)
    for args in (["directory", "import", str(partners), "--quiet"],
                 ["staff", "add", AS_CAM, "--role", "cam", "--slack-user", "UCAM1", "--slack-team", "T0PARTNER"],
                 ["slack", "add-workspace", "T0PARTNER", "--token", "xoxb-abc"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    return runner


def _notices(db_url: str) -> list[tuple[int, str, int]]:
    from storage.models import Delivery, Notice

    async def work() -> list[tuple[int, str, int]]:
        rows = []
        for n in await Notice.all().order_by("id"):
            rows.append((n.id, n.status, await Delivery.filter(notice_id=n.id, kind="notice").count()))
        return rows
    return in_database(db_url, work)
