"""bench/acks.py: its helpers, and a short real run (PostgreSQL only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.acks import members_programme, percentile, profile_summary, slack_click, update_ideal_seconds
from tests.fakes.slack_signing import sign

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL", "")


def test_members_split_over_platforms_and_workspaces() -> None:
    tenants = members_programme(101, 4)
    assert sum(t.size for t in tenants if t.platform == "slack") == 51
    assert sum(t.size for t in tenants if t.platform == "teams") == 50
    assert len({t.external_id for t in tenants}) == 8


def test_update_ideal_follows_the_documented_update_limits() -> None:
    slack = [("slack", "T0000BENCH", f"U{n}") for n in range(110)]
    teams = [("teams", "tenant-0000", f"aad-{n}") for n in range(150)]
    # chat.update: Tier 3, 50 a minute after a full bucket of 50; Teams: 50 a second after 50
    assert update_ideal_seconds(slack + teams, rate=1000.0) == {"slack": 72.0, "teams": 2.0}
    # clicks arriving slowly: the last click bounds it
    assert update_ideal_seconds(teams, rate=1.0) == {"slack": 0.0, "teams": 149.0}


def test_profile_summary_reads_collapsed_stacks(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text("main;handle;sign 30\nmain;handle;query 60\nmain;idle 10\n")
    summary = profile_summary(raw, top=2)
    assert summary["samples"] == 100
    assert summary["own"] == [{"frame": "query", "percent": 60.0}, {"frame": "sign", "percent": 30.0}]
    assert summary["inclusive"][0] == {"frame": "main", "percent": 100.0}


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile([], 50) is None


def test_slack_clicks_are_signed_as_slack_signs_them() -> None:
    body, headers = slack_click(7, "T0000BENCH", "U0000N000001", 1, {"channel": "DU0000N000001", "ts": "1.000001"},
                                "http://127.0.0.1:9/")
    assert headers["X-Slack-Signature"] == sign("bench-signing-secret", body, headers["X-Slack-Request-Timestamp"])
    assert "herald_ack" in body


@pytest.mark.skipif(not POSTGRES_URL, reason="bench/acks.py runs on PostgreSQL (HERALD_TEST_POSTGRES_URL)")
def test_short_run_records_every_click_once() -> None:
    out = subprocess.run(
        [sys.executable, "bench/acks.py", "--rate", "20", "--seconds", "2", "--members", "30", "--duplicates", "0.2",
         "--workspaces", "2", "--settle", "30", "--database-url", POSTGRES_URL],
        cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert out.stdout, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["clicks"] == 36 and result["duplicate_clicks"] == 6
    assert all(set(s) == {"200"} for s in result["statuses"].values()), result["statuses"]
    assert sum(sum(s.values()) for s in result["statuses"].values()) == 36
    assert result["recorded"]["acknowledgements"] == 30 and result["recorded"]["audit_events"] == 30
    assert result["exactly_once"] is True and result["verified"] is True and out.returncode == 0
    assert result["latency"]["all"]["count"] == 36 and result["p99_ms"] > 0
    assert set(result["updates"]) >= {"pending_after_settle", "slack", "teams"}
