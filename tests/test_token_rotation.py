"""Slack token rotation against the fake: a workspace installed with rotation gets an expiring
token and a refresh token (stored sealed); the token is refreshed before it expires and after
Slack answers `token_expired`; two replicas never refresh at once; a passing refresh failure is
retried; a refused refresh is a removal (reconnecting sends the copies) and the doctor says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bot.channels.slack import SlackWorkspaces
from bot.channels.slack_tokens import TokenRefreshFailed, TokenRotator
from bot.common import metrics
from bot.common.secrets import PREFIX, TokenCipher
from bot.core.commands.parser import SendCommand
from bot.core.directory.importer import import_directory
from bot.core.directory.workspaces import failed_because_removed
from bot.core.notices import sending
from storage.models import AuditEvent, Delivery, Workspace
from tests.support import SlackHarness, directory_csv, start_harness, stop_harness, wait_until
from tests.test_slack_install import (
    CLIENT_ID, CLIENT_SECRET, NEW_TEAM, NEW_USER, NEWCO_MEMBER, OAUTH_SETTINGS, SECRET_KEY, _finish,
    _start,
)

FIRST_TOKEN = "xoxe.xoxb-1-first-expiring-token"
TWELVE_HOURS = timedelta(hours=12)


@pytest.fixture
async def rotating(db: str) -> AsyncIterator[SlackHarness]:
    h = await start_harness(db, extra_settings=OAUTH_SETTINGS)
    h.fake.token_clock = lambda: h.clock.now().timestamp()
    h.fake.add_oauth_code("code-rotation", team_id=NEW_TEAM, token=FIRST_TOKEN, team_name="New Co", rotation=True)
    h.fake.add_user(NEW_TEAM, NEW_USER)
    state, cookie, _ = await _start(h)
    status, page, _ = await _finish(h, state=state, code="code-rotation", cookie=cookie)
    assert status == 200, page
    result = await import_directory(directory_csv([NEWCO_MEMBER]), now=h.clock.now(), actor="test")
    assert not result.rejected
    try:
        yield h
    finally:
        await stop_harness(h)


async def _send(h: SlackHarness) -> int:
    command = SendCommand(importance="must-know", topic="operations", audience="org:newco", title="Recall",
                          body="Stop selling LX-200")
    preview = await sending.create_draft(None, command, h.herald.catalog, now=h.clock.now(), operator="test")
    await sending.send_draft(preview.notice.id, None, h.herald.catalog, now=h.clock.now(), operator="test")
    return preview.notice.id


def _posts_with(h: SlackHarness, ok: bool = True) -> list:
    return [c for c in h.fake.calls_to("chat.postMessage") if c.ok == ok]


async def test_installed_with_rotation_the_pair_is_stored_sealed(rotating: SlackHarness) -> None:
    workspace = await Workspace.get(external_id=NEW_TEAM)
    assert workspace.bot_token.startswith(PREFIX) and workspace.refresh_token.startswith(PREFIX)
    assert TokenCipher(SECRET_KEY).open(workspace.bot_token) == FIRST_TOKEN
    assert TokenCipher(SECRET_KEY).open(workspace.refresh_token).startswith("xoxe-1-")
    assert workspace.token_expires_at == rotating.clock.now() + TWELVE_HOURS
    installed = await AuditEvent.get(kind="workspace.installed")
    assert installed.data["token_rotation"] is True


async def test_the_token_is_refreshed_before_it_expires(rotating: SlackHarness) -> None:
    h = rotating
    before = metrics.sample("herald_slack_token_refreshes_total", {"outcome": "refreshed"})
    first = await _send(h)
    await h.herald.outbox.drain()
    assert h.fake.refreshes == 0 and len(_posts_with(h)) == 1  # a fresh token is simply used

    h.clock.advance(hours=11, minutes=50)  # within the refresh margin, still valid
    h.herald.slack_workspaces.forget(NEW_TEAM)
    await _send(h)
    await h.herald.outbox.drain()
    assert h.fake.refreshes == 1
    assert not _posts_with(h, ok=False) and len(_posts_with(h)) == 2  # nothing was refused on the way
    workspace = await Workspace.get(external_id=NEW_TEAM)
    assert TokenCipher(SECRET_KEY).open(workspace.bot_token) != FIRST_TOKEN
    assert workspace.token_expires_at == h.clock.now() + TWELVE_HOURS
    assert workspace.refresh_claimed_by == "" and workspace.refresh_claimed_until is None
    assert await AuditEvent.filter(kind="workspace.token_refreshed").count() == 1
    assert metrics.sample("herald_slack_token_refreshes_total", {"outcome": "refreshed"}) - before == 1
    assert await Delivery.filter(notice_id=first, status="delivered").count() == 1


async def test_token_expired_from_slack_refreshes_and_the_retry_delivers(rotating: SlackHarness) -> None:
    h = rotating
    # Herald's record says the token is good for hours (a clock that drifted); Slack says expired.
    await Workspace.filter(external_id=NEW_TEAM).update(token_expires_at=h.clock.now() + timedelta(days=1))
    h.clock.advance(hours=13)
    notice_id = await _send(h)
    await h.herald.outbox.run_once()
    refused = [c for c in h.fake.calls if c.error == "token_expired"]
    assert len(refused) == 1 and not _posts_with(h)  # the first call of the send (opening the DM) was refused
    assert h.fake.refreshes == 1  # refreshed at once, before the retry
    delivery = await Delivery.get(notice_id=notice_id)
    assert delivery.status == "pending" and "token_expired" in delivery.error
    h.clock.advance(minutes=5)
    await h.herald.outbox.drain()
    assert (await Delivery.get(notice_id=notice_id)).status == "delivered"
    assert h.fake.refreshes == 1


def _replica(h: SlackHarness, *, sleep=None) -> SlackWorkspaces:  # noqa: ANN001
    rotator = TokenRotator(h.fake.url, CLIENT_ID, CLIENT_SECRET, clock=h.clock,
                           **({"sleep": sleep} if sleep else {}))
    return SlackWorkspaces(h.fake.url, cipher=TokenCipher(SECRET_KEY), rotator=rotator)


@pytest.mark.parametrize("hours", [11.9, 13], ids=["due", "expired"])
async def test_two_replicas_never_refresh_at_once(rotating: SlackHarness, hours: float) -> None:
    h = rotating
    h.fake.delay("oauth.v2.access", 0.3)  # the refresh is slow, so the second replica arrives during it
    h.clock.advance(hours=hours)
    looks = 0

    async def look_again(seconds: float) -> None:
        nonlocal looks
        looks += 1
        await asyncio.sleep(0.02)

    first, second = _replica(h), _replica(h, sleep=look_again)
    try:
        tokens = await asyncio.gather(first.token_for(NEW_TEAM), second.token_for(NEW_TEAM))
    finally:
        await first.close()
        await second.close()
    assert h.fake.refreshes == 1  # Slack revokes a used refresh token: a second refresh would have failed
    assert not [c for c in h.fake.calls if c.method == "oauth.v2.access" and c.error]
    stored = TokenCipher(SECRET_KEY).open((await Workspace.get(external_id=NEW_TEAM)).bot_token)
    if hours > 12:  # the old token is dead: the second replica waited for the new one
        assert tokens == [stored, stored] and looks > 0
    else:  # the old token still works: the second replica used it rather than wait
        assert stored in tokens and FIRST_TOKEN in tokens and looks == 0


async def test_a_refused_refresh_gives_no_token_and_says_why(rotating: SlackHarness, caplog) -> None:  # noqa: ANN001
    h = rotating
    h.fake._refresh_tokens.clear()  # the refresh token was revoked (the app was reinstalled elsewhere)
    h.clock.advance(hours=13)
    before = metrics.sample("herald_slack_token_refreshes_total", {"outcome": "failed"})
    with pytest.raises(TokenRefreshFailed) as refused:
        await h.herald.slack_workspaces.token_for(NEW_TEAM)
    assert refused.value.refused and refused.value.error == "invalid_refresh_token"
    assert metrics.sample("herald_slack_token_refreshes_total", {"outcome": "failed"}) - before == 1
    assert any("reconnect the workspace" in r.getMessage() for r in caplog.records)
    workspace = await Workspace.get(external_id=NEW_TEAM)
    assert workspace.refresh_claimed_by == ""  # the lease is released for a later attempt


async def test_a_transient_refresh_error_after_expiry_retries_the_copy_instead_of_failing_it(
        rotating: SlackHarness) -> None:
    """Herald refreshes a rotating token when it needs one, so after a quiet night the token has
    expired by the time a broadcast goes out. A blip of Slack's oauth.v2.access then (HTTP 503)
    failed the must-know copy for good, "Herald is not installed in Slack workspace T0NEWCO", a
    reason no reconnection requeues. The copy now waits for its retry, as after a 503 from
    chat.postMessage, its reason naming the refresh."""
    h = rotating
    h.clock.advance(hours=13)  # nothing was sent overnight: the token expired unrefreshed
    h.herald.slack_workspaces.forget(NEW_TEAM)
    h.fake.fail_next("oauth.v2.access", status=503)  # one blip at Slack
    notice_id = await _send(h)
    await h.herald.outbox.run_once()
    delivery = await Delivery.get(notice_id=notice_id)
    assert delivery.status == "pending", (
        f"the copy {delivery.status} with {delivery.error!r} after one 503 from oauth.v2.access")
    assert "could not renew Herald's expired token" in delivery.error and "HTTP 503" in delivery.error
    assert (await Workspace.get(external_id=NEW_TEAM)).active
    h.clock.advance(minutes=10)
    await h.herald.outbox.drain()
    assert (await Delivery.get(notice_id=notice_id)).status == "delivered"
    assert h.fake.refreshes == 1


async def test_a_refused_refresh_fails_copies_as_removed_and_the_reconnection_sends_them(
        rotating: SlackHarness) -> None:
    """Slack refuses the refresh (`invalid_refresh_token`: Herald was uninstalled while it was
    down, so the app_uninstalled event was missed, or the refresh token was revoked). Each copy
    failed "Herald is not installed in Slack workspace T0NEWCO", which a reconnection does not
    requeue, and the workspace stayed active. Now the refusal is a removal: the workspace is
    deactivated (audited), the copy fails saying to reconnect, and "Add to Slack" again sends it."""
    from bot.core.directory.workspaces import UNINSTALLED

    h = rotating
    h.fake._refresh_tokens.clear()  # the refresh token is dead (uninstalled meanwhile, event missed)
    h.clock.advance(hours=13)
    h.herald.slack_workspaces.forget(NEW_TEAM)
    notice_id = await _send(h)
    await h.herald.outbox.drain()
    delivery = await Delivery.get(notice_id=notice_id)
    assert delivery.status == "failed"
    assert failed_because_removed(delivery.error, "slack", NEW_TEAM), (
        f"the copy failed with {delivery.error!r}, a reason no reconnection restores")
    assert "invalid_refresh_token" in delivery.error and "reconnect" in delivery.error
    workspace = await Workspace.get(external_id=NEW_TEAM)
    assert not workspace.active and not workspace.bot_token and not workspace.refresh_token
    uninstalled = await AuditEvent.get(kind=UNINSTALLED)
    assert uninstalled.data["reason"] == "invalid_refresh_token"
    # the partner's admin installs Herald again ("Add to Slack")
    h.fake.add_oauth_code("code-again", team_id=NEW_TEAM, token="xoxe.xoxb-1-second-install", team_name="New Co",
                          rotation=True)
    state, cookie, _ = await _start(h)
    status, page, _ = await _finish(h, state=state, code="code-again", cookie=cookie)
    assert status == 200, page
    h.herald.slack_workspaces.forget(NEW_TEAM)
    await h.herald.outbox.drain()
    assert (await Delivery.get(notice_id=notice_id)).status == "delivered"


async def test_doctor_names_a_refused_token_refresh_not_the_secret_key(rotating: SlackHarness) -> None:
    """README ("Expiring Slack tokens"): a refused refresh "is logged and `herald doctor` says to
    reconnect". The doctor said "the stored token cannot be read (HERALD_SECRET_KEY differs ...)",
    sending the operator after the wrong secret. It now says the refresh was refused, and to reconnect."""
    from datetime import UTC, datetime

    from bot.ops.doctor import check_slack

    h = rotating
    h.fake._refresh_tokens.clear()  # Slack refuses the refresh token (revoked)
    # the doctor runs on the real clock: the stored token expired a day ago
    await Workspace.filter(external_id=NEW_TEAM).update(token_expires_at=datetime.now(UTC) - timedelta(days=1))
    checks = [c for c in await check_slack(h.herald.settings, True) if c.name.startswith(f"slack {NEW_TEAM}")]
    assert [c.status for c in checks] == ["fail"]
    assert "HERALD_SECRET_KEY" not in checks[0].detail + checks[0].fix, (
        f"doctor says: {checks[0].detail!r}; fix: {checks[0].fix!r}")
    assert "refused its refresh (invalid_refresh_token" in checks[0].detail and "reconnect" in checks[0].fix
    assert (await Workspace.get(external_id=NEW_TEAM)).active  # the doctor reports; it changes nothing


async def test_a_request_is_acknowledged_while_its_workspaces_token_is_being_refreshed(
        rotating: SlackHarness) -> None:
    """Slack waits 3 s for the acknowledgement. Within the refresh margin the token is still good:
    a request is answered with it while the refresh (`oauth.v2.access`, held here) goes on."""
    from tests.fakes.slack_signing import slash_command_body
    from tests.test_ack_deadlines import answered

    h = rotating
    h.clock.advance(hours=11, minutes=50)  # within the refresh margin, still valid
    h.herald.slack_workspaces.forget(NEW_TEAM)
    h.fake.hold("oauth.v2.access")
    try:
        body = slash_command_body(text="help", user_id=NEW_USER, team_id=NEW_TEAM,
                                  response_url=h.fake.response_url("help"), channel_id="DNEW")
        assert (await answered(h.post_signed(body))).status == 200
        await wait_until(lambda: h.fake.calls_to("oauth.v2.access"), what="the refresh, held")
    finally:
        h.fake.release()
    await wait_until(lambda: h.fake.refreshes == 1, what="the refresh")

    async def refreshed_token_stored() -> bool:  # Herald stores it after reading Slack's answer
        workspace = await Workspace.get(external_id=NEW_TEAM)
        return TokenCipher(SECRET_KEY).open(workspace.bot_token) != FIRST_TOKEN

    await wait_until(refreshed_token_stored, what="the refreshed token stored")
    await h.herald.outbox.drain()
    workspace = await Workspace.get(external_id=NEW_TEAM)
    assert workspace.token_expires_at == h.clock.now() + TWELVE_HOURS
