"""Rotating HERALD_SECRET_KEY: the old key as HERALD_SECRET_KEY_PREVIOUS keeps everything sealed or
signed with it working (stored Slack tokens, install links begun before the switch, report links,
tracked links) while everything new uses the new key; once the old key is dropped, what it signed
no longer verifies. Over real HTTP against the fake Slack API and the fake Bot Connector."""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from bot.cli import main
from bot.common.secrets import PREFIX, TokenCipher, TokenDecryptError
from bot.core.directory.workspaces import add_slack_workspace
from bot.core.notices.interactions import link_tracker
from storage.models import Delivery
from tests.support import TEAM, TOKEN, Rig, SlackHarness, restart_harness, seed_directory, start_harness, stop_harness
from tests.test_slack_install import (
    CLIENT_ID, CLIENT_SECRET, NEW_TEAM, NEW_TOKEN, PUBLIC_URL, _finish, _newco_code, _raw_token, _start,
)

KEY_A = "key-a-the-old-one-0123456789-abcdefghijklmnop"
KEY_B = "key-b-the-new-one-0123456789-abcdefghijklmnop"
OAUTH = {"slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET, "public_url": PUBLIC_URL,
         "slack_oauth_base_url": "https://slack.example"}


@pytest.fixture
async def slack(db: str):  # noqa: ANN201
    harness = await start_harness(db, extra_settings={**OAUTH, "secret_key": KEY_A})
    harness.fake.add_oauth_app(CLIENT_ID, CLIENT_SECRET)
    await seed_directory(harness.clock)
    try:
        yield harness
    finally:
        await stop_harness(harness)


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
    from tests.teams_support import restart_teams_rig, start_teams_rig, stop_teams_rig

    rig = await start_teams_rig(db, secret_key=KEY_A, public_url="https://herald.example.com")
    try:
        await rig.post(rig.activity("installationUpdate", "aad-cam", action="add"))
        preview = await rig.say("aad-cam", "send must-know operations org:teamsco | Recall | Stop")
        notice_id = preview["attachments"][0]["content"]["actions"][0]["data"]["notice_id"]
        await rig.invoke("aad-cam", "herald.send", {"notice_id": notice_id})
        await rig.herald.outbox.drain()
        reply = await rig.say("aad-cam", f"report {notice_id}")
        link = next(word.strip("()<>[]") for word in json.dumps(reply).replace('"', " ").split()
                    if "/reports/download?token=" in word)
        token = parse_qs(urlsplit(link).query)["token"][0]

        async def download() -> int:
            url = rig.server.make_url("/reports/download").with_query(token=token)
            async with aiohttp.ClientSession() as browser, browser.get(url) as response:  # closed before a restart
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
    for key in [k for k in os.environ if k.startswith("HERALD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HERALD_DATABASE_URL", db_url)
    return CliRunner()


@pytest.mark.parametrize(("previous", "message"), [
    (KEY_B, "HERALD_SECRET_KEY_PREVIOUS must not contain HERALD_SECRET_KEY"),
    (f"{KEY_A},{KEY_B}", "HERALD_SECRET_KEY_PREVIOUS must not contain HERALD_SECRET_KEY"),
    ("too-short", "HERALD_SECRET_KEY_PREVIOUS: each key must be at least 32 characters"),
    (f"{KEY_A}, short", "HERALD_SECRET_KEY_PREVIOUS: each key must be at least 32 characters"),
])
def test_the_cli_refuses_a_previous_key_that_is_the_current_one_or_too_short(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch, previous: str, message: str) -> None:
    monkeypatch.setenv("HERALD_SECRET_KEY", KEY_B)
    monkeypatch.setenv("HERALD_SECRET_KEY_PREVIOUS", previous)
    result = cli.invoke(main, ["workspaces", "list"])
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
