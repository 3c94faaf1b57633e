"""Console sign-in: single-use links valid for 10 minutes, 8-hour sessions, roles as in chat, the
chat and CLI entry points (`/herald console`, `console` in Teams, `herald console-link`)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.cli import main
from bot.common.clock import ManualClock
from bot.common.errors import PermissionDenied, UserError
from bot.core.commands.parser import ConsoleCommand, parse_command
from bot.core.commands.runner import StaffCommands
from bot.core.directory.console_access import (
    LINK_PREFIX,
    SignInRefused,
    digest,
    end_session,
    issue_link,
    issue_link_for_email,
    redeem_link,
    session_staff,
)
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.topics import load_catalog
from config.settings import load_settings
from storage.models import AuditEvent, ConsoleSession, ConsoleSignIn, Staff
from tests.support import CAM_USER, SAMPLE_DIRECTORY
from tests.cli_support import in_process_cli

pytestmark = pytest.mark.storage


async def _staff(clock: ManualClock, email: str = "cam@vendor.example", role: str = "cam") -> Staff:
    staff, _ = await add_staff(email, role, name="Casey", now=clock.now(), actor="test")
    return staff


async def test_a_link_opens_one_session_once_and_is_stored_hashed(db: str) -> None:
    clock = ManualClock()
    staff = await _staff(clock)
    link = await issue_link(staff, via="slack", now=clock.now())
    assert link.token.startswith(LINK_PREFIX) and link.expires_at == clock.now() + timedelta(minutes=10)
    stored = await ConsoleSignIn.get(staff_id=staff.id)
    assert stored.token_hash == digest(link.token) and link.token not in str(stored.__dict__)

    clock.advance(minutes=9, seconds=59)
    opened = await redeem_link(link.token, now=clock.now())
    assert opened.staff.id == staff.id and opened.expires_at == clock.now() + timedelta(hours=8)
    assert (await ConsoleSession.get(staff_id=staff.id)).token_hash == digest(opened.token)
    with pytest.raises(SignInRefused, match="already used"):
        await redeem_link(link.token, now=clock.now())

    kinds = await AuditEvent.filter(kind__startswith="console.").order_by("seq").values_list("kind", flat=True)
    assert kinds == ["console.link_issued", "console.signed_in"]


async def test_an_expired_or_forged_link_is_refused(db: str) -> None:
    clock = ManualClock()
    staff = await _staff(clock)
    link = await issue_link(staff, via="cli", now=clock.now())
    clock.advance(minutes=10)
    with pytest.raises(SignInRefused, match="expired"):
        await redeem_link(link.token, now=clock.now())
    altered = link.token[:-1] + ("B" if link.token.endswith("A") else "A")  # one character off
    for forged in ("", "hcl_" + "x" * 43, altered, "not-a-link", "hcl_" + "x" * 500):
        with pytest.raises(SignInRefused, match="not valid"):
            await redeem_link(forged, now=clock.now())
    assert await ConsoleSession.all().count() == 0


async def test_sessions_end_after_eight_hours_on_sign_out_and_when_the_role_goes(db: str) -> None:
    clock = ManualClock()
    staff = await _staff(clock)
    opened = await redeem_link((await issue_link(staff, via="cli", now=clock.now())).token, now=clock.now())
    found = await session_staff(opened.token, now=clock.now() + timedelta(hours=7, minutes=59))
    assert found is not None and found[1].id == staff.id
    assert await session_staff(opened.token, now=clock.now() + timedelta(hours=8)) is None
    assert await session_staff("x" * 43, now=clock.now()) is None

    await Staff.filter(id=staff.id).update(active=False)  # deactivated staff lose the console at once
    assert await session_staff(opened.token, now=clock.now()) is None
    await Staff.filter(id=staff.id).update(active=True)
    session, _ = await session_staff(opened.token, now=clock.now())
    await end_session(session, now=clock.now())
    assert await session_staff(opened.token, now=clock.now()) is None
    assert await AuditEvent.filter(kind="console.signed_out").count() == 1


async def test_only_staff_get_links(db: str) -> None:
    clock = ManualClock()
    with pytest.raises(PermissionDenied, match="Only Herald staff"):
        await issue_link(None, via="slack", now=clock.now())
    staff = await _staff(clock, "gone@vendor.example")
    await Staff.filter(id=staff.id).update(active=False)
    with pytest.raises(PermissionDenied):
        await issue_link(await Staff.get(id=staff.id), via="slack", now=clock.now())
    with pytest.raises(UserError, match="no staff member"):
        await issue_link_for_email("nobody@vendor.example", via="cli", now=clock.now(), actor="test")
    await import_directory(SAMPLE_DIRECTORY, now=clock.now(), actor="test")
    with pytest.raises(UserError, match="is a partner member, not vendor staff"):
        await issue_link_for_email("anna@acme.example", via="cli", now=clock.now(), actor="test")
    for role in ("compliance", "admin"):
        other = await _staff(clock, f"{role}@vendor.example", role)
        assert (await issue_link(other, via="teams", now=clock.now())).staff.id == other.id


async def test_the_console_command_is_parsed_and_run_with_the_senders_role(db: str) -> None:
    clock = ManualClock()
    assert parse_command("console") == ConsoleCommand()
    commands = StaffCommands(load_catalog(), clock, wake_outbox=lambda: None, platform="teams")
    link = await commands.run(ConsoleCommand(), await _staff(clock))
    assert (await ConsoleSignIn.get(token_hash=digest(link.token))).issued_via == "teams"
    with pytest.raises(PermissionDenied):
        await commands.run(ConsoleCommand(), None)  # a partner, or someone Herald does not know


async def test_slash_herald_console_answers_only_the_sender_with_a_link(slack) -> None:  # noqa: ANN001
    response, _, key = await slack.command("console")
    assert response.status == 200
    (reply,) = await slack.responses(key)
    assert reply.args["response_type"] == "ephemeral"
    url = reply.args["text"].split("<", 1)[1].split("|", 1)[0]
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert urlsplit(url).path == "/console/sign-in" and token.startswith(LINK_PREFIX)
    assert (await redeem_link(token, now=slack.clock.now())).staff.slack_user_id == CAM_USER

    response, _, key = await slack.command("console", user="UANNA")  # a partner member, not staff
    (reply,) = await slack.responses(key)
    assert "Only Herald staff" in reply.args["text"] and "sign-in" not in reply.args["text"]


def test_cli_console_link_prints_a_link_for_the_database_serve_uses(db_url: str, monkeypatch) -> None:  # noqa: ANN001
    import asyncio

    from storage import db as storage_db

    runner = in_process_cli(monkeypatch, db_url, HERALD_SANDBOX="off", HERALD_PUBLIC_URL="https://herald.example.com")

    async def seed() -> None:
        await storage_db.connect(db_url, run_migrations=False)
        try:
            await add_staff("robin@vendor.example", "compliance", now=ManualClock().now(), actor="test")
        finally:
            await storage_db.close()
    asyncio.run(seed())

    printed = runner.invoke(main, ["console-link", "Robin@Vendor.example"])
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith("https://herald.example.com/console/sign-in?token=hcl_")
    missing = runner.invoke(main, ["console-link", "nobody@vendor.example"])
    assert missing.exit_code == 1 and "no staff member" in missing.output


def test_sandbox_mode_is_on_only_without_slack_and_teams() -> None:
    assert load_settings(sandbox="auto").sandbox_active
    assert not load_settings(sandbox="auto", slack_signing_secret="s").sandbox_active
    assert not load_settings(sandbox="auto", slack_app_token="xapp-1-A0HERALD-1-socket").sandbox_active
    assert not load_settings(sandbox="auto", teams_app_id="app", teams_app_password="secret").sandbox_active
    assert not load_settings(sandbox="off").sandbox_active
    assert load_settings(sandbox="on", slack_signing_secret="s").sandbox_active
    sandboxed = load_settings(database_url="sqlite://real.db", sandbox_database_url="sqlite://sand.db").for_sandbox()
    assert sandboxed.database_url == "sqlite://sand.db" and sandboxed.tick_seconds <= 10
    assert load_settings(port=4000).console_url == "http://127.0.0.1:4000/console/"
    assert load_settings(public_url="https://h.example/").console_url == "https://h.example/console/"

