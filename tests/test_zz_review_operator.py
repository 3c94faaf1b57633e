"""Review (operator's experience): configuration, the CLI, upgrades.

Each test states the defect it shows; each fails on the code it was written against and passes once
that defect is fixed."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tortoise import Tortoise, connections
from tortoise.migrations.api import migrate

from storage import db as storage_db
from tests.conftest import BACKENDS, POSTGRES_URL, _admin_execute, _with_database
from tests.support import SAMPLE_DIRECTORY

ROOT = Path(__file__).resolve().parent.parent


# ---- helpers -----------------------------------------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return {**clean, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "HERALD_KB_SEMANTIC": "false",
            "HERALD_SANDBOX": "off", **extra}


def _herald(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """`herald ARGS` as an operator runs it; a command that does not exit within `timeout` fails the test."""
    try:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True,
                              env=_env(**env), timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"`herald {' '.join(args)}` did not exit within {timeout:.0f} s; it printed:\n{err[-1500:]}")


def _serve(cwd: Path, **env: str) -> tuple[int | None, str]:
    """Start `herald serve --port 0`; return (its exit code, everything it printed) once it exits,
    or (None, output) as soon as it says it is listening (then it is stopped): no fixed wait."""
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", "0"], cwd=cwd, env=_env(**env),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120  # a guard only: either outcome normally comes within seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                return process.wait(30), "".join(seen)
            seen.append(line)
            if "Running on" in line:
                return None, "".join(seen)
        return None, "".join(seen) + "\n[still running, printing nothing, after 120 s]"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


@pytest.fixture(params=BACKENDS)
async def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no tables at all (not connected)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'herald.db'}"
        return
    name = "herald_review_op_" + uuid.uuid4().hex[:12]
    await _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        await storage_db.close()
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate_to(url: str, revision: str, *statements: str) -> None:
    """The database as an earlier Herald left it: migrated up to `revision`, with `statements` run on it."""
    await migrate(config=storage_db.tortoise_config(url), target=f"models.{revision}")
    for statement in statements:
        await connections.get("default").execute_query(statement)
    await Tortoise.close_connections()


# ---- upgrades ----------------------------------------------------------------------------------

# ---- configuration: `serve` and `doctor` agree ---------------------------------------------------

# ---- the CLI -----------------------------------------------------------------------------------

def test_a_report_piped_into_head_is_not_reported_as_an_unreachable_database(tmp_path: Path) -> None:
    """`herald report 1 | head` (a closed pipe) prints "herald: cannot reach the database ([Errno 32]
    Broken pipe)" and exits 2: `database_errors` takes every OSError for the database's. A script
    sees exit 2 and an operator goes looking at a healthy database. A closed pipe should end the
    command quietly (as `cat`, `grep` or `git log` do)."""
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
        done = _herald(*args, cwd=tmp_path, HERALD_DATABASE_URL=url)
        assert done.returncode == 0, done
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "report", "1"], cwd=tmp_path,
                               env=_env(HERALD_DATABASE_URL=url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    first = process.stdout.readline()  # type: ignore[union-attr]  # like `| head -1`: read a line, then close
    process.stdout.close()  # type: ignore[union-attr]  # the report is far bigger than the pipe's buffer
    err = process.stderr.read()  # type: ignore[union-attr]
    process.wait(120)
    assert first.startswith("#"), first
    assert "cannot reach the database" not in err and "Traceback" not in err, err
    assert process.returncode != 2, (process.returncode, err)
