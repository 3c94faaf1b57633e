"""bench/ack_groups.py: a short real run on SQLite, and on PostgreSQL when the tests have one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL", "")


@pytest.mark.parametrize("database", [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.skipif(not POSTGRES_URL, reason="HERALD_TEST_POSTGRES_URL is not set")),
])
def test_a_short_run_records_every_click_once(database: str) -> None:
    argv = [sys.executable, "bench/ack_groups.py", "--sizes", "60", "120", "--groups", "3", "--group-size", "4"]
    if database == "postgres":
        argv += ["--database-url", POSTGRES_URL]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["verified"] and result["analyzed"]
    assert [(r["recipients"], r["recorded"], r["copies_flagged_for_update"]) for r in result["runs"]] == [
        (60, 12, 12), (120, 12, 12)]
    assert all(r["group_ms_p50"] > 0 and r["cpu_ms_per_click"] > 0 for r in result["runs"])
