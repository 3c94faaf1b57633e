"""No secret or token in any log line: real flows (Slack end to end, "Add to Slack", Teams, the
command line) run with every logger at DEBUG, JSON lines, and each line is searched for the
secrets those flows used. The redactor is given only what `herald serve` gives it (the settings'
secrets); tokens minted during the flows (bot tokens, OAuth codes, API tokens, report links) must
be caught by their shapes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestServer

from bot.app import HERALD_KEY, RedactingAccessLogger, build_app
from bot.channels.slack_blocks import SEND_ACTION
from bot.cli import main
from bot.cli.base import settings_secrets
from bot.common.clock import ManualClock
from bot.common.logs import REDACTED, Redactor, configure_logging, log_context
from bot.core.notices.views import ACK_ACTION
from config.settings import load_settings
from storage.models import Acknowledgement
from tests.console_support import CAM, ConsoleHarness
from tests.support import CAM_USER, SIGNING_SECRET, TOKEN, seed_directory, start_harness, stop_harness, wait_until
from tests.test_slack_install import (
    CLIENT_SECRET, NEW_TOKEN, OAUTH_SETTINGS, SECRET_KEY, _finish, _newco_code, _start,
)
from tests.cli_support import in_process_cli


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every logger at DEBUG into one buffer, as `herald serve` with HERALD_LOG_LEVEL=DEBUG and
    HERALD_LOG_FORMAT=json would write it."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved_levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    buffer = io.StringIO()
    configure_logging("DEBUG", "json", stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def _lines(buffer: io.StringIO) -> list[str]:
    lines = buffer.getvalue().splitlines()
    for line in lines:
        json.loads(line)  # one JSON object per line, always
    return lines


def _assert_clean(lines: list[str], secrets: dict[str, str]) -> None:
    for what, secret in secrets.items():
        assert secret, what
        leaks = [line for line in lines if secret in line]
        assert not leaks, f"{what} leaked into the log: {leaks[0][:400]}"


async def test_slack_flows_log_no_secrets(db: str, debug_log: io.StringIO) -> None:
    h = await start_harness(db, extra_settings=OAUTH_SETTINGS)
    configure_logging("DEBUG", "json", stream=debug_log, secrets=settings_secrets(h.herald.settings))
    await seed_directory(h.clock)
    try:
        # /herald send -> Send -> delivered -> Acknowledge -> report (CSV uploaded to the DM)
        response, _, key = await h.command("send must-know operations tier:gold | Recall | Stop selling LX-200")
        (preview,) = await h.responses(key)
        notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                             for e in b["elements"] if e["action_id"] == SEND_ACTION))
        await h.click(SEND_ACTION, str(notice_id), user=CAM_USER)
        await h.responses(h.last_click_key)
        await h.herald.outbox.drain()
        await h.click(ACK_ACTION, str(notice_id), user="UANNA")
        await wait_until(lambda: Acknowledgement.filter(notice_id=notice_id).exists(), what="the acknowledgement")
        _, _, key = await h.command(f"report {notice_id}")
        await wait_until(lambda: h.fake.shared_files, what="the report upload")

        # "Add to Slack": the code is exchanged for a bot token
        _newco_code(h, code="oauth-code-4f9a1c")
        state, cookie, _ = await _start(h)
        status, page, _ = await _finish(h, state=state, code="oauth-code-4f9a1c", cookie=cookie)
        assert status == 200, page
    finally:
        await stop_harness(h)

    lines = _lines(debug_log)
    text = "\n".join(lines)
    # the flows really were logged at DEBUG, bodies included (so the search below means something)
    assert "chat.postMessage" in text and "oauth.v2.access" in text and "/slack/oauth_redirect" in text
    assert REDACTED in text
    _assert_clean(lines, {"bot token": TOKEN, "installed bot token": NEW_TOKEN, "signing secret": SIGNING_SECRET,
                          "client secret": CLIENT_SECRET, "OAuth code": "oauth-code-4f9a1c",
                          "secret key": SECRET_KEY, "OAuth state": state})
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r.get("workspace") == "T0PARTNER" and r.get("platform") == "slack" for r in records)


async def test_teams_flow_and_report_link_log_no_secrets(db: str, debug_log: io.StringIO) -> None:
    from tests.teams_support import sent_from_teams, start_teams_rig, stop_teams_rig

    rig = await start_teams_rig(db, secret_key=SECRET_KEY, public_url="https://herald.example.com")
    configure_logging("DEBUG", "json", stream=debug_log, secrets=settings_secrets(rig.herald.settings))
    try:
        await rig.post(rig.activity("installationUpdate", "aad-cam", action="add"))
        notice_id = await sent_from_teams(rig, "send must-know operations org:teamsco | Recall | Stop")
        await rig.invoke("aad-eve", "herald.ack", {"notice_id": notice_id})
        reply = await rig.say("aad-cam", f"report {notice_id}")
        link = next(word.strip("()<>[]") for word in json.dumps(reply).replace('"', " ").split()
                    if "/reports/download?token=" in word)
        token = parse_qs(urlsplit(link).query)["token"][0]
        async with rig.session.get(rig.server.make_url("/reports/download").with_query(token=token)) as response:
            assert response.status == 200  # the page with the Download button
        async with rig.session.post(rig.server.make_url("/reports/download"), data={"token": token}) as response:
            assert response.status == 200 and b"gus@teamsco.example" in await response.read()
    finally:
        await stop_teams_rig(rig)
    lines = _lines(debug_log)
    assert any("/reports/download" in line for line in lines)
    assert any(json.loads(line).get("workspace") == "tenant-1" for line in lines)
    _assert_clean(lines, {"report link token": token, "secret key": SECRET_KEY, "signing secret": SIGNING_SECRET})


def test_cli_token_create_logs_no_token(db_url: str, debug_log: io.StringIO, monkeypatch) -> None:  # noqa: ANN001
    runner = in_process_cli(monkeypatch, db_url, HERALD_LOG_FORMAT="json")
    assert runner.invoke(main, ["staff", "add", "auditor@vendor.example", "--role", "compliance"]).exit_code == 0
    configure_logging("DEBUG", "json", stream=debug_log)
    logging.getLogger("tortoise").setLevel(logging.DEBUG)  # every SQL statement, with its parameters
    result = runner.invoke(main, ["token", "create", "auditor@vendor.example"])
    assert result.exit_code == 0, result.output
    plaintext = result.stdout.strip().splitlines()[-1]
    assert plaintext.startswith("hrld_")
    configure_logging("DEBUG", "json", stream=debug_log)  # the CLI installed its own handler; take it back
    logging.getLogger("bot.test").debug("a script echoed its token %s by mistake", plaintext)
    logging.getLogger("bot.test").debug("and again: Authorization: Bearer %s", plaintext)
    lines = _lines(debug_log)
    assert len(lines) >= 2
    _assert_clean(lines, {"API token": plaintext})
    assert plaintext not in result.stderr


@pytest.mark.parametrize("text, secret", [
    ("posting with token xoxb-1234-5678-abcdefABCDEF", "xoxb-1234-5678-abcdefABCDEF"),
    ("rotated: xoxe.xoxb-1-MS0yLTEyMzQ1Njc4OTA and xoxe-1-My0xLTEyMzQ1Njc4OTAt", "xoxe.xoxb-1-MS0yLTEyMzQ1Njc4OTA"),
    ("rotated: xoxe.xoxb-1-MS0yLTEyMzQ1Njc4OTA and xoxe-1-My0xLTEyMzQ1Njc4OTAt", "xoxe-1-My0xLTEyMzQ1Njc4OTAt"),
    ("socket mode with xapp-1-A0123-4567-abcdef", "xapp-1-A0123-4567-abcdef"),
    ("body_params: {'client_id': '1.2', 'client_secret': 'sssh-its-me', 'code': 'c0de'}", "sssh-its-me"),
    ("body_params: {'client_id': '1.2', 'client_secret': 'sssh-its-me', 'code': 'c0de-77'}", "c0de-77"),
    ('{"refresh_token": "opaque-refresh-value", "ok": true}', "opaque-refresh-value"),
    ("grant_type=refresh_token&refresh_token=opaque-refresh-value&client_id=1", "opaque-refresh-value"),
    ("GET /slack/oauth_redirect?code=abc.def.ghi&state=v1.n.1.s HTTP/1.1", "abc.def.ghi"),
    ("GET /reports/download?token=12.3.1700000000.c2lnbmF0dXJl HTTP/1.1", "12.3.1700000000.c2lnbmF0dXJl"),
    ("Authorization: Bearer hrld_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "hrld_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("msal: eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl", "eyJzdWIiOiIxMjM0NTY3ODkwIn0"),
    ("X-Slack-Signature: v0=abc signature=9f86d081884c7d659a2feaa0", "9f86d081884c7d659a2feaa0"),
])
def test_the_redactor_catches_each_kind_of_secret(text: str, secret: str) -> None:
    redactor = Redactor()
    scrubbed = redactor.scrub(text)
    assert secret not in scrubbed and REDACTED in scrubbed
    assert redactor.scrub(scrubbed) == scrubbed  # idempotent: a second pass changes nothing


def test_text_format_keeps_context_and_redacts(debug_log: io.StringIO) -> None:
    buffer = io.StringIO()
    configure_logging("INFO", "text", stream=buffer, secrets=["an-app-password-value"])
    with log_context(notice_id=42, workspace="T1"):
        logging.getLogger("bot.test").info("password is an-app-password-value")
    line = buffer.getvalue().strip()
    assert line.endswith("[notice_id=42 workspace=T1]") and "INFO bot.test:" in line
    assert "an-app-password-value" not in line and REDACTED in line
    assert not line.startswith("{")


# ---- the access log (`herald serve`'s RedactingAccessLogger) ----------------------------------

async def _serve_with_access_log(db_url: str) -> ConsoleHarness:
    """The console harness, with the access logger `herald serve` installs."""
    config = load_settings(database_url=db_url, kb_semantic=False, outbox_poll_seconds=3600,
                           public_url="http://herald.example", secret_key=SECRET_KEY)
    app = build_app(config, clock=ManualClock(), run_worker=False, manage_database=False, sandbox=True)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log_class=RedactingAccessLogger)
    return ConsoleHarness(app, server, app[HERALD_KEY].clock)


async def _stop(harness: ConsoleHarness) -> None:
    for browser in harness.browsers:
        await browser.close()
    await harness.server.close()


def _access_lines(buffer: io.StringIO) -> list[str]:
    return [line for line in _lines(buffer) if '"aiohttp.access"' in line]


async def test_the_access_log_has_no_tracked_link_token(db: str, debug_log: io.StringIO) -> None:
    """An A/B link in Teams carries its signed token in the path: a replayable, counted press of
    one member, tied to the address that opened it."""
    harness = await _serve_with_access_log(db)
    try:
        token = harness.herald.outbox.link_tracker.url(1, 7).rsplit("/", 1)[1]  # type: ignore[union-attr]
        await harness.browser().get(f"/go/{token}", allow_redirects=False)
    finally:
        await _stop(harness)
    lines = _access_lines(debug_log)
    assert any('GET /go/[redacted]' in line for line in lines), lines
    _assert_clean(lines, {"the tracked link's signature": token.rsplit(".", 1)[1]})


async def test_the_access_log_has_no_audience_typed_in_compose(db: str, debug_log: io.StringIO) -> None:
    """The console counts recipients as the CAM types: the audience may name partner staff."""
    harness = await _serve_with_access_log(db)
    try:
        browser = await harness.signed_in(CAM)
        response, _ = await browser.get("/console/audience-count", params={
            "audience": "member:lena.fischer@contoso.example", "topic": "operations", "importance": "must-know"})
        assert response.status == 200
    finally:
        await _stop(harness)
    lines = _access_lines(debug_log)
    assert any("audience=[redacted]&topic=[redacted]" in line for line in lines), lines
    _assert_clean(lines, {"a partner's e-mail address": "lena.fischer@contoso.example"})
