"""bench/scale.py: the partner programme it builds, its ideal schedule, and a small real run
(PostgreSQL only: the benchmark is a PostgreSQL one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale import Tenant, ideal_seconds, parse_args, programme, slack_limits, teams_limits, tenant_sizes

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL", "")


def test_sizes_are_skewed_like_a_partner_programme() -> None:
    import random

    sizes = tenant_sizes(100_000, 100, random.Random(12))
    assert sum(sizes) == 100_000 and len(sizes) == 100
    assert 2 <= sum(s > 5000 for s in sizes) <= 6  # a few above 5,000
    assert sum(s < 200 for s in sizes) >= 70  # most below 200
    assert sizes == sorted(sizes, reverse=True)


def test_programme_is_reproducible_and_splits_the_platforms() -> None:
    first, again = programme(10_000, 20, seed=3), programme(10_000, 20, seed=3)
    assert [(t.platform, t.index, t.size) for t in first] == [(t.platform, t.index, t.size) for t in again]
    assert sum(t.platform == "slack" for t in first) == sum(t.platform == "teams" for t in first) == 10
    assert programme(10_000, 20, seed=4) != first
    assert len({t.external_id for t in first}) == 20


def test_ideal_follows_the_fakes_limits() -> None:
    args = parse_args(["--time-scale", "10", "--slack-workspace-rate", "600"])
    slack, teams = slack_limits(args), teams_limits(args)
    # Slack: 600 a minute x 10 = 100 a second after a full bucket of 600
    assert ideal_seconds(Tenant(0, "slack", 2600), slack, teams) == pytest.approx(20.0)
    assert ideal_seconds(Tenant(0, "slack", 500), slack, teams) == 0.0
    # Teams: two requests a member, 50 a second x 10 after a burst of 50
    assert ideal_seconds(Tenant(0, "teams", 1025), slack, teams) == pytest.approx(4.0)


@pytest.mark.skipif(not POSTGRES_URL, reason="bench/scale.py runs on PostgreSQL (HERALD_TEST_POSTGRES_URL)")
def test_small_run_reaches_everyone_once() -> None:
    out = subprocess.run(
        [sys.executable, "bench/scale.py", "--replicas", "1", "--recipients", "240", "--tenants", "4",
         "--time-scale", "50", "--timeout", "60", "--database-url", POSTGRES_URL],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout, out.stderr[-2000:]
    result = json.loads(out.stdout)
    (run,) = result["runs"]
    assert run["replicas"] == 1 and run["recipients"] == 240 and run["tenants"]["total"] == 4
    assert run["missing"] == 0 and run["duplicated"] == 0 and run["unexpected"] == 0, run.get("problems")
    assert run["deliveries_by_status"] == {"delivered": 240}
    assert run["verified"] is True and out.returncode == 0
    for key in ("completion_seconds", "ideal_seconds", "ratio", "cpu_seconds_per_1000", "peak_rss_mb",
                "throttled", "small_tenants"):
        assert key in run
    assert set(run["throttled"]) == {"slack", "teams"}
    assert len(run["peak_rss_mb"]) == 1 and run["peak_rss_mb"][0] > 0
    assert run["completion_seconds"] > 0 and run["cpu_seconds_per_1000"] > 0
