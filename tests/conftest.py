"""Shared fixtures: a fresh database per test, on SQLite and (when configured) PostgreSQL.

Set HERALD_TEST_POSTGRES_URL=postgres://user@host:port/postgres to run every `db` test on
PostgreSQL as well; `.ci/run` starts a throwaway cluster and sets it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from storage import db as storage_db

POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL", "")
# Services that tests start keep their vector cache here, not in the working directory.
os.environ["HERALD_CACHE_DIR"] = _CACHE_DIR = tempfile.mkdtemp(prefix="herald-test-cache-")
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
# for a test of a PostgreSQL feature: @pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
POSTGRES_ONLY = [backend for backend in BACKENDS if backend == "postgres"]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _admin_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# Migrating a database takes seconds (every migration, every table); a test's database is a
# copy of one migrated once per session instead (a file copy on SQLite, CREATE DATABASE ...
# TEMPLATE on PostgreSQL). The migrations themselves still run, once, at the start.
_TEMPLATE_DIR = tempfile.mkdtemp(prefix="herald-test-template-")
atexit.register(shutil.rmtree, _TEMPLATE_DIR, ignore_errors=True)
_templates: dict[str, str] = {}


async def _sqlite_template() -> Path:
    path = Path(_TEMPLATE_DIR) / "herald.db"
    if "sqlite" not in _templates:
        await storage_db.upgrade(f"sqlite://{path}")  # closes its connections: the file is complete
        _templates["sqlite"] = str(path)
    return path


async def _postgres_template() -> str:
    if "postgres" not in _templates:
        name = "herald_template_" + uuid.uuid4().hex[:12]
        await _admin_execute(f'CREATE DATABASE "{name}"')
        atexit.register(_drop_postgres_database, name)
        await storage_db.upgrade(_with_database(POSTGRES_URL, name))  # and disconnects (TEMPLATE needs that)
        _templates["postgres"] = name
    return _templates["postgres"]


def _drop_postgres_database(name: str) -> None:
    import asyncio

    try:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception:  # noqa: BLE001 - a throwaway cluster: the database goes with it
        pass


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """A migrated, empty database URL (not connected)."""
    if request.param == "sqlite":
        path = tmp_path / "herald.db"
        shutil.copyfile(await _sqlite_template(), path)
        yield f"sqlite://{path}"
        return
    name = "herald_test_" + uuid.uuid4().hex[:12]
    await _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{await _postgres_template()}"')
    url = _with_database(POSTGRES_URL, name)
    try:
        yield url
    finally:
        await storage_db.close()
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[str]:
    """A connected, migrated, empty database; yields its URL."""
    await storage_db.connect(db_url, run_migrations=False)
    try:
        yield db_url
    finally:
        await storage_db.close()


@pytest.fixture
async def rig(db: str):
    """The Herald service (no HTTP server) with a seeded directory and a fake Slack API."""
    from tests.support import start_rig, stop_rig

    harness = await start_rig(db)
    try:
        yield harness
    finally:
        await stop_rig(harness)


@pytest.fixture(params=["http", "socket"])
async def slack(db: str, request: pytest.FixtureRequest):
    """The real app on a local port with a seeded directory and a fake Slack API; Slack's requests
    arrive signed over HTTP, or as envelopes over Socket Mode (every scenario runs both ways)."""
    from tests.support import seeded_slack

    async with seeded_slack(db, transport=request.param) as harness:
        yield harness


@pytest.fixture
async def slack_http(db: str):
    """The Slack harness over HTTP only (signed requests), with a seeded directory."""
    from tests.support import seeded_slack

    async with seeded_slack(db) as harness:
        yield harness


@pytest.fixture
async def teams(db: str):
    """The real app on a local port with a fake Bot Connector and a seeded directory (tests.teams_support)."""
    from tests.teams_support import start_teams_rig, stop_teams_rig

    rig = await start_teams_rig(db)
    try:
        yield rig
    finally:
        await stop_teams_rig(rig)


@pytest.fixture
def bot_framework_keys(monkeypatch: pytest.MonkeyPatch):
    """The Bot Framework's key set served from memory, one key endorsed for `msteams`; its
    `token()` signs inbound Teams tokens the SDK accepts (tests.fakes.bot_framework_keys)."""
    from tests.fakes.bot_framework_keys import LocalBotFrameworkKeys

    keys = LocalBotFrameworkKeys()
    keys.serve_locally(monkeypatch)
    return keys


@pytest.fixture
async def srig(db: str):
    """The Herald service with a directory big enough for surveys and A/B tests (tests.survey_support)."""
    from tests.survey_support import start_survey_rig, stop_survey_rig

    rig = await start_survey_rig(db)
    try:
        yield rig
    finally:
        await stop_survey_rig(rig)


@pytest.fixture(scope="session")
def warm_knowledge_base():
    """The sample knowledge base, built once per test session.

    Its vectors ship with it (``config/kb/vectors``; otherwise building it embeds some 1,500 texts,
    about 30 s of CPU). It is loaded through the service's own path (``index.load_semantic``), so every service a test starts
    with the sample knowledge base finds it already loaded and answers semantically from its first
    question.
    """
    from bot.core.onboarding import index
    from bot.core.onboarding.qa import default_directory

    directory, store = default_directory(), Path(_CACHE_DIR) / "vectors"
    return index.load_semantic(directory, index.ready_store(directory, store) or store)  # shipped: config/kb/vectors


@pytest.fixture
async def console(db: str):
    """The real app in sandbox mode: sample directory and notice, the sandbox platform, a clock."""
    from tests.console_support import start_console, stop_console

    harness = await start_console(db)
    try:
        yield harness
    finally:
        await stop_console(harness)


@pytest.fixture
async def entra(monkeypatch: pytest.MonkeyPatch):
    """A fake Entra ID token service over HTTPS, trusted by MSAL for the test."""
    from tests.fakes.entra import FakeEntraID

    fake = FakeEntraID()
    await fake.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_file)  # MSAL trusts the fake's certificate
    try:
        yield fake
    finally:
        await fake.stop()
