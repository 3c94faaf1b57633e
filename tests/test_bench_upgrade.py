"""bench/upgrade.py: a short real run (PostgreSQL only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL", "")


@pytest.mark.skipif(not POSTGRES_URL, reason="bench/upgrade.py runs on PostgreSQL (HERALD_TEST_POSTGRES_URL)")
def test_short_run_upgrades_while_an_old_replica_writes() -> None:
    out = subprocess.run([sys.executable, "bench/upgrade.py", "--events", "2000", "--runs", "1",
                          "--database-url", POSTGRES_URL], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout, out.stderr[-2000:]
    (run,) = json.loads(out.stdout)["runs"]
    assert run["exit_code"] == 0 and run["writes"] >= 1
    assert run["write_max_ms"] >= run["write_p99_ms"] > 0


def test_it_refuses_sqlite() -> None:
    out = subprocess.run([sys.executable, "bench/upgrade.py", "--database-url", "sqlite:///tmp/x.db"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "PostgreSQL only" in out.stderr
