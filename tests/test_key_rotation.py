"""Rotating HERALD_SECRET_KEY: the old key as HERALD_SECRET_KEY_PREVIOUS keeps everything sealed or
signed with it working (stored Slack tokens, install links begun before the switch, report links,
tracked links) while everything new uses the new key; once the old key is dropped, what it signed
no longer verifies. Over real HTTP against the fake Slack API and the fake Bot Connector."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from bot.cli import main
from bot.common.secrets import PREFIX, TokenCipher, TokenDecryptError, cipher_for
from bot.core.compliance.sealed_values import rotate
from bot.core.directory.workspaces import add_slack_workspace
from bot.core.notices.interactions import link_tracker
from storage.models import AuditEvent, Delivery, Survey, Workspace
from tests.support import SAMPLE_DIRECTORY, TEAM, TOKEN, Rig, SlackHarness, in_database, restart_harness, seeded_slack
from tests.test_slack_install import (
    NEW_TEAM, NEW_TOKEN, OAUTH_SETTINGS, PUBLIC_URL, _finish, _newco_code, _raw_token, _start,
)
from tests.cli_support import in_process_cli

KEY_A = "key-a-the-old-one-0123456789-abcdefghijklmnop"
KEY_B = "key-b-the-new-one-0123456789-abcdefghijklmnop"


@pytest.fixture
async def slack(db: str):  # noqa: ANN201
    """test_slack_install's harness, its secrets sealed and signed with KEY_A."""
    async with seeded_slack(db, extra_settings={**OAUTH_SETTINGS, "secret_key": KEY_A}) as harness:
        yield harness


async def _switch_to_b(slack: SlackHarness, *, keep_a: bool = True) -> None:
    """The operator sets the new key (and the old one as previous, or no longer) and restarts."""
    await restart_harness(slack, secret_key=KEY_B, secret_key_previous=KEY_A if keep_a else None)


# ---- the overlap: the old key still opens and verifies ------------------------------------------

async def test_a_token_stored_under_the_old_key_still_delivers_after_the_switch(slack: SlackHarness) -> None:
    await add_slack_workspace(TEAM, TOKEN, now=slack.clock.now(), actor="test", cipher=TokenCipher(KEY_A))
    assert TokenCipher(KEY_A).open(await _raw_token(TEAM)) == TOKEN
    await _switch_to_b(slack)

    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:acme")
    await slack.herald.outbox.drain()
    deliveries = await Delivery.filter(notice_id=notice_id)
    assert deliveries and all(d.status == "delivered" for d in deliveries), [d.error for d in deliveries]
    posts = slack.fake.calls_to("chat.postMessage")
    assert posts and all(p.ok and p.team_id == TEAM for p in posts)  # the fake knew the token sent

    # nothing new is sealed with the old key: a workspace installed now is under the new key alone
    _newco_code(slack)
    state, cookie, _ = await _start(slack)
    status, page, _ = await _finish(slack, state=state, code="code-ok", cookie=cookie)
    assert status == 200, page
    raw = await _raw_token(NEW_TEAM)
    assert raw.startswith(PREFIX) and TokenCipher(KEY_B).open(raw) == NEW_TOKEN
    with pytest.raises(TokenDecryptError):
        TokenCipher(KEY_A).open(raw)


async def test_an_install_begun_under_the_old_key_finishes_during_the_overlap_and_not_after(
        slack: SlackHarness) -> None:
    _newco_code(slack)
    slack.fake.add_oauth_code("code-late", team_id="T0LATE", token="xoxb-late", team_name="Late",
                              redirect_uri=PUBLIC_URL + "/slack/oauth_redirect")
    state, cookie, _ = await _start(slack)  # signed with A
    late_state, late_cookie, _ = await _start(slack)
    await _switch_to_b(slack)
    status, page, _ = await _finish(slack, state=state, code="code-ok", cookie=cookie)
    assert status == 200, page

    await _switch_to_b(slack, keep_a=False)
    status, page, _ = await _finish(slack, state=late_state, code="code-late", cookie=late_cookie)
    assert status == 400 and "not valid" in page
    fresh, fresh_cookie, _ = await _start(slack)  # signed with B: fine
    status, page, _ = await _finish(slack, state=fresh, code="code-late", cookie=fresh_cookie)
    assert status == 200, page


async def test_a_report_link_handed_out_under_the_old_key_works_during_the_overlap_and_not_after(db: str) -> None:
    from tests.teams_support import restart_teams_rig, sent_from_teams, start_teams_rig, stop_teams_rig

    rig = await start_teams_rig(db, secret_key=KEY_A, public_url="https://herald.example.com")
    try:
        await rig.post(rig.activity("installationUpdate", "aad-cam", action="add"))
        notice_id = await sent_from_teams(rig, "send must-know operations org:teamsco | Recall | Stop")
        reply = await rig.say("aad-cam", f"report {notice_id}")
        link = next(word.strip("()<>[]") for word in json.dumps(reply).replace('"', " ").split()
                    if "/reports/download?token=" in word)
        token = parse_qs(urlsplit(link).query)["token"][0]

        async def download() -> int:
            url = rig.server.make_url("/reports/download")  # the Download button POSTs the token; the session is closed before a restart
            async with aiohttp.ClientSession() as browser, browser.post(url, data={"token": token}) as response:
                await response.read()
                return response.status

        await restart_teams_rig(rig, secret_key=SecretStr(KEY_B), secret_key_previous=SecretStr(KEY_A))
        assert await download() == 200
        await restart_teams_rig(rig, secret_key_previous=None)
        assert await download() == 403
    finally:
        await stop_teams_rig(rig)


async def test_a_tracked_link_signed_under_the_old_key_is_read_during_the_overlap_and_not_after(
        slack: SlackHarness) -> None:
    tracker = slack.herald.outbox.link_tracker
    assert tracker is not None
    token = tracker.url(3, 7).rsplit("/", 1)[1]
    await _switch_to_b(slack)
    during = slack.herald.outbox.link_tracker
    assert during is not None and during.read(token) == (3, 7)
    assert during.url(3, 7) == link_tracker(PUBLIC_URL, KEY_B).url(3, 7)  # signed with the new key alone
    await _switch_to_b(slack, keep_a=False)
    after = slack.herald.outbox.link_tracker
    assert after is not None and after.read(token) is None


# ---- configuration ------------------------------------------------------------------------------

@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return in_process_cli(monkeypatch, db_url)


@pytest.mark.parametrize(("previous", "message"), [
    (KEY_B, "HERALD_SECRET_KEY_PREVIOUS must not contain HERALD_SECRET_KEY"),
    (f"{KEY_A},{KEY_B}", "HERALD_SECRET_KEY_PREVIOUS must not contain HERALD_SECRET_KEY"),
    ("too-short", "HERALD_SECRET_KEY_PREVIOUS: each key must be at least 32 characters"),
    (f"{KEY_A}, short", "HERALD_SECRET_KEY_PREVIOUS: each key must be at least 32 characters"),
])
@pytest.mark.parametrize("command", [["workspaces", "list"], ["secrets", "rotate"]])
def test_the_cli_refuses_a_previous_key_that_is_the_current_one_or_too_short(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch, previous: str, message: str, command: list[str]) -> None:
    monkeypatch.setenv("HERALD_SECRET_KEY", KEY_B)
    monkeypatch.setenv("HERALD_SECRET_KEY_PREVIOUS", previous)
    result = cli.invoke(main, command)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert KEY_B not in result.output and KEY_A not in result.output


def test_a_previous_key_needs_a_current_one_and_several_may_be_given(cli: CliRunner,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_SECRET_KEY_PREVIOUS", KEY_A)
    result = cli.invoke(main, ["workspaces", "list"])
    assert result.exit_code == 2 and "HERALD_SECRET_KEY_PREVIOUS needs HERALD_SECRET_KEY" in result.output
    older = "key-0-older-still-0123456789-abcdefghijklmnop"
    monkeypatch.setenv("HERALD_SECRET_KEY", KEY_B)
    monkeypatch.setenv("HERALD_SECRET_KEY_PREVIOUS", f" {KEY_A} ,{older},")
    result = cli.invoke(main, ["workspaces", "list"])
    assert result.exit_code == 0, result.output
    from config.settings import load_settings

    settings = load_settings()
    assert settings.previous_secret_keys == (KEY_A, older)
    assert KEY_A not in repr(settings) and KEY_A not in str(settings.model_dump())


# ---- herald secrets rotate --------------------------------------------------------------------

KEY_C = "key-c-nobody-configured-0123456789-abcdefghij"




async def _stored() -> dict[str, str]:
    """Every sealed column's raw value, by what it is (the survey's by "survey")."""
    values = {f"{w.external_id}.bot": w.bot_token for w in await Workspace.all()}
    values |= {f"{w.external_id}.refresh": w.refresh_token for w in await Workspace.all() if w.refresh_token}
    values |= {"survey": s.respondent_key for s in await Survey.all()}
    return values


def _under_a_then_b(cli: CliRunner, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """A deployment that ran with key A (and, before that, with no key), now restarted with B and
    A as previous: a plaintext token, tokens and an anonymous survey's key under A, a token under
    a key nobody has any more (C)."""
    def ok(*args: str) -> None:
        result = cli.invoke(main, list(args))
        assert result.exit_code == 0, result.output

    directory = tmp_path / "partners.csv"
    directory.write_text(SAMPLE_DIRECTORY)
    ok("directory", "import", str(directory))
    ok("staff", "add", "admin@vendor.example", "--role", "admin")
    ok("slack", "add-workspace", "T0PLAIN", "--token", "xoxb-plain")
    monkeypatch.setenv("HERALD_SECRET_KEY", KEY_C)
    ok("slack", "add-workspace", "T0LOST", "--token", "xoxb-lost")
    monkeypatch.setenv("HERALD_SECRET_KEY", KEY_A)
    ok("slack", "add-workspace", "T0ROT", "--token", "xoxb-rot")
    ok("survey", "send", "--topic", "announcements", "--audience", "org:acme", "--question", "How was it?",
       "--scale", "1-5", "--anonymous", "--yes", "--as", "admin@vendor.example")
    in_database(db_url, lambda: Workspace.filter(external_id="T0ROT").update(
        refresh_token=TokenCipher(KEY_A).seal("xoxe-1-refresh")))
    monkeypatch.setenv("HERALD_SECRET_KEY", KEY_B)
    monkeypatch.setenv("HERALD_SECRET_KEY_PREVIOUS", KEY_A)


def test_rotate_re_encrypts_every_value_under_the_new_key_once(cli: CliRunner, db_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    _under_a_then_b(cli, db_url, monkeypatch, tmp_path)
    before = in_database(db_url, _stored)
    survey_key = TokenCipher(KEY_A).open(before["survey"])

    result = cli.invoke(main, ["secrets", "rotate"])
    assert result.exit_code == 1, result.output  # a value no configured key reads
    assert "re-encrypted 3 values under HERALD_SECRET_KEY (1 survey respondent key, 1 workspace bot token, " \
           "1 workspace refresh token)" in result.output
    assert "encrypted 1 plaintext value (1 workspace bot token)" in result.output
    assert "could not read 1 value with any configured key: workspace bot token T0LOST" in result.output
    for secret in ("xoxb-", "xoxe-", KEY_A, KEY_B, survey_key, PREFIX):
        assert secret not in result.output

    after = in_database(db_url, _stored)
    new_only, old_only = TokenCipher(KEY_B), TokenCipher(KEY_A)
    for name, plain in (("T0ROT.bot", "xoxb-rot"), ("T0ROT.refresh", "xoxe-1-refresh"), ("T0PLAIN.bot", "xoxb-plain"),
                        ("survey", survey_key)):
        assert after[name].startswith(PREFIX) and new_only.open(after[name]) == plain, name
        with pytest.raises(TokenDecryptError):
            old_only.open(after[name])
    assert after["T0LOST.bot"] == before["T0LOST.bot"]  # left as it was

    (event,) = in_database(db_url, lambda: AuditEvent.filter(kind="secrets.rotated"))
    assert event.actor.startswith("operator:") and event.data["source"] == "cli"
    assert event.data["re_encrypted"] == 3 and event.data["encrypted_plaintext"] == 1
    assert event.data["unreadable"] == 1 and event.data["unreadable_values"] == ["workspace bot token T0LOST"]
    assert not any(v in json.dumps(event.data) for v in ("xoxb-", "xoxe-", survey_key, PREFIX))

    again = cli.invoke(main, ["secrets", "rotate", "--json"])
    assert again.exit_code == 1
    counts = json.loads(again.output)
    assert counts["re_encrypted"] == counts["encrypted_plaintext"] == 0 and counts["already_current"] == 4
    assert in_database(db_url, _stored) == after  # nothing rewritten

    # once the lost token's workspace is reconnected, the previous key can go
    cli.invoke(main, ["slack", "add-workspace", "T0LOST", "--token", "xoxb-found"])
    done = cli.invoke(main, ["secrets", "rotate"])
    assert done.exit_code == 0, done.output
    assert "re-encrypted 0 values" in done.output and "HERALD_SECRET_KEY_PREVIOUS can be removed" in done.output
    monkeypatch.delenv("HERALD_SECRET_KEY_PREVIOUS")
    listed = cli.invoke(main, ["workspaces", "list", "--json"])
    assert {r["id"]: r["token"] for r in json.loads(listed.output)}["T0PLAIN"] == "encrypted"


def test_rotate_needs_a_key_and_refuses_a_bad_previous_one(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli.invoke(main, ["secrets", "rotate"])
    assert result.exit_code == 1 and "HERALD_SECRET_KEY is not set" in result.output
    monkeypatch.setenv("HERALD_SECRET_KEY", KEY_B)
    monkeypatch.setenv("HERALD_SECRET_KEY_PREVIOUS", KEY_B)
    result = cli.invoke(main, ["secrets", "rotate"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "HERALD_SECRET_KEY_PREVIOUS must not contain HERALD_SECRET_KEY" in result.output


async def test_after_rotating_the_old_key_can_be_dropped_and_slack_still_delivers(slack: SlackHarness) -> None:
    await add_slack_workspace(TEAM, TOKEN, now=slack.clock.now(), actor="test", cipher=TokenCipher(KEY_A))
    await _switch_to_b(slack)
    result = await rotate(cipher_for(KEY_B, [KEY_A]), now=slack.clock.now(), actor="operator:test")
    assert result.resealed["workspace bot token"] == 1 and not result.unreadable
    await _switch_to_b(slack, keep_a=False)

    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:acme")
    await slack.herald.outbox.drain()
    deliveries = await Delivery.filter(notice_id=notice_id)
    assert deliveries and all(d.status == "delivered" for d in deliveries), [d.error for d in deliveries]
