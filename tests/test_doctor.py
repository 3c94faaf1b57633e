"""`herald doctor` run as an operator runs it (its own process), against the fake Slack API, a
fake Entra ID token service, and a running Herald for the public URL: everything well, then a
revoked token, a missing scope, a wrong Teams secret, a dead public URL and an altered audit
trail; a database that was never migrated; and an invalid configuration."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer

from bot.app import build_app
from bot.common.clock import ManualClock
from bot.common.secrets import TokenCipher
from bot.core.compliance.audit import audit_event, record
from bot.core.directory.workspaces import add_slack_workspace
from bot.core.onboarding.qa import default_directory
from config.settings import load_settings
from storage.models import AuditEvent, Staff, Workspace
from tests.fakes.entra import FakeEntraID
from tests.fakes.slack_api import DEFAULT_SCOPES, FakeSlackAPI

SECRET_KEY = "doctor-secret-key-0123456789-abcdefghijkl"
APP_ID, APP_PASSWORD = "00000000-1111-2222-3333-444444444444", "teams-app-password-value"


@dataclass
class Scene:
    db_url: str
    slack: FakeSlackAPI
    entra: FakeEntraID
    server: TestServer

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        env.update({
            "HERALD_DATABASE_URL": self.db_url, "HERALD_SECRET_KEY": SECRET_KEY,
            "HERALD_SLACK_SIGNING_SECRET": "doctor-signing-secret", "HERALD_SLACK_API_URL": self.slack.url,
            "HERALD_TEAMS_APP_ID": APP_ID, "HERALD_TEAMS_APP_PASSWORD": APP_PASSWORD,
            "HERALD_TEAMS_TENANT_ID": "tenant-doctor", "HERALD_TEAMS_AUTHORITY_URL": self.entra.url,
            "HERALD_PUBLIC_URL": str(self.server.make_url("")).rstrip("/"),
            "REQUESTS_CA_BUNDLE": self.entra.ca_file,  # MSAL (requests) trusts the fake's certificate
        })
        env.update(overrides)
        return env


async def doctor(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "doctor", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture
async def scene(db: str) -> AsyncIterator[Scene]:
    slack, entra = FakeSlackAPI(), FakeEntraID()
    await slack.start()
    await entra.start()
    entra.add_app(APP_ID, APP_PASSWORD)
    cipher, clock = TokenCipher(SECRET_KEY), ManualClock()
    for team, token in (("T0GOOD", "xoxb-good-token"), ("T0GONE", "xoxb-revoked-token"),
                        ("T0NARROW", "xoxb-narrow-token")):
        slack.add_workspace(team, token)
        await add_slack_workspace(team, token, name=team.title(), now=clock.now(), actor="test", cipher=cipher)
    settings = load_settings(database_url=db, slack_signing_secret="doctor-signing-secret", slack_api_url=slack.url)
    server = TestServer(build_app(settings, clock=clock, run_worker=False, manage_database=False), host="127.0.0.1")
    await server.start_server()
    try:
        yield Scene(db, slack, entra, server)
    finally:
        await server.close()
        await entra.stop()
        await slack.stop()


async def test_everything_well_exits_0(scene: Scene) -> None:
    await Workspace.filter(external_id__in=["T0GONE", "T0NARROW"]).delete()
    code, out, err = await doctor(scene.env(), "--json")
    assert code == 0, out + err
    report = json.loads(out)
    checks = _by_name(report)
    assert report["ok"] is True
    assert checks["slack T0GOOD (T0Good)"]["status"] == "ok"
    assert checks["teams"]["status"] == "ok" and "tenant-doctor" in checks["teams"]["detail"]
    assert checks["public url"]["status"] == "ok"
    assert checks["schema"]["status"] == "ok" and checks["database"]["status"] == "ok"
    assert checks["clock"]["status"] == "ok"
    assert {checks[n]["status"] for n in ("topics", "journeys", "knowledge base")} == {"ok"}
    assert checks["semantic index"] == {"name": "semantic index", "status": "ok", "fix": "",
                                        "detail": "vectors ready, shipped with the knowledge base"}
    assert scene.entra.token_requests[-1]["client_id"] == APP_ID

    code, out, _ = await doctor(scene.env())
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == len(report["checks"])  # one line per check
    assert all(line.split()[0] in ("ok", "warn", "skip") for line in lines)


async def test_a_token_with_exactly_the_scopes_herald_uses_passes(scene: Scene) -> None:
    """A workspace whose app holds every scope Herald's calls need and no more (an admin who
    trimmed the e-mail scope) was reported FAIL, "missing scopes: users:read, users:read.email",
    and `herald doctor` exited 1, though Herald never calls a method that needs them."""
    await Workspace.filter(external_id__in=["T0GONE", "T0NARROW"]).delete()
    scene.slack.set_scopes("xoxb-good-token", ("commands", "chat:write", "im:write", "im:history", "files:write"))
    code, out, err = await doctor(scene.env(), "--json")
    checks = _by_name(json.loads(out))
    assert checks["slack T0GOOD (T0Good)"]["status"] == "ok", checks["slack T0GOOD (T0Good)"]
    assert code == 0, out + err


async def test_failures_are_named_with_a_fix_and_exit_1(scene: Scene) -> None:
    scene.slack.revoke("xoxb-revoked-token")
    scene.slack.set_scopes("xoxb-narrow-token", tuple(s for s in DEFAULT_SCOPES if s != "im:history"))
    await record([audit_event("notice.created", now=ManualClock().now(), actor="test", notice_id=1)])
    await AuditEvent.filter(kind="notice.created").update(actor="someone else")  # tampering
    dead = _closed_port()
    env = scene.env(HERALD_TEAMS_APP_PASSWORD="an-expired-secret-value", HERALD_PUBLIC_URL=f"http://127.0.0.1:{dead}")
    code, out, err = await doctor(env, "--json")
    assert code == 1, out + err
    checks = _by_name(json.loads(out))
    assert checks["slack T0GOOD (T0Good)"]["status"] == "ok"
    gone = checks["slack T0GONE (T0Gone)"]
    assert gone["status"] == "fail" and "token_revoked" in gone["detail"] and "reconnect" in gone["fix"]
    narrow = checks["slack T0NARROW (T0Narrow)"]
    assert narrow["status"] == "fail" and narrow["detail"].endswith("missing scopes: im:history")
    assert "reinstall" in narrow["fix"]
    assert checks["teams"]["status"] == "fail" and "AADSTS7000215" in checks["teams"]["detail"]
    assert "restart" in checks["teams"]["fix"] and "wait" in checks["teams"]["fix"]
    assert checks["public url"]["status"] == "fail" and str(dead) in checks["public url"]["detail"]
    audit = checks["audit chain"]
    assert audit["status"] == "fail" and "altered" in audit["detail"]
    assert all(c["fix"] for c in checks.values() if c["status"] == "fail")
    assert APP_PASSWORD not in out and "an-expired-secret-value" not in out + err

    code, text, _ = await doctor(env)
    assert code == 1
    (line,) = [x for x in text.splitlines() if "T0NARROW" in x]
    assert line.startswith("FAIL") and "im:history" in line and "fix:" in line


async def test_values_still_under_a_previous_key_or_under_no_key_are_named(scene: Scene) -> None:
    """While HERALD_SECRET_KEY is rotated the old key is HERALD_SECRET_KEY_PREVIOUS: the tokens
    stored with it still work, and the doctor says to re-encrypt them before dropping that key;
    a token stored with a key that is neither is named, and how to get it back."""
    await Workspace.filter(external_id__in=["T0GONE", "T0NARROW"]).delete()
    new_key = "doctor-new-secret-key-0123456789-abcdefghij"
    rotating = scene.env(HERALD_SECRET_KEY=new_key, HERALD_SECRET_KEY_PREVIOUS=SECRET_KEY)
    code, out, err = await doctor(rotating, "--json")
    checks = _by_name(json.loads(out))
    assert checks["slack T0GOOD (T0Good)"]["status"] == "ok"  # read with the previous key
    assert checks["secret key"]["status"] == "warn" and "1 stored values are still encrypted" in checks["secret key"]["detail"]
    assert checks["secret key"]["fix"].startswith("run `herald secrets rotate`")
    assert code == 0, out + err
    code, text, _ = await doctor(rotating)
    (line,) = [x for x in text.splitlines() if x.split()[1:3] == ["secret", "key"]]
    assert line.startswith("warn") and "→ fix: run `herald secrets rotate`" in line

    await add_slack_workspace("T0LOST", "xoxb-lost-token", now=ManualClock().now(), actor="test",
                              cipher=TokenCipher("a-key-nobody-has-any-more-0123456789-abcdef"))
    code, out, err = await doctor(rotating, "--json")
    checks = _by_name(json.loads(out))
    lost = checks["secret key"]
    assert lost["status"] == "fail" and lost["detail"].endswith("with any configured key: workspace bot token T0LOST")
    assert "HERALD_SECRET_KEY_PREVIOUS" in lost["fix"] and "reconnect" in lost["fix"]
    assert checks["slack T0LOST"]["status"] == "fail" and "HERALD_SECRET_KEY_PREVIOUS" in checks["slack T0LOST"]["fix"]
    assert code == 1 and new_key not in out + err and SECRET_KEY not in out + err

    await Workspace.filter(external_id="T0LOST").delete()
    await Workspace.filter(external_id="T0GOOD").update(
        bot_token=TokenCipher(new_key).seal("xoxb-good-token"))  # as `herald secrets rotate` leaves it
    code, out, err = await doctor(rotating, "--json")
    done = _by_name(json.loads(out))["secret key"]
    assert done["status"] == "ok" and done["detail"].startswith("every stored value is under HERALD_SECRET_KEY")
    assert code == 0, out + err


async def test_a_database_never_migrated_is_reported(tmp_path) -> None:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env["HERALD_DATABASE_URL"] = f"sqlite://{tmp_path / 'fresh.db'}"
    code, out, _ = await doctor(env, "--json")  # no file at all: said so, and none created
    checks = _by_name(json.loads(out))
    assert code == 1 and checks["database"]["status"] == "fail" and "does not exist" in checks["database"]["detail"]
    assert not (tmp_path / "fresh.db").exists()
    sqlite3.connect(tmp_path / "fresh.db").close()  # an empty database
    code, out, _ = await doctor(env, "--json")
    checks = _by_name(json.loads(out))
    assert code == 1 and checks["database"]["status"] == "ok"
    assert checks["schema"]["status"] == "fail" and "0001_initial" in checks["schema"]["detail"]
    assert checks["schema"]["fix"].startswith("run `herald db upgrade`")
    assert checks["audit chain"]["status"] == "skip"
    code, out, _ = await doctor(env, "--json")  # the check migrated nothing
    assert _by_name(json.loads(out))["schema"]["status"] == "fail"


async def test_an_unreachable_database_and_a_bad_configuration() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    code, out, _ = await doctor({**env, "HERALD_DATABASE_URL": f"postgres://herald@127.0.0.1:{_closed_port()}/herald"},
                                "--json")
    checks = _by_name(json.loads(out))
    assert code == 1 and checks["database"]["status"] == "fail" and checks["clock"]["status"] == "skip"
    code, out, err = await doctor({**env, "HERALD_DATABASE_URL": "mysql://x/y"})
    assert code == 1 and "Traceback" not in out + err
    (line,) = out.strip().splitlines()
    assert line.startswith("FAIL") and "configuration" in line and "sqlite://" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_semantic_index_check_says_whether_the_next_start_builds_vectors(scene: Scene, tmp_path) -> None:  # noqa: ANN001
    """A knowledge base of one's own has no vectors until a start (or `herald qa build-index`)
    builds them; until then the assistant answers by keyword search."""
    own = tmp_path / "kb"
    own.mkdir()
    for path in default_directory().glob("*.yaml"):
        shutil.copy(path, own)
    code, out, err = await doctor(scene.env(HERALD_KB_DIR=str(own), HERALD_CACHE_DIR=str(tmp_path / "cache")), "--json")
    check = _by_name(json.loads(out))["semantic index"]
    assert check["status"] == "warn" and "not built yet" in check["detail"], out + err
    assert "herald qa build-index" in check["fix"]
    code, out, err = await doctor(scene.env(HERALD_KB_SEMANTIC="false"), "--json")
    assert _by_name(json.loads(out))["semantic index"]["status"] == "skip", out + err


def test_the_topics_check_names_titles_slacks_menus_shorten_and_refuses_too_many_topics(tmp_path) -> None:  # noqa: ANN001
    """Slack shows at most 75 characters of a topic in a menu (the title is shortened, with an
    ellipsis), and a menu holds at most 100 groups of 100 topics: the operator hears of the first
    and the catalog refuses the second, instead of Slack refusing the compose modal."""
    from bot.ops.doctor import check_files

    def topics_check(titles: list[str]) -> tuple[str, str]:
        path = tmp_path / f"topics-{len(titles)}.yaml"  # load_catalog keeps what it read of a path
        path.write_text(json.dumps({"roles": ["sales"], "topics": {f"t{i}": {"title": t} for i, t in enumerate(titles)}}))
        (check,) = [c for c in check_files(load_settings(topics_file=path)) if c.name == "topics"]
        return check.status, check.detail

    status, detail = topics_check(["Announcements", "x" * 76])
    assert status == "ok" and detail.endswith("Slack's menus shorten 1 title(s) over 75 characters (t1)")
    status, detail = topics_check(["Announcements"])
    assert status == "ok" and "shorten" not in detail
    status, detail = topics_check([f"Line {i}" for i in range(10_001)])
    assert status == "fail" and "10,001 topics; at most 10,000" in detail


async def test_the_teams_line_fails_while_the_bot_connector_refuses_herald(db: str, entra: FakeEntraID) -> None:
    """README (Herald's credentials refused): when the Bot Connector answers 401 again with a fresh
    token, the Teams lanes pause and `herald doctor` fails its teams line. It only asked Entra ID for
    a token, which works, and said `ok teams` while no Teams copy had gone out for half an hour. It
    now also reads the refusal (the audit event, the waiting rows), without writing; once the
    connector accepts Herald again and the copies go out, the line passes."""
    from storage.models import Delivery
    from tests.teams_support import teams_credentials_refused

    async with teams_credentials_refused(db, entra, app_id=APP_ID, secret=APP_PASSWORD, connector_refuses=True,
                                         rounds=6) as (rig, notice_id):
        waiting = await Delivery.filter(notice_id=notice_id, platform="teams")
        assert waiting and all(c.status == "pending" and "HTTP 401" in c.error for c in waiting)
        events = await AuditEvent.all().count()

        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        env.update(HERALD_DATABASE_URL=db, HERALD_TEAMS_APP_ID=APP_ID, HERALD_TEAMS_APP_PASSWORD=APP_PASSWORD,
                   HERALD_TEAMS_TENANT_ID="tenant-herald", HERALD_TEAMS_AUTHORITY_URL=entra.url,
                   HERALD_TEAMS_SERVICE_URL=rig.connector.url, HERALD_KB_SEMANTIC="false",
                   REQUESTS_CA_BUNDLE=entra.ca_file)
        code, out, err = await doctor(env, "--json")
        teams = _by_name(json.loads(out))["teams"]
        assert teams["status"] == "fail", f"doctor says teams {teams['status']}: {teams['detail']!r} (exit {code})"
        assert code == 1, out + err
        assert "HTTP 401" in teams["detail"] and f"{len(waiting)} copies and messages wait" in teams["detail"]
        assert "Azure Bot" in teams["fix"] and "restart" in teams["fix"]
        assert await AuditEvent.all().count() == events  # the doctor wrote nothing

        rig.connector.expect_token(None)  # fixed on Microsoft's side: the next re-check sends them
        rig.clock.advance(minutes=5)
        await rig.herald.outbox.drain()
        assert not await Delivery.filter(notice_id=notice_id, platform="teams", status="pending").exists()
        code, out, err = await doctor(env, "--json")
        assert _by_name(json.loads(out))["teams"]["status"] == "ok", out + err


async def test_api_tokens_expiring_within_two_weeks_are_named(db: str) -> None:
    """API tokens expire now (365 days by default): the doctor names those in use that expire
    within 14 days, so the tool holding one gets a new one before it meets 401. Revoked tokens,
    those of people removed and those already expired are not named."""
    from bot.core.compliance.api_tokens import create_token, revoke_token
    from bot.core.directory.staff import add_staff
    from bot.ops.doctor import check_api_tokens

    clock = ManualClock()
    now = clock.now()
    for email in ("audit@vendor.example", "leaver@vendor.example"):
        await add_staff(email, "compliance", now=now, actor="test")
    assert (await check_api_tokens(clock)).status == "ok"
    soon, _ = await create_token("audit@vendor.example", name="GRC export", now=now, expires_at=now + timedelta(days=10))
    await create_token("audit@vendor.example", now=now)  # the default: a year
    await create_token("audit@vendor.example", now=now, expires_at=None)
    revoked, _ = await create_token("audit@vendor.example", now=now, expires_at=now + timedelta(days=3))
    await revoke_token(revoked.id, now=now)
    await create_token("leaver@vendor.example", now=now, expires_at=now + timedelta(days=3))
    await Staff.filter(email="leaver@vendor.example").update(active=False)
    await create_token("audit@vendor.example", now=now, expires_at=now + timedelta(hours=1))

    check = await check_api_tokens(clock)
    assert check.status == "warn" and check.detail.startswith("2 token(s) expire within 14 days: ")
    assert f"{soon.id} of audit@vendor.example ('GRC export') on " in check.detail
    assert "leaver" not in check.detail and f"{revoked.id} of" not in check.detail
    assert "herald token create" in check.fix
    clock.set(now + timedelta(days=11))  # one expired, the other too: nothing left to warn of
    assert (await check_api_tokens(clock)).status == "ok"
