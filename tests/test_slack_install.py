"""Connecting Slack workspaces ("Add to Slack", OAuth v2), tokens encrypted at rest, Herald being
removed from a workspace (app_uninstalled / tokens_revoked), `herald workspaces list` and
`herald slack manifest`: over real HTTP against the fake Slack API."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from tortoise import connections

from bot.cli import main
from bot.core.directory import workspaces as workspace_core
from bot.core.compliance.verify import verify_chain
from bot.core.directory.importer import import_directory
from bot.common.secrets import PREFIX, TokenCipher, TokenDecryptError
from bot.core.directory.staff import add_staff
from bot.core.directory.workspaces import add_slack_workspace, deactivate_workspace
from bot.channels.slack_blocks import help_text
from bot.core.notices.reminders import WORKSPACE_REMOVED
from bot.core.notices.views import ACK_ACTION
from bot.handlers.slack.oauth import BOT_SCOPES, make_state
from config.settings import ConfigError, load_settings
from storage import db as storage_db
from storage.models import Acknowledgement, AuditEvent, Delivery, Member, Notice, PlatformAccount, Staff, Workspace
from tests.fakes.slack_signing import event_body, slash_command_body
from tests.query_plans import captured, plan_of
from tests.support import (
    CAM_USER, SAMPLE_DIRECTORY, TEAM, TOKEN, Rig, SlackHarness, directory_csv, seeded_slack, start_harness,
    stop_harness, wait_until,
)
from tests.cli_support import in_process_cli

SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnop"
CLIENT_ID = "1111.2222"
CLIENT_SECRET = "test-client-secret"
PUBLIC_URL = "https://herald.example.com"
REDIRECT_URI = PUBLIC_URL + "/slack/oauth_redirect"
OAUTH_SETTINGS = {"slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET, "secret_key": SECRET_KEY,
                  "public_url": PUBLIC_URL, "slack_oauth_base_url": "https://slack.example"}
COOKIE = "__Host-herald_slack_install"
ROOT = Path(__file__).resolve().parent.parent
SCOPES = {"commands", "chat:write", "im:write", "im:history", "files:write"}
NEW_TEAM, NEW_TOKEN, NEW_USER = "T0NEWCO", "xoxb-newco-very-secret", "UNEW1"
NEWCO_MEMBER = (f"newco,New Co,gold,emea,de,security,small,reseller,cam@vendor.example,nia@newco.example,Nia Ng,"
                f"sales,UTC,en,{NEW_TEAM},{NEW_USER},,")


@pytest.fixture
async def slack(db: str) -> AsyncIterator[SlackHarness]:
    """The Slack harness with "Add to Slack" configured (HTTP only: the install is a browser's)."""
    async with seeded_slack(db, extra_settings=OAUTH_SETTINGS) as harness:
        yield harness


@pytest.fixture
def removals(monkeypatch: pytest.MonkeyPatch) -> list:
    """Finished deactivate_workspace calls (the event listeners run after the HTTP answer)."""
    done: list = []
    real = workspace_core.deactivate_workspace

    async def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = await real(*args, **kwargs)
        done.append(result)
        return result

    monkeypatch.setattr(workspace_core, "deactivate_workspace", counted)
    return done


# ---- helpers --------------------------------------------------------------------------------

async def _start(slack: SlackHarness) -> tuple[str, str, dict[str, list[str]]]:
    """GET /slack/install: (state, the Cookie header to send back, the authorize URL's query)."""
    async with slack.session.get(slack.server.make_url("/slack/install"), allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        location = response.headers["Location"]
        morsel = response.cookies[COOKIE]
    assert location.startswith("https://slack.example/oauth/v2/authorize?")
    query = parse_qs(urlsplit(location).query)
    return query["state"][0], f"{COOKIE}={morsel.value}", query


async def _finish(slack: SlackHarness, *, state: str, code: str = "", cookie: str | None = None,
                  **extra: str) -> tuple[int, str, str]:
    """GET /slack/oauth_redirect as the browser Slack sends back: (status, page, Set-Cookie)."""
    params = {k: v for k, v in {"code": code, "state": state, **extra}.items() if v}
    headers = {"Cookie": cookie} if cookie else {}
    url = slack.server.make_url("/slack/oauth_redirect").with_query(params)
    async with slack.session.get(url, headers=headers, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers.get("Set-Cookie", "")


async def _raw_token(team_id: str) -> str:
    rows = await connections.get("default").execute_query_dict(
        f"SELECT bot_token FROM workspace WHERE external_id = '{team_id}'")
    return rows[0]["bot_token"]


def _newco_code(slack: SlackHarness, code: str = "code-ok", token: str = NEW_TOKEN) -> None:
    slack.fake.add_oauth_code(code, team_id=NEW_TEAM, token=token, team_name="New <Co> & Sons",
                              bot_user_id="UBOTNEW", installer="UINSTALLER", scope=",".join(sorted(SCOPES)),
                              redirect_uri=REDIRECT_URI)
    slack.fake.add_user(NEW_TEAM, NEW_USER)


async def _install_newco(slack: SlackHarness, code: str = "code-ok", token: str = NEW_TOKEN) -> None:
    _newco_code(slack, code, token)
    state, cookie, _ = await _start(slack)
    status, page, _ = await _finish(slack, state=state, code=code, cookie=cookie)
    assert status == 200, page


async def _signed_event(slack: SlackHarness, body: str, **headers: str) -> None:
    """Deliver an event; a retry is a new request, signed at a later time than the first try
    (the same signature again would be a replay, which Herald ignores)."""
    import time

    retry = int(headers.get("X-Slack-Retry-Num", "0"))
    response = await slack.post_signed(body, headers=headers, timestamp=int(time.time()) + retry)
    assert response.status == 200


# ---- the install flow -----------------------------------------------------------------------

async def test_install_redirects_to_slack_with_a_signed_state_bound_to_a_cookie(slack: SlackHarness) -> None:
    async with slack.session.get(slack.server.make_url("/slack/install"), allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Cache-Control"] == "no-store"
        morsel = response.cookies[COOKIE]
        query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["client_id"] == [CLIENT_ID]
    assert set(query["scope"][0].split(",")) == SCOPES
    assert query["redirect_uri"] == [REDIRECT_URI]
    state = query["state"][0]
    version, nonce, expires, signature = state.split(".")
    assert version == "v1" and nonce == morsel.value and signature
    assert int(expires) == int(slack.clock.now().timestamp()) + 600
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Lax"
    assert morsel["path"] == "/" and morsel["max-age"] == "600"
    second, _, _ = await _start(slack)
    assert second != state  # a fresh nonce per install


async def test_good_state_and_code_store_the_workspace_with_an_encrypted_token(slack: SlackHarness) -> None:
    _newco_code(slack)
    state, cookie, _ = await _start(slack)
    status, page, set_cookie = await _finish(slack, state=state, code="code-ok", cookie=cookie)
    assert status == 200, page
    assert "New &lt;Co&gt; &amp; Sons" in page and "<Co>" not in page
    assert set_cookie.startswith(f"{COOKIE}=") and "Max-Age=0" in set_cookie  # single-use: cookie cleared

    (exchange,) = slack.fake.calls_to("oauth.v2.access")
    assert exchange.ok and exchange.args["client_id"] == CLIENT_ID and exchange.args["code"] == "code-ok"
    assert exchange.args["redirect_uri"] == REDIRECT_URI and "client_secret" not in exchange.args

    workspace = await Workspace.get(platform="slack", external_id=NEW_TEAM)
    assert workspace.active and workspace.name == "New <Co> & Sons" and workspace.bot_user_id == "UBOTNEW"
    raw = await _raw_token(NEW_TEAM)
    assert raw.startswith(PREFIX) and NEW_TOKEN not in raw and "newco" not in raw
    assert TokenCipher(SECRET_KEY).open(raw) == NEW_TOKEN
    with pytest.raises(TokenDecryptError):
        TokenCipher("another-secret-key-of-sufficient-length-xyz").open(raw)
    assert await slack.herald.slack_workspaces.token_for(NEW_TEAM) == NEW_TOKEN

    (event,) = await AuditEvent.filter(kind="workspace.installed")
    assert event.actor == f"slack:{NEW_TEAM}/UINSTALLER"
    assert event.data["workspace"] == NEW_TEAM and event.data["reinstalled"] is False
    assert event.data["token_encrypted"] is True and event.data["install_id"]
    assert NEW_TOKEN not in json.dumps(event.data)

    # deliveries to the new workspace use the decrypted token
    await import_directory(directory_csv([NEWCO_MEMBER]), now=slack.clock.now(), actor="test")
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:newco")
    await slack.herald.outbox.drain()
    delivery = await Delivery.get(notice_id=notice_id, member__email="nia@newco.example")
    assert delivery.status == "delivered", delivery.error
    (post,) = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "D" + NEW_USER]
    assert post.ok and post.team_id == NEW_TEAM  # the fake resolved the bearer token to the new team
    assert (await verify_chain()).ok


async def test_add_to_slack_works_over_socket_mode_without_a_signing_secret(db: str) -> None:
    """README "Behind a firewall": with Socket Mode the signing secret is optional, and partners may
    still install through "Add to Slack" (OAuth v2 needs no signing secret). The settings refused
    that set-up; over Socket Mode alone the install stores the workspace."""
    harness = await start_harness(db, transport="socket", extra_settings=OAUTH_SETTINGS)
    try:
        assert not harness.herald.settings.slack_http_enabled
        await _install_newco(harness)
        workspace = await Workspace.get(platform="slack", external_id=NEW_TEAM)
        assert workspace.active and await harness.herald.slack_workspaces.token_for(NEW_TEAM) == NEW_TOKEN
    finally:
        await stop_harness(harness)


async def test_forged_expired_and_foreign_states_are_refused_and_store_nothing(slack: SlackHarness) -> None:
    _newco_code(slack)
    state, cookie, _ = await _start(slack)
    version, nonce, expires, signature = state.split(".")
    tampered_sig = f"{version}.{nonce}.{expires}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    longer = f"{version}.{nonce}.{int(expires) + 3600}.{signature}"
    other_key = make_state("some-other-secret-key-of-enough-length!!", nonce, int(expires))
    _, other_cookie, _ = await _start(slack)  # a different install (another browser's nonce)
    cases = [
        ("tampered signature", tampered_sig, cookie),
        ("tampered expiry", longer, cookie),
        ("signed with another key", other_key, cookie),
        ("garbage", "not-a-state", cookie),
        ("no state", "", cookie),
        ("no cookie (another browser)", state, None),
        ("cookie of another install", state, other_cookie),
    ]
    for label, bad_state, bad_cookie in cases:
        status, page, _ = await _finish(slack, state=bad_state, code="code-ok", cookie=bad_cookie)
        assert status == 400, label
        assert "Start the installation again" in page, label
    status, page, _ = await _finish(slack, state=state, cookie=cookie, error="access_denied")
    assert status == 400 and "access_denied" in page

    slack.clock.advance(minutes=10, seconds=1)
    status, page, _ = await _finish(slack, state=state, code="code-ok", cookie=cookie)
    assert status == 400 and "expired" in page

    assert slack.fake.call_count("oauth.v2.access") == 0  # Slack was never asked
    assert not await Workspace.filter(external_id=NEW_TEAM).exists()
    assert not await AuditEvent.filter(kind="workspace.installed").exists()


async def test_a_used_state_is_refused_even_with_its_cookie(slack: SlackHarness) -> None:
    _newco_code(slack)
    slack.fake.add_oauth_code("code-other", team_id="T0OTHER", token="xoxb-other", team_name="Other")
    state, cookie, _ = await _start(slack)
    status, _, _ = await _finish(slack, state=state, code="code-ok", cookie=cookie)
    assert status == 200

    status, page, _ = await _finish(slack, state=state, code="code-other")  # the browser dropped the cookie
    assert status == 400
    status, page, _ = await _finish(slack, state=state, code="code-other", cookie=cookie)  # a replayed cookie
    assert status == 400 and "already used" in page
    assert slack.fake.call_count("oauth.v2.access") == 1
    assert not await Workspace.filter(external_id="T0OTHER").exists()
    assert await AuditEvent.filter(kind="workspace.installed").count() == 1


async def test_an_install_finds_whether_its_link_was_used_from_an_index_not_the_whole_audit_trail(
        slack: SlackHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """"Add to Slack" asks whether the install link was used (`install_used`: the
    `workspace.installed` events since the link was issued), before the code exchange and again
    inside the install's write transaction. audit_event only grows (~3 million events after a
    year) and had no index on kind or occurred_at, so every install read the whole trail, JSON
    data and all, on SQLite holding the write lock. It reads the (kind, occurred_at) index."""
    _newco_code(slack)
    state, cookie, _ = await _start(slack)

    async def install() -> None:
        status, page, _ = await _finish(slack, state=state, code="code-ok", cookie=cookie)
        assert status == 200, page

    statements = await captured(monkeypatch, install)
    checks = [(sql, values) for sql, values in statements if "audit_event" in sql and "occurred_at" in sql
              and sql.lstrip().upper().startswith("SELECT")]
    assert checks, statements
    plans = [await plan_of(sql, values) for sql, values in checks]
    if storage_db.dialect() == "postgres":  # a sequential scan, a walk of another index filtering on kind,
        # or a walk of the whole (notice_id, kind) index (the statement names no notice)
        whole = [p for p in plans if re.search(r"Seq Scan on audit_event\b", p)
                 or re.search(r"Scan using \w+ on audit_event\s+\([^|]*\|\s+Filter:[^|]*kind", p)
                 or re.search(r"Scan using idx_audit_event_notice_\w+ on audit_event\b", p)]
    else:
        whole = [p for p in plans if re.search(r"\bSCAN audit_event\b", p)]
    assert not whole, f"an install's reuse check reads every audit event ever written: {whole[0]}"


async def test_slack_refusing_the_code_is_a_502_page(slack: SlackHarness) -> None:
    state, cookie, _ = await _start(slack)
    status, page, _ = await _finish(slack, state=state, code="code-nobody-issued", cookie=cookie)
    assert status == 502 and "invalid_code" in page and "Start the installation again" in page

    _newco_code(slack)
    slack.fake.fail_next("oauth.v2.access", status=500)
    state, cookie, _ = await _start(slack)
    status, page, _ = await _finish(slack, state=state, code="code-ok", cookie=cookie)
    assert status == 502
    assert not await Workspace.filter(external_id=NEW_TEAM).exists()
    assert not await AuditEvent.filter(kind="workspace.installed").exists()


ORG, ORG_TOKEN, ORG_WORKSPACE, ORG_USER = "E0ORG", "xoxb-org-wide-token", "T0ORGSALES", "W0ORGPAT"
ORG_MEMBER = (f"orgco,Org Co,gold,emea,de,security,large,distributor,cam@vendor.example,pat@orgco.example,Pat Ode,"
              f"sales,UTC,en,{ORG},{ORG_USER},,")


def _org_authorizations() -> list[dict]:
    """What Slack puts in `authorizations` of an event for an org-wide install (its Events API
    reference for organization-wide apps): the org, the workspace where it happened, and
    `is_enterprise_install: true`."""
    return [{"enterprise_id": ORG, "team_id": ORG_WORKSPACE, "user_id": "WBOT", "is_bot": True,
             "is_enterprise_install": True}]


async def _install_org(slack: SlackHarness) -> tuple[int, str]:
    slack.fake.add_oauth_code("code-org", team_id="", token=ORG_TOKEN, enterprise_install=True, enterprise_id=ORG,
                              enterprise_name="Org <Co>", bot_user_id="WBOT", installer="WADMIN",
                              scope=",".join(sorted(SCOPES)), redirect_uri=REDIRECT_URI)
    slack.fake.add_user(ORG, ORG_USER)  # user ids are org-wide
    state, cookie, _ = await _start(slack)
    status, page, _ = await _finish(slack, state=state, code="code-org", cookie=cookie)
    return status, page


async def test_an_org_wide_install_is_stored_under_the_enterprise_id(slack: SlackHarness) -> None:
    """An Org Admin installs Herald across an Enterprise Grid organisation: oauth.v2.access answers
    with `"team": null`, the enterprise and `is_enterprise_install: true`. The installation is the
    org's, keyed by its enterprise id, and the page says what the admin still has to do."""
    status, page = await _install_org(slack)
    assert status == 200, page
    assert "Org &lt;Co&gt;" in page and "workspaces" in page
    workspace = await Workspace.get(platform="slack", external_id=ORG)
    assert workspace.active and workspace.name == "Org <Co>" and workspace.bot_user_id == "WBOT"
    assert TokenCipher(SECRET_KEY).open(await _raw_token(ORG)) == ORG_TOKEN
    (event,) = await AuditEvent.filter(kind="workspace.installed")
    assert event.actor == f"slack:{ORG}/WADMIN"
    assert event.data["workspace"] == ORG and event.data["enterprise_install"] is True
    assert await slack.herald.slack_workspaces.token_for(ORG) == ORG_TOKEN
    assert (await verify_chain()).ok


async def test_members_of_an_org_wide_install_get_notices_and_acknowledge_them(slack: SlackHarness) -> None:
    """The directory names a member of such an org with the org's enterprise id and their org-wide
    user id: the notice goes out with the org's token, and their click, which Slack sends from the
    workspace where they pressed it (with the enterprise and `is_enterprise_install`, and with
    `team` null when they pressed it outside a workspace), is theirs."""
    status, page = await _install_org(slack)
    assert status == 200, page
    await import_directory(directory_csv([ORG_MEMBER]), now=slack.clock.now(), actor="test")
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:orgco")
    await slack.herald.outbox.drain()
    delivery = await Delivery.get(notice_id=notice_id, member__email="pat@orgco.example")
    assert delivery.status == "delivered", delivery.error
    (post,) = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "D" + ORG_USER]
    assert post.ok and post.team_id == ORG  # the org's token

    org_fields = {"enterprise": {"id": ORG, "name": "Org"}, "is_enterprise_install": True}
    pressed_by = {"user": {"id": ORG_USER, "team_id": ORG_WORKSPACE}}
    response = await slack.click(ACK_ACTION, str(notice_id), user=ORG_USER, team=ORG_WORKSPACE, key="org-ack",
                                 extra={**org_fields, **pressed_by})
    assert response.status == 200, response.body
    (answer,) = await slack.responses("org-ack")
    assert answer.args.get("replace_original") is True, answer.args
    assert await Acknowledgement.filter(notice_id=notice_id, member__email="pat@orgco.example").count() == 1

    # the same press from outside any workspace of the org: `team` is null
    response = await slack.click(ACK_ACTION, str(notice_id), user=ORG_USER, key="org-ack-2",
                                 extra={**org_fields, **pressed_by, "team": None})
    assert response.status == 200, response.body
    (again,) = await slack.responses("org-ack-2")
    assert "not connected" not in json.dumps(again.args) and "warning" not in json.dumps(again.args), again.args
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1


async def test_a_member_of_an_org_wide_install_who_writes_to_herald_is_answered(slack: SlackHarness) -> None:
    status, page = await _install_org(slack)
    assert status == 200, page
    await import_directory(directory_csv([ORG_MEMBER]), now=slack.clock.now(), actor="test")
    event = {"type": "message", "channel_type": "im", "channel": "D" + ORG_USER, "user": ORG_USER, "text": "help",
             "ts": "1700000000.000300", "team": ORG_WORKSPACE, "user_team": ORG_WORKSPACE}
    body = event_body(event, ORG_WORKSPACE, enterprise_id=ORG, authorizations=_org_authorizations())
    assert (await slack.post_signed(body)).status == 200
    (reply,) = await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage")
                                         if c.channel == "D" + ORG_USER], what="the reply")
    assert reply.ok and reply.team_id == ORG
    assert "Herald for partners" in reply.args["text"], reply.args["text"]


async def test_removing_an_org_wide_install_deactivates_the_org(slack: SlackHarness, removals: list) -> None:
    status, page = await _install_org(slack)
    assert status == 200, page
    body = event_body({"type": "app_uninstalled"}, ORG_WORKSPACE, enterprise_id=ORG, event_id="EvORGGONE",
                      authorizations=_org_authorizations())
    await _signed_event(slack, body)
    await wait_until(lambda: len(removals) == 1, what="the uninstall listener")
    workspace = await Workspace.get(platform="slack", external_id=ORG)
    assert workspace.active is False and workspace.bot_token == ""
    assert not await Workspace.filter(external_id=ORG_WORKSPACE).exists()


ORG_OPS = "T0ORGOPS"
ORG_WORKSPACE_MEMBER = ORG_MEMBER.replace(f",{ORG},{ORG_USER},", f",{ORG_WORKSPACE},{ORG_USER},")


def _team_access_event(kind: str, team_ids: list[str]) -> str:
    """team_access_granted / team_access_revoked as Slack documents them for an org-ready app: the
    envelope names the org (`enterprise_id`, `"team_id": null`), the event the workspaces."""
    return event_body({"type": kind, "team_ids": team_ids, "event_ts": "1700000000.000100"}, None,
                      enterprise_id=ORG, authorizations=[{"enterprise_id": ORG, "team_id": None, "user_id": "WBOT",
                                                          "is_bot": True, "is_enterprise_install": True}])


async def test_a_member_named_under_a_workspace_of_the_org_is_reached_through_the_org_wide_install(
        slack: SlackHarness) -> None:
    """The directory names a member of the org by the workspace they work in (T...), not the org
    (E...). Herald learnt at the install (auth.teams.list) that the org-wide install was added to
    that workspace: the notice goes out with the org's token, in the org's lane, and their
    Acknowledge is theirs."""
    slack.fake.grant_org_teams(ORG, {ORG_WORKSPACE: "Org Sales"})
    status, page = await _install_org(slack)
    assert status == 200, page
    assert [c.ok for c in slack.fake.calls_to("auth.teams.list")] == [True]
    granted = await AuditEvent.get(kind="workspace.team_access_granted")
    assert granted.data["workspace"] == ORG and granted.data["teams"] == [ORG_WORKSPACE]
    await import_directory(directory_csv([ORG_WORKSPACE_MEMBER]), now=slack.clock.now(), actor="test")

    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:orgco")
    await slack.herald.outbox.drain()
    delivery = await Delivery.get(notice_id=notice_id, member__email="pat@orgco.example")
    assert delivery.status == "delivered", delivery.error
    assert delivery.workspace_external_id == ORG  # the org's lane
    (post,) = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == "D" + ORG_USER]
    assert post.ok and post.team_id == ORG

    response = await slack.click(ACK_ACTION, str(notice_id), user=ORG_USER, team=ORG_WORKSPACE, key="ws-ack",
                                 extra={"enterprise": {"id": ORG, "name": "Org"}, "is_enterprise_install": True,
                                        "user": {"id": ORG_USER, "team_id": ORG_WORKSPACE}})
    assert response.status == 200, response.body
    (answer,) = await slack.responses("ws-ack")
    assert answer.args.get("replace_original") is True, answer.args
    assert await Acknowledgement.filter(notice_id=notice_id, member__email="pat@orgco.example").count() == 1
    assert (await verify_chain()).ok


async def test_team_access_events_add_and_remove_workspaces_of_the_org(slack: SlackHarness) -> None:
    """The Org Admin adds the org-wide install to a workspace after the install (team_access_granted),
    then removes it (team_access_revoked): a member named under that workspace gets notices only
    in between."""
    status, page = await _install_org(slack)
    assert status == 200, page
    ops_member = ORG_MEMBER.replace(f",{ORG},{ORG_USER},", f",{ORG_OPS},{ORG_USER},")
    await import_directory(directory_csv([ops_member]), now=slack.clock.now(), actor="test")
    rig = Rig(slack.fake, slack.herald, slack.clock)

    slack.fake.grant_org_teams(ORG, {ORG_OPS: "Org Ops"})
    await _signed_event(slack, _team_access_event("team_access_granted", [ORG_OPS]))
    await wait_until(lambda: AuditEvent.filter(kind="workspace.team_access_granted").exists(), what="the grant")
    notice_id = await rig.broadcast("org:orgco")
    await slack.herald.outbox.drain()
    delivery = await Delivery.get(notice_id=notice_id)
    assert delivery.status == "delivered" and delivery.workspace_external_id == ORG, delivery.error

    slack.fake.revoke_org_teams(ORG, [ORG_OPS])
    await _signed_event(slack, _team_access_event("team_access_revoked", [ORG_OPS]))
    await wait_until(lambda: AuditEvent.filter(kind="workspace.team_access_revoked").exists(), what="the revocation")
    later = await rig.broadcast("org:orgco")
    await slack.herald.outbox.drain()
    delivery = await Delivery.get(notice_id=later)
    assert delivery.status == "failed" and ORG_OPS in delivery.error, delivery.error
    assert (await verify_chain()).ok


@pytest.mark.parametrize("filed_under", [ORG, ORG_WORKSPACE])
async def test_a_cam_of_an_org_wide_install_is_recognised_by_herald_command(slack: SlackHarness,
                                                                           filed_under: str) -> None:
    """A CAM whose Slack is a workspace of an Enterprise Grid org with Herald installed org-wide
    runs /herald there: Slack sends the workspace's team_id with the org's enterprise_id and
    is_enterprise_install. Their staff row names the org (E...) or, once the org-wide install was
    granted it, the workspace (T...): either way they are staff, not an unknown person."""
    slack.fake.grant_org_teams(ORG, {ORG_WORKSPACE: "Org Sales"})
    status, page = await _install_org(slack)
    assert status == 200, page
    await add_staff("kim@vendor.example", "cam", slack_user="W0ORGKIM", slack_team=filed_under,
                    now=slack.clock.now())
    body = slash_command_body(text="help", user_id="W0ORGKIM", team_id=ORG_WORKSPACE, enterprise_id=ORG,
                              is_enterprise_install="true", response_url=slack.fake.response_url("org-help"))
    response = await slack.post_signed(body)
    assert response.status == 200
    assert response.body == help_text(), response.body


async def test_install_is_404_without_client_credentials(db: str) -> None:
    harness = await start_harness(db)
    try:
        for path in ("/slack/install", "/slack/oauth_redirect?code=x&state=y"):
            async with harness.session.get(harness.server.make_url(path), allow_redirects=False) as response:
                text = await response.text()
                assert response.status == 404
                assert "HERALD_SLACK_CLIENT_ID" in text and len(text.strip().splitlines()) == 1
    finally:
        await stop_harness(harness)


# ---- Herald removed from a workspace ----------------------------------------------------------

async def test_app_uninstalled_stops_the_plain_messages_waiting_for_the_workspace_too(slack: SlackHarness,
                                                                                      removals: list) -> None:
    """Anna's first onboarding step waits overnight for her working hours when Herald is removed
    from her workspace: it fails then, with the reason her notice copies get, not the next morning
    (and never with a request), and the journey records why."""
    from bot.core.onboarding.journeys import parse_journeys, run_journeys
    from storage.models import JourneyStep, OutboundMessage

    monday_berlin = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
    slack.clock.set(monday_berlin)
    await Member.all().update(joined_at=datetime(2030, 1, 1, tzinfo=UTC))
    await Member.filter(email="anna@acme.example").update(joined_at=monday_berlin)
    steps = parse_journeys({"journeys": {"default": {"steps": [
        {"key": "portal", "after_days": 0, "title": "Open the portal", "message": "Sign in once."}]}}}, source="test")
    assert (await run_journeys(slack.herald.channels, slack.clock.now(), catalog=steps))["steps"] == 1
    slack.clock.set(datetime(2026, 1, 5, 19, 0, tzinfo=UTC))  # 20:00 in Berlin: held until her morning
    await slack.herald.outbox.drain()
    (message,) = await OutboundMessage.filter(purpose="journey_step")
    assert message.status == "pending" and message.next_attempt_at > slack.clock.now()

    await _signed_event(slack, event_body({"type": "app_uninstalled"}, TEAM, event_id="EvUNINSTALL9"))
    await wait_until(lambda: len(removals) == 1, what="the uninstall listener")
    await slack.herald.outbox.drain()

    reason = f"Herald was removed from Slack workspace {TEAM}; reconnect it to deliver"
    message = await OutboundMessage.get(id=message.id)
    assert (message.status, message.error) == ("failed", reason)
    (step,) = await JourneyStep.filter(member__email="anna@acme.example")
    assert (step.status, step.error) == ("failed", reason)
    assert slack.fake.calls_to("chat.postMessage") == []


async def test_app_uninstalled_deactivates_and_fails_waiting_deliveries_once(slack: SlackHarness,
                                                                             removals: list) -> None:
    # the seeded workspace was stored without a key: a plaintext row from before encryption, still read
    assert not (await _raw_token(TEAM)).startswith(PREFIX)
    assert await slack.herald.slack_workspaces.token_for(TEAM) == "xoxb-partner-token"
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast()
    waiting = await Delivery.filter(notice_id=notice_id, workspace_external_id=TEAM).order_by("id")
    assert len(waiting) == 4 and {d.status for d in waiting} == {"pending"}
    await Delivery.filter(id=waiting[0].id).update(status="sending", claimed_by="worker-x",
                                                   claimed_until=slack.clock.now())
    ed_before = await Delivery.get(notice_id=notice_id, member__email="ed@keys.example")
    events_before = await AuditEvent.all().count()

    body = event_body({"type": "app_uninstalled"}, TEAM, event_id="EvUNINSTALL1")
    await _signed_event(slack, body)
    await wait_until(lambda: len(removals) == 1, what="the uninstall listener")

    reason = f"Herald was removed from Slack workspace {TEAM}; reconnect it to deliver"
    workspace = await Workspace.get(platform="slack", external_id=TEAM)
    assert workspace.active is False and workspace.bot_token == ""
    assert await slack.herald.slack_workspaces.token_for(TEAM) is None  # the cache was dropped
    after = await Delivery.filter(notice_id=notice_id, workspace_external_id=TEAM).order_by("id")
    assert [(d.status, d.error, d.claimed_by) for d in after] == [("failed", reason, "")] * 4
    ed_after = await Delivery.get(id=ed_before.id)
    assert (ed_after.status, ed_after.error) == (ed_before.status, ed_before.error)
    notice = await Notice.get(id=notice_id)
    assert notice.status == "sent" and notice.completed_at is not None

    (uninstalled,) = await AuditEvent.filter(kind="workspace.uninstalled")
    assert uninstalled.data == {"platform": "slack", "workspace": TEAM, "reason": "app_uninstalled",
                                "failed_deliveries": 4}
    failed = [e for e in await AuditEvent.filter(kind="delivery.failed").order_by("seq")
              if e.data.get("reason") == reason]
    assert sorted(e.data["delivery_id"] for e in failed) == [d.id for d in after]
    assert all(e.notice_id == notice_id for e in failed)
    assert uninstalled.seq < min(e.seq for e in failed)  # one transaction, one append
    events_after = await AuditEvent.all().count()
    assert events_after == events_before + 5

    # Slack retries the event (we answered, but it may not have seen it): the same event_id is
    # dropped before the listener (decided before the acknowledgement)
    snapshot = [(d.id, d.status, d.error, d.updated_at) for d in after]
    await _signed_event(slack, body, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert len(removals) == 1
    # the same removal told again as another event: the listener runs and nothing changes
    await _signed_event(slack, event_body({"type": "app_uninstalled"}, TEAM, event_id="EvUNINSTALL2"))
    await wait_until(lambda: len(removals) == 2, what="the second event's listener")
    assert removals[1].changed is False
    assert await AuditEvent.all().count() == events_after
    again = await Delivery.filter(notice_id=notice_id, workspace_external_id=TEAM).order_by("id")
    assert [(d.id, d.status, d.error, d.updated_at) for d in again] == snapshot
    assert (await verify_chain()).ok

    await slack.herald.outbox.drain()
    assert not [c for c in slack.fake.calls_to("chat.postMessage") if c.team_id == TEAM]


async def test_tokens_revoked_deactivates_and_a_reinstall_reconnects(slack: SlackHarness, removals: list) -> None:
    await _install_newco(slack)
    await import_directory(directory_csv([NEWCO_MEMBER]), now=slack.clock.now(), actor="test")
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:newco")
    (waiting,) = await Delivery.filter(notice_id=notice_id, workspace_external_id=NEW_TEAM)
    assert waiting.status == "pending"

    # only a user's token revoked: Herald's bot token still works
    await _signed_event(slack, event_body({"type": "tokens_revoked", "tokens": {"oauth": ["UX1"]}}, NEW_TEAM))
    revoked = event_body({"type": "tokens_revoked", "tokens": {"oauth": ["UX1"], "bot": ["UBOTNEW"]}}, NEW_TEAM)
    await _signed_event(slack, revoked)
    await wait_until(lambda: len(removals) == 1, what="the tokens_revoked listener")
    assert len(removals) == 1

    workspace = await Workspace.get(external_id=NEW_TEAM)
    assert workspace.active is False and workspace.bot_token == ""
    failed = await Delivery.get(id=waiting.id)
    assert failed.status == "failed"
    assert failed.error == f"Herald was removed from Slack workspace {NEW_TEAM}; reconnect it to deliver"
    (uninstalled,) = await AuditEvent.filter(kind="workspace.uninstalled")
    assert uninstalled.data["reason"] == "tokens_revoked" and uninstalled.data["failed_deliveries"] == 1
    assert await AuditEvent.filter(kind="delivery.failed", notice_id=notice_id).count() == 1

    await _signed_event(slack, revoked, **{"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"})
    assert len(removals) == 1  # Slack's retry, the same event_id: dropped before the listener
    again = event_body({"type": "tokens_revoked", "tokens": {"oauth": ["UX1"], "bot": ["UBOTNEW"]}}, NEW_TEAM)
    await _signed_event(slack, again)  # told again as another event: the listener changes nothing
    await wait_until(lambda: len(removals) == 2, what="the second event's listener")
    assert removals[1].changed is False and await AuditEvent.filter(kind="workspace.uninstalled").count() == 1

    # "Add to Slack" again: active with the new (encrypted) token
    await _install_newco(slack, code="code-again", token="xoxb-newco-second")
    workspace = await Workspace.get(external_id=NEW_TEAM)
    assert workspace.active and workspace.bot_token.startswith(PREFIX)
    assert await slack.herald.slack_workspaces.token_for(NEW_TEAM) == "xoxb-newco-second"
    reinstall = await AuditEvent.filter(kind="workspace.installed").order_by("-seq").first()
    assert reinstall is not None and reinstall.data["reinstalled"] is True


@pytest.mark.parametrize("removal", [{"type": "app_uninstalled"},
                                     {"type": "tokens_revoked", "tokens": {"bot": ["UBOTNEW"]}}],
                         ids=["app_uninstalled", "tokens_revoked"])
async def test_a_late_retry_of_a_removal_does_not_remove_the_installation_made_after_it(
        slack: SlackHarness, removals: list, removal: dict) -> None:
    """A partner's admin removes Herald and adds it again a minute later. The removal's event
    did not get its 200 the first time and Slack retries it (after 1 and 5 minutes), and Slack does
    not promise events in order: the retry arrives after the reinstall. It deactivated the
    workspace whatever its `event_time`, wiping the new token and failing every copy waiting for
    the partner. A removal older than the installation Herald holds is now ignored (audited);
    a later one still removes it."""
    await _install_newco(slack)
    await import_directory(directory_csv([NEWCO_MEMBER]), now=slack.clock.now(), actor="test")
    removed_at = int(slack.clock.now().timestamp())  # the admin removes Herald; the event's first try is lost
    slack.clock.advance(minutes=1)
    await _install_newco(slack, code="code-back", token="xoxb-newco-reinstalled")
    slack.clock.advance(minutes=4)
    await _signed_event(slack, event_body(removal, NEW_TEAM, event_id="EvREMOVED1", event_time=removed_at),
                        **{"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"})
    await wait_until(lambda: len(removals) == 1, what="the removal's listener")
    assert removals[0].changed is False
    workspace = await Workspace.get(external_id=NEW_TEAM)
    assert workspace.active and workspace.bot_token, (
        "the installation made after the removal was deactivated by the removal's late retry")
    (ignored,) = await AuditEvent.filter(kind="workspace.removal_ignored")
    assert ignored.data["reason"] == removal["type"] and ignored.data["workspace"] == NEW_TEAM
    assert ignored.data["removed_at"] < ignored.data["installed_at"]
    assert not await AuditEvent.filter(kind="workspace.uninstalled").exists()
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:newco")
    await slack.herald.outbox.drain()
    delivered = await Delivery.get(notice_id=notice_id, workspace_external_id=NEW_TEAM)
    assert delivered.status == "delivered", delivered.error

    # a removal after the reinstall removes it
    await _signed_event(slack, event_body(removal, NEW_TEAM, event_time=int(slack.clock.now().timestamp()) + 1))
    await wait_until(lambda: len(removals) == 2, what="the second removal's listener")
    assert removals[1].changed and not (await Workspace.get(external_id=NEW_TEAM)).active


async def test_deactivating_a_workspace_known_only_from_the_env_token(db: str) -> None:
    from bot.common.clock import ManualClock

    now = ManualClock().now()
    first = await deactivate_workspace("slack", "T0ENVONLY", reason="app_uninstalled", now=now)
    assert first.changed and first.failed_deliveries == 0
    row = await Workspace.get(external_id="T0ENVONLY")
    assert row.active is False and row.bot_token == ""  # the revoked env token is no longer the fallback
    second = await deactivate_workspace("slack", "T0ENVONLY", reason="app_uninstalled", now=now)
    assert second.changed is False
    assert await AuditEvent.filter(kind="workspace.uninstalled").count() == 1


async def test_a_member_on_slack_and_teams_gets_notices_on_teams_once_herald_is_removed_from_their_slack(
        rig: Rig) -> None:
    """Anna has a Slack account (workspace T0PARTNER) and a Teams account; her partner removes
    Herald from the Slack workspace. With HERALD_PLATFORM_POLICY=preferred she gets one copy, and
    it is written for the platform that can deliver it (Teams), not for the dead workspace, where
    it could only fail."""
    anna = await Member.get(email="anna@acme.example")
    await PlatformAccount.create(member=anna, platform="teams", workspace_external_id="tenant-acme",
                                 user_id="aad-anna", dm_channel="a:conv-anna", service_url="http://127.0.0.1:9/")
    gone = await deactivate_workspace("slack", TEAM, reason="app_uninstalled", now=rig.clock.now(), actor="test")
    assert gone.changed

    notice_id = await rig.broadcast("member:anna@acme.example")

    rows = await Delivery.filter(notice_id=notice_id, member=anna, kind="notice").values_list("platform", "status")
    assert rows == [("teams", "pending")], (
        f"Anna's copies: {rows}; her Slack workspace uninstalled Herald, so a Slack copy cannot be delivered "
        "while her Teams account can be reached")


async def test_a_copy_waiting_when_herald_is_removed_from_slack_goes_to_the_members_teams_account(teams) -> None:  # noqa: ANN001
    """Gus is on Slack and Teams; the recall for him is queued for Slack (the first platform on
    file) when his partner removes Herald from the Slack workspace. His copy failed ("reconnect it
    to deliver") although Herald reaches him in Teams, where every later notice goes: the
    must-know notice never reached him unless the partner reconnected Slack. A copy still waiting
    is now moved to the member's account Herald can reach (`delivery.rerouted`) and delivered
    there, once: reconnecting Slack sends nothing more."""
    from tests.support import broadcast

    notice_id = await broadcast(teams.herald, teams.clock, "member:gus@teamsco.example")
    (copy,) = await Delivery.filter(notice_id=notice_id)
    assert (copy.platform, copy.status) == ("slack", "pending")

    await deactivate_workspace("slack", TEAM, reason="app_uninstalled", now=teams.clock.now(), actor="test")
    await teams.herald.outbox.drain()
    copy = await Delivery.get(id=copy.id)
    assert (copy.platform, copy.status) == ("teams", "delivered"), f"Gus's copy: {copy.platform} {copy.status} ({copy.error})"
    assert len(teams.connector.activities("a:conv-aad-gus")) == 1
    (rerouted,) = await AuditEvent.filter(kind="delivery.rerouted")
    assert rerouted.data["delivery_id"] == copy.id and rerouted.data["to_platform"] == "teams"

    teams.slack.add_workspace(TEAM, "xoxb-partner-again")
    await add_slack_workspace(TEAM, "xoxb-partner-again", now=teams.clock.now(), actor="test")  # reconnected
    await teams.herald.outbox.drain()
    assert not teams.slack.calls_to("chat.postMessage") and len(await Delivery.filter(notice_id=notice_id)) == 1
    assert (await verify_chain()).ok


async def test_removing_herald_from_a_large_workspace_moves_its_waiting_copies_in_one_statement(
        teams, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    """The copies moved to the members' Teams accounts when Herald is removed from their Slack
    workspace were updated one UPDATE a row inside the removal's transaction: a 5,000-member
    workspace's uninstall was 5,000 statements (round trips on PostgreSQL) while it held the locks
    on the rows. They are moved all at once (SQLite: one executemany), with the same result."""
    import logging

    from tests.support import broadcast
    from tests.teams_support import TENANT

    await import_directory(directory_csv([
        f"teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,p{i}@teamsco.example,P {i},"
        f"support,Europe/Paris,fr,{TEAM},UP{i},{TENANT},aad-p{i}" for i in range(30)]),
        now=teams.clock.now(), actor="test")
    notice_id = await broadcast(teams.herald, teams.clock, "org:teamsco")
    ids = await Delivery.filter(notice_id=notice_id, platform="slack", status="pending").values_list("id", flat=True)
    waiting = len(ids)
    assert waiting > 30  # and Gus's

    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):  # every statement the ORM's clients send
        await deactivate_workspace("slack", TEAM, reason="app_uninstalled", now=teams.clock.now(), actor="test")
    statements = [str(r.args[0]) for r in caplog.records if r.name == "tortoise.db_client" and r.args]
    moves = [sql for sql in statements if re.match(r'\s*UPDATE "?delivery"?', sql, re.I) and "platform" in sql]
    assert len(moves) == 1, f"{len(moves)} statements to move {waiting} copies"
    copies = await Delivery.filter(id__in=ids).values_list("platform", "workspace_external_id", "status", "error",
                                                          "claimed_until")
    assert copies == [("teams", TENANT, "pending", "", None)] * waiting
    owners = await Delivery.filter(id__in=ids).values_list("member_id", "account__member_id", "account__platform")
    assert all(member == owner and platform == "teams" for member, owner, platform in owners)  # their own accounts
    assert await AuditEvent.filter(kind="delivery.rerouted").count() == waiting
    await teams.herald.outbox.drain()
    assert await Delivery.filter(id__in=ids, status="delivered").count() == waiting


def test_an_account_herald_cannot_reach_comes_last_whatever_the_platform() -> None:
    """reach.choose_account, the one rule for every message to a person: reachable accounts
    first (preferred platform, then Slack, then Teams, then the oldest); when none is reachable
    the best is still chosen, so its failure names the removed workspace."""
    from types import SimpleNamespace

    from bot.core.directory.reach import choose_account

    slack = SimpleNamespace(id=1, platform="slack", workspace_external_id="T1")
    teams = SimpleNamespace(id=2, platform="teams", workspace_external_id="tenant")
    assert choose_account([teams, slack]) is slack
    assert choose_account([slack, teams], preferred="teams") is teams
    assert choose_account([slack, teams], unreachable={("slack", "T1")}) is teams
    assert choose_account([slack, teams], preferred="slack", unreachable={("slack", "T1")}) is teams
    assert choose_account([slack, teams], unreachable={("slack", "T1"), ("teams", "tenant")}) is slack
    assert choose_account([]) is None


async def test_a_cam_on_slack_and_teams_is_reached_on_teams_once_herald_is_removed_from_their_slack(
        db: str) -> None:
    """Escalations, hand-offs and notes to a notice's author use the same rule for staff."""
    from bot.common.clock import ManualClock
    from bot.core.directory.reach import staff_recipient
    from storage.models import Staff

    cam = await Staff.create(email="cam@vendor.example", role="cam", slack_team_id="T0VENDOR", slack_user_id="UCAM",
                             teams_tenant_id="tenant-vendor", teams_aad_object_id="aad-cam")
    channels = {"slack": object(), "teams": object()}
    found = await staff_recipient(cam, channels)  # type: ignore[arg-type]
    assert found is not None and found[0] is channels["slack"]

    await deactivate_workspace("slack", "T0VENDOR", reason="app_uninstalled", now=ManualClock().now())
    found = await staff_recipient(cam, channels)  # type: ignore[arg-type]
    assert found is not None and found[0] is channels["teams"] and found[1].user_id == "aad-cam"


async def test_a_sealed_token_without_the_key_is_not_used(db: str, caplog: pytest.LogCaptureFixture) -> None:
    from bot.channels.slack import SlackWorkspaces
    from bot.common.clock import ManualClock

    await add_slack_workspace("T0SEALED", "xoxb-sealed", now=ManualClock().now(), actor="test",
                              cipher=TokenCipher(SECRET_KEY))
    assert (await _raw_token("T0SEALED")).startswith(PREFIX)
    with_key = SlackWorkspaces("http://unused/", cipher=TokenCipher(SECRET_KEY))
    assert await with_key.token_for("T0SEALED") == "xoxb-sealed"
    assert await SlackWorkspaces("http://unused/", cipher=TokenCipher(None)).token_for("T0SEALED") is None
    assert "HERALD_SECRET_KEY is not set" in caplog.text


def test_token_cipher_round_trip_and_plaintext_passthrough() -> None:
    cipher = TokenCipher(SECRET_KEY)
    sealed = cipher.seal("xoxb-1")
    assert sealed.startswith(PREFIX) and sealed != cipher.seal("xoxb-1")  # random IV
    assert cipher.open(sealed) == "xoxb-1" and cipher.seal(sealed) == sealed
    assert cipher.open("xoxb-plain") == "xoxb-plain"  # rows from before encryption
    plain = TokenCipher(None)
    assert plain.seal("xoxb-2") == "xoxb-2" and not plain.encrypts
    with pytest.raises(TokenDecryptError):
        plain.open(sealed)


# ---- configuration ----------------------------------------------------------------------------

def test_client_secret_needs_a_secret_key() -> None:
    with pytest.raises(ConfigError, match="HERALD_SECRET_KEY is required when HERALD_SLACK_CLIENT_SECRET is set"):
        load_settings(slack_signing_secret="s", slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET)
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_settings(slack_signing_secret="s", slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET,
                      secret_key="short")
    with pytest.raises(ConfigError, match="must be set together"):
        load_settings(slack_signing_secret="s", slack_client_id=CLIENT_ID, secret_key=SECRET_KEY)
    with pytest.raises(ConfigError, match="HERALD_PUBLIC_URL"):
        load_settings(public_url="herald.example.com")
    ok = load_settings(slack_signing_secret="s", **OAUTH_SETTINGS, slack_api_url="https://slack.com/api/")
    assert ok.slack_oauth_enabled and ok.public_url == PUBLIC_URL


def test_missing_secret_key_is_one_line_and_exit_2() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env = {**clean, "HERALD_SLACK_SIGNING_SECRET": "s", "HERALD_SLACK_CLIENT_ID": CLIENT_ID,
           "HERALD_SLACK_CLIENT_SECRET": CLIENT_SECRET}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "workspaces", "list"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2
    assert "HERALD_SECRET_KEY is required" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---- command line -----------------------------------------------------------------------------

@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return in_process_cli(monkeypatch, db_url)


def _raw_tokens(db_url: str) -> dict[str, str]:
    async def read() -> dict[str, str]:
        await storage_db.connect(db_url, run_migrations=False)
        try:
            return {w.external_id: w.bot_token for w in await Workspace.all()}
        finally:
            await storage_db.close()
    return asyncio.run(read())


def test_workspaces_list_and_cli_added_tokens_encrypted(cli: CliRunner, db_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    empty = cli.invoke(main, ["workspaces", "list"])
    assert empty.exit_code == 0 and "no workspaces connected" in empty.output

    # zero-config: no HERALD_SECRET_KEY, the token is stored as it is, and a warning says so (README)
    added = cli.invoke(main, ["slack", "add-workspace", "T0PLAIN", "--token", "xoxb-plain-token"])
    assert added.exit_code == 0, added.output
    assert added.stderr == "herald: HERALD_SECRET_KEY is not set: the token is stored in the database in plaintext\n"
    monkeypatch.setenv("HERALD_SECRET_KEY", SECRET_KEY)
    added = cli.invoke(main, ["slack", "add-workspace", "T0CLI", "--token", "xoxb-cli-token", "--name", "CLI Co"])
    assert added.exit_code == 0 and added.stderr == "", added.output

    raw = _raw_tokens(db_url)
    assert raw["T0PLAIN"] == "xoxb-plain-token"
    assert raw["T0CLI"].startswith(PREFIX) and "xoxb-cli-token" not in raw["T0CLI"]
    assert TokenCipher(SECRET_KEY).open(raw["T0CLI"]) == "xoxb-cli-token"

    listed = cli.invoke(main, ["workspaces", "list"])
    assert listed.exit_code == 0, listed.output
    assert "xoxb-" not in listed.output and PREFIX not in listed.output
    lines = {line.split()[1]: line for line in listed.output.splitlines()}
    assert set(lines) == {"T0CLI", "T0PLAIN"}
    assert lines["T0CLI"].split()[:5] == ["slack", "T0CLI", "CLI", "Co", "active"]
    assert "token:encrypted" in lines["T0CLI"] and "token:plaintext" in lines["T0PLAIN"]
    assert "installed 20" in lines["T0CLI"] and "updated 20" in lines["T0CLI"]

    as_json = cli.invoke(main, ["workspaces", "list", "--json"])
    rows = {r["id"]: r for r in json.loads(as_json.output)}
    assert rows["T0CLI"]["name"] == "CLI Co" and rows["T0CLI"]["active"] is True
    assert rows["T0CLI"]["token"] == "encrypted" and rows["T0CLI"]["installed_at"]
    assert "xoxb-" not in as_json.output


# Every Slack Web API method Herald calls, with the bot scope Slack's method reference names for it
# (None: no scope). conversations.history is only called on a member's DM, hence im:history.
SLACK_METHOD_SCOPES: dict[str, str | None] = {
    "chat.postMessage": "chat:write", "chat.update": "chat:write", "conversations.open": "im:write",
    "conversations.history": "im:history", "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write", "views.open": None, "views.publish": None,
    "auth.test": None, "auth.teams.list": None, "oauth.v2.access": None,
    "apps.connections.open": None,  # Socket Mode: the app-level token's connections:write, not a bot scope
}
# Beside the methods: the /herald command, and the message.im event (questions in a DM).
SCOPES_BESIDE_METHODS = {"commands", "im:history"}
_SLACK_FAMILIES = r"(?:admin|apps|auth|bots|chat|conversations|dnd|emoji|files|oauth|pins|reactions|reminders|" \
                  r"search|team|usergroups|users|views)"


def _slack_methods_called_by_herald() -> set[str]:
    """The Slack Web API methods named in bot/: slack_sdk calls (`client.chat_postMessage(`) and
    method names passed as strings (`post_json(token, "chat.update", ...)`)."""
    called: set[str] = set()
    for source in (ROOT / "bot").rglob("*.py"):
        text = source.read_text()
        for family, rest in re.findall(rf"\.({_SLACK_FAMILIES})_([a-zA-Z0-9_]+)\(", text):
            called.add(f"{family}.{rest.replace('_', '.') if family in ('apps', 'auth', 'oauth') else rest}")
        called |= set(re.findall(rf"[\"']({_SLACK_FAMILIES}\.[a-zA-Z0-9.]+[a-zA-Z])[\"']", text))
    return called


def test_the_manifest_asks_for_exactly_the_scopes_herald_uses() -> None:
    """`herald slack manifest`, "Add to Slack" and the doctor asked for `users:read` and
    `users:read.email` ("View email addresses of people in the workspace" on every partner's
    install screen), though no Slack method Herald calls needs them. Each method found in bot/ must
    be in SLACK_METHOD_SCOPES (a new call: add it with its scope from Slack's method reference)."""
    called = _slack_methods_called_by_herald()
    assert called - SLACK_METHOD_SCOPES.keys() == set(), "a Slack method whose scope is not known here"
    needed = {SLACK_METHOD_SCOPES[m] for m in called} - {None} | SCOPES_BESIDE_METHODS
    assert set(BOT_SCOPES) == needed == SCOPES
    result = CliRunner().invoke(main, ["slack", "manifest", "--url", "https://herald.example.com"])
    assert set(json.loads(result.output)["oauth_config"]["scopes"]["bot"]) == needed


def test_slack_manifest() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["slack", "manifest", "--url", "https://herald.example.com/"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    events_url = "https://herald.example.com/slack/events"
    features, settings = manifest["features"], manifest["settings"]
    assert manifest["display_information"]["name"] == "Herald"
    assert features["bot_user"]["display_name"] == "Herald"
    (command,) = features["slash_commands"]
    assert command["command"] == "/herald" and command["url"] == events_url
    assert features["app_home"]["messages_tab_enabled"] and features["app_home"]["home_tab_enabled"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": events_url}
    assert settings["event_subscriptions"]["request_url"] == events_url
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_home_opened", "message.im", "app_uninstalled", "tokens_revoked", "team_access_granted",
        "team_access_revoked"}
    assert settings["org_deploy_enabled"] is True
    assert manifest["oauth_config"]["redirect_urls"] == ["https://herald.example.com/slack/oauth_redirect"]
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == SCOPES

    yaml_out = runner.invoke(main, ["slack", "manifest", "--url", "https://h.example.com", "--format", "yaml"])
    import yaml

    interactivity = yaml.safe_load(yaml_out.output)["settings"]["interactivity"]
    assert interactivity["request_url"] == "https://h.example.com/slack/events"

    local = runner.invoke(main, ["slack", "manifest", "--url", "http://localhost:3978"])
    assert local.exit_code == 0 and "http://localhost:3978/slack/events" in local.output
    for bad in ("http://herald.example.com", "ftp://herald.example.com", "herald.example.com",
                "https://herald.example.com/?x=1"):
        refused = runner.invoke(main, ["slack", "manifest", "--url", bad])
        assert refused.exit_code == 2, bad
        assert "--url" in refused.output


# ---- Herald removed without the event, and reconnected ---------------------------------------

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def _event(slack: SlackHarness, body: str) -> None:
    response = await slack.post_signed(body, timestamp=int(time.time()))
    assert response.status == 200, response.body


@pytest.mark.parametrize("answer", ["account_inactive", "token_revoked"])
async def test_a_send_refused_because_herald_was_removed_stops_the_workspace(slack_http: SlackHarness,
                                                                           answer: str) -> None:
    """Herald missed `app_uninstalled` / `tokens_revoked` (down for the hour Slack retries events),
    so the first it learns of the removal is Slack's answer to chat.postMessage: `account_inactive`
    (a bot token of an uninstalled app) or `token_revoked`. That answer is handled as the event is
    (README "Connecting Slack"): the workspace is deactivated (audited, once), the broadcast's other
    copies fail with the removal's reason, and the next notice's copies fail without a request."""
    slack = slack_http
    rig = Rig(slack.fake, slack.herald, slack.clock)
    if answer == "token_revoked":
        slack.fake.revoke(TOKEN)
    else:
        slack.fake.uninstall(TOKEN)

    first = await rig.broadcast("org:acme")  # Anna and Bo
    await slack.herald.outbox.drain()
    failed = await Delivery.filter(notice_id=first, workspace_external_id=TEAM)
    reason = f"Herald was removed from Slack workspace {TEAM}; reconnect it to deliver"
    assert failed and {(d.status, d.error) for d in failed} == {("failed", reason)}
    refused = len(slack.fake.calls_to("chat.postMessage"))
    assert refused >= 1 and {c.error for c in slack.fake.calls_to("chat.postMessage")} == {answer}

    second = await rig.broadcast("org:bolt,keys")  # Cy and Di, same workspace
    await slack.herald.outbox.drain()
    workspace = await Workspace.get(platform="slack", external_id=TEAM)
    assert len(slack.fake.calls_to("chat.postMessage")) == refused and not workspace.active
    (uninstalled,) = await AuditEvent.filter(kind="workspace.uninstalled")
    assert uninstalled.data["reason"] == answer
    rows = await Delivery.filter(notice_id=second, workspace_external_id=TEAM)
    assert rows and {(d.status, d.error) for d in rows} == {("failed", reason)}
    assert (await verify_chain()).ok


async def test_a_refusal_of_a_token_replaced_since_leaves_the_workspace_connected(db: str) -> None:
    """A send refused with the old token lands after the workspace was reconnected with a new one:
    the new token is alive, so nothing is deactivated. invalid_auth's reason names its other causes."""
    from bot.common.clock import ManualClock
    from bot.common.secrets import token_fingerprint

    now = ManualClock().now()
    await add_slack_workspace("T0RECON", "xoxb-new", now=now, actor="test")
    stale = await workspace_core.workspace_refused("slack", "T0RECON", cause="token_revoked",
                                                   refused_token=token_fingerprint("xoxb-old"), now=now)
    assert stale.changed is False and (await Workspace.get(external_id="T0RECON")).active
    dead = await workspace_core.workspace_refused("slack", "T0RECON", cause="invalid_auth",
                                                  refused_token=token_fingerprint("xoxb-new"), now=now)
    assert dead.changed and not (await Workspace.get(external_id="T0RECON")).active
    assert "invalid_auth" in workspace_core.removed_reason("slack", "T0RECON", "invalid_auth")
    assert "reconnect it to deliver" in workspace_core.removed_reason("slack", "T0RECON", "invalid_auth")


async def test_reconnecting_a_removed_workspace_delivers_the_must_know_notice_that_waited_for_it(
        slack: SlackHarness) -> None:
    """The failure reason says "reconnect it to deliver": the partner's admin does ("Add to Slack"
    again) and the copies of still-live notices that failed because Herald was removed go back to
    pending (audited `delivery.requeued`) and are delivered with the new token. A retracted
    notice's copy stays failed. (SPEC "Delivery": a reason a person can act on; nothing is lost.)"""
    slack.clock.set(MONDAY_9_UTC)
    await _install_newco(slack)
    await import_directory(directory_csv([NEWCO_MEMBER]), now=slack.clock.now(), actor="test")
    rig = Rig(slack.fake, slack.herald, slack.clock)
    notice_id = await rig.broadcast("org:newco", deadline=MONDAY_9_UTC + timedelta(days=5))
    retracted_id = await rig.broadcast("org:newco")
    (waiting,) = await Delivery.filter(notice_id=notice_id, workspace_external_id=NEW_TEAM)
    assert waiting.status == "pending"

    await _event(slack, event_body({"type": "app_uninstalled"}, NEW_TEAM, event_id="EvGONE1"))
    await wait_until(lambda: Workspace.filter(external_id=NEW_TEAM, active=False).exists(), what="the uninstall")
    failed = await Delivery.get(id=waiting.id)
    assert failed.status == "failed" and "reconnect it to deliver" in failed.error
    await Notice.filter(id=retracted_id).update(status="retracted")

    slack.clock.advance(minutes=30)  # the admin adds Herald back the same morning
    await _install_newco(slack, code="code-again", token="xoxb-newco-second")
    await slack.herald.outbox.drain()

    row = await Delivery.get(id=waiting.id)
    posted = [c for c in slack.fake.calls_to("chat.postMessage")
              if c.team_id == NEW_TEAM and c.ok and c.channel in ("D" + NEW_USER, NEW_USER)]
    assert row.status == "delivered" and len(posted) == 1
    (retracted,) = await Delivery.filter(notice_id=retracted_id)
    assert retracted.status == "failed"
    (requeued,) = await AuditEvent.filter(kind="delivery.requeued")
    assert requeued.notice_id == notice_id and requeued.data["delivery_id"] == waiting.id
    assert (await Notice.get(id=notice_id)).status == "sent"

    await _install_newco(slack, code="code-third", token="xoxb-newco-third")  # reinstalled while connected
    await slack.herald.outbox.drain()
    assert await AuditEvent.filter(kind="delivery.requeued").count() == 1  # nothing sent twice


async def test_reconnecting_through_add_to_slack_wakes_the_outbox_for_the_copies_it_puts_back(
        slack: SlackHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """"Add to Slack" after a removal put the failed copies back to pending but did not wake the
    outbox: they waited for its next poll. The reconnection wakes it; a reinstall of a connected
    workspace has nothing to wake it for."""
    await _install_newco(slack)
    await import_directory(directory_csv([NEWCO_MEMBER]), now=slack.clock.now(), actor="test")
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:newco")
    await _event(slack, event_body({"type": "app_uninstalled"}, NEW_TEAM, event_id="EvGONE2"))
    await wait_until(lambda: Workspace.filter(external_id=NEW_TEAM, active=False).exists(), what="the uninstall")
    wakes: list[dict] = []
    real_wake = slack.herald.outbox.wake
    monkeypatch.setattr(slack.herald.outbox, "wake", lambda **kw: (wakes.append(kw), real_wake(**kw)))

    await _install_newco(slack, code="code-again", token="xoxb-newco-second")
    (copy,) = await Delivery.filter(notice_id=notice_id, workspace_external_id=NEW_TEAM)
    assert copy.status == "pending" and len(wakes) == 1, f"{copy.status}, {len(wakes)} wakes"
    await _install_newco(slack, code="code-third", token="xoxb-newco-third")  # reinstalled while connected
    assert len(wakes) == 1


async def test_a_new_env_token_after_a_single_workspace_reinstall_is_used(db: str) -> None:
    """README "Connecting Slack", 2: a single workspace runs on HERALD_SLACK_BOT_TOKEN. Its admin
    removes the app (Herald stores an inactive row so the revoked env token is not used); the
    operator reinstalls, sets the new token and restarts. The new token is used (README: the env
    token serves "any workspace not stored with `herald slack add-workspace`"), audited as
    `workspace.reconnected`, and the copies the removal failed are sent."""
    from bot.core.directory.staff import add_staff
    from bot.ops.doctor import WARN, _removed_workspace

    first = await start_harness(db, extra_settings={"slack_bot_token": TOKEN})
    try:
        await import_directory(SAMPLE_DIRECTORY, now=first.clock.now(), actor="test")
        await add_staff("cam@vendor.example", "cam", name="Casey CAM", slack_user=CAM_USER, slack_team=TEAM,
                        now=first.clock.now(), actor="test")
        assert await Workspace.filter(external_id=TEAM).count() == 0  # known from the env token only
        waiting = await Rig(first.fake, first.herald, first.clock).broadcast("org:acme")
        await _event(first, event_body({"type": "app_uninstalled"}, TEAM, event_id="EvGONE2"))
        await wait_until(lambda: Workspace.filter(external_id=TEAM, active=False).exists(), what="the uninstall")
        assert {d.status for d in await Delivery.filter(notice_id=waiting)} == {"failed"}
        removed = await Workspace.get(external_id=TEAM)
        assert TOKEN not in removed.token_fingerprint and removed.token_fingerprint  # a hash, never the token
        assert "reinstall the app" in _removed_workspace(removed, TOKEN).fix  # herald doctor
    finally:
        await stop_harness(first)

    new_token = "xoxb-partner-token-reinstalled"
    assert _removed_workspace(removed, new_token).status == WARN
    assert "restart" in _removed_workspace(removed, new_token).fix
    second = await start_harness(db, extra_settings={"slack_bot_token": new_token})  # the restart
    try:
        second.fake.add_workspace(TEAM, new_token)  # Slack issued a new bot token on the reinstall
        for user in ("UANNA", "UBO", "UCY", "UDI"):
            second.fake.add_user(TEAM, user)
        notice_id = await Rig(second.fake, second.herald, second.clock).broadcast("org:acme")
        await second.herald.outbox.drain()
        rows = await Delivery.filter(notice_id__in=[waiting, notice_id]).order_by("id")
        delivered = [c for c in second.fake.calls_to("chat.postMessage") if c.ok]
        assert rows and all(d.status == "delivered" for d in rows) and len(delivered) == len(rows), (
            f"with the new HERALD_SLACK_BOT_TOKEN the copies are {[(d.status, d.error) for d in rows]}")
        assert await AuditEvent.filter(kind="workspace.reconnected").count() == 1
        assert await Workspace.filter(external_id=TEAM).count() == 0
    finally:
        await stop_harness(second)


async def test_reminders_wait_while_herald_is_removed_from_the_workspace(slack_http: SlackHarness) -> None:
    """A must-know copy (no deadline) delivered before Herald was removed: no reminder row is
    planned (each would fail and be audited at every slot), and the planner does not look at the
    copy again every hour for as long as the workspace stays removed: its reminders wait
    (`reminder.ended`, with the reason) until the workspace is reconnected, which resumes them
    (`reminder.resumed`)."""
    slack = slack_http
    slack.clock.set(MONDAY_9_UTC)
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("member:anna@acme.example")
    await slack.herald.outbox.drain()
    (original,) = await Delivery.filter(notice_id=notice_id)
    assert original.status == "delivered" and original.next_reminder_at is not None
    await deactivate_workspace("slack", TEAM, reason="app_uninstalled", now=slack.clock.now())

    slack.clock.set(original.next_reminder_at)
    await slack.herald.tick()
    original = await Delivery.get(id=original.id)
    assert original.next_reminder_at is None, (
        f"a copy in a workspace Herald was removed from is looked at again at {original.next_reminder_at}")
    (ended,) = await AuditEvent.filter(kind="reminder.ended")
    assert ended.data["reason"] == WORKSPACE_REMOVED and ended.data["delivery_id"] == original.id
    slack.clock.advance(days=3)
    await slack.herald.tick()
    assert not await Delivery.filter(notice_id=notice_id, kind="reminder").exists()
    assert not await AuditEvent.filter(kind="reminder.failed").exists()

    await add_slack_workspace(TEAM, TOKEN, now=slack.clock.now(), actor="test")  # reconnected
    (resumed,) = await AuditEvent.filter(kind="reminder.resumed")
    assert resumed.data["delivery_id"] == original.id
    slack.clock.set((await Delivery.get(id=original.id)).next_reminder_at)
    await slack.herald.tick()
    await slack.herald.outbox.drain()
    (reminder,) = await Delivery.filter(notice_id=notice_id, kind="reminder")
    assert reminder.status == "delivered"
    await add_slack_workspace(TEAM, TOKEN, now=slack.clock.now(), actor="test")  # nothing resumed twice
    assert await AuditEvent.filter(kind="reminder.resumed").count() == 1


async def test_the_escalation_says_which_members_never_received_the_notice_because_herald_was_removed(
        slack_http: SlackHarness) -> None:
    """Acme removes Herald while a must-know recall is on its way; both Acme copies fail. The CAM's
    escalation names them apart from "not acknowledged", with the failure's reason, and without
    Remind now (which reminds delivered copies only): the CAM asks Acme to reconnect Herald
    instead of chasing people about a message they never got."""
    from bot.core.notices.escalations import REMIND_NOW_ACTION

    slack = slack_http
    slack.fake.add_workspace("T0VENDOR", "xoxb-vendor")
    slack.fake.add_user("T0VENDOR", "UCAMV")
    await add_slack_workspace("T0VENDOR", "xoxb-vendor", now=slack.clock.now(), actor="test")
    await Staff.filter(email="cam@vendor.example").update(slack_user_id="UCAMV", slack_team_id="T0VENDOR")

    slack.clock.set(MONDAY_9_UTC)
    deadline = MONDAY_9_UTC + timedelta(days=2)
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("org:acme", deadline=deadline)
    await _event(slack, event_body({"type": "app_uninstalled"}, TEAM, event_id="EvGONE3"))
    await wait_until(lambda: Workspace.filter(external_id=TEAM, active=False).exists(), what="the uninstall")
    rows = await Delivery.filter(notice_id=notice_id)
    assert rows and all(d.status == "failed" and "removed" in d.error for d in rows)

    slack.clock.set(deadline)
    counts = await slack.herald.tick()
    assert counts["escalations"] == 1
    await slack.herald.outbox.drain()
    (message,) = [c for c in slack.fake.calls_to("chat.postMessage") if c.ok and c.channel == "DUCAMV"]
    text = str(message.args["blocks"])
    assert "2 members never received it" in text and "not acknowledged" not in text
    assert "Anna Berg" in text and f"(sales): Herald was removed from Slack workspace {TEAM}" in text
    assert REMIND_NOW_ACTION not in text


@pytest.mark.parametrize("answer", ["account_inactive", "token_revoked", "invalid_auth"])
async def test_an_update_refused_because_herald_was_removed_stops_the_workspace(slack_http: SlackHarness,
                                                                              answer: str) -> None:
    """The first Slack call after a missed `app_uninstalled` may be an in-place update (an edit, an
    acknowledgement's card) rather than a send: chat.update refused with `account_inactive`,
    `token_revoked` or `invalid_auth` is handled as chat.postMessage's refusal (README "Connecting
    Slack"): the workspace is deactivated (audited with the code), the next notice's copies fail
    with the removal's reason without a request, and the update is recorded as failed for that reason."""
    from bot.core.notices.revisions import edit_notice

    slack = slack_http
    rig = Rig(slack.fake, slack.herald, slack.clock)
    notice_id = await rig.broadcast("member:anna@acme.example")
    await slack.herald.outbox.drain()
    (copy,) = await Delivery.filter(notice_id=notice_id)
    assert copy.status == "delivered"
    if answer == "token_revoked":
        slack.fake.revoke(TOKEN)
    elif answer == "account_inactive":
        slack.fake.uninstall(TOKEN)
    else:
        slack.fake.revoke(TOKEN, error="invalid_auth")

    await edit_notice(notice_id, None, slack.herald.catalog, now=slack.clock.now(), body="Stop selling LX-200 now",
                      operator="test")
    await slack.herald.outbox.drain()
    assert {c.error for c in slack.fake.calls_to("chat.update")} == {answer}
    workspace = await Workspace.get_or_none(platform="slack", external_id=TEAM)
    assert workspace is not None and not workspace.active, "chat.update's refusal left the workspace connected"
    (uninstalled,) = await AuditEvent.filter(kind="workspace.uninstalled")
    assert uninstalled.data["reason"] == answer
    updated = await Delivery.get(id=copy.id)
    assert not updated.update_pending and "reconnect it to deliver" in updated.error

    posts = len(slack.fake.calls_to("chat.postMessage"))
    second = await rig.broadcast("org:bolt,keys")  # Cy and Di, same workspace
    await slack.herald.outbox.drain()
    assert len(slack.fake.calls_to("chat.postMessage")) == posts
    rows = await Delivery.filter(notice_id=second, workspace_external_id=TEAM)
    assert rows and all(d.status == "failed" and "reconnect it to deliver" in d.error for d in rows)
    assert (await verify_chain()).ok

    slack.fake.add_workspace(TEAM, "xoxb-partner-again")  # the partner adds Herald back
    await add_slack_workspace(TEAM, "xoxb-partner-again", now=slack.clock.now(), actor="test")
    slack.herald.slack_workspaces.forget(TEAM)  # as "Add to Slack" does (the CLI's process has no cache)
    await slack.herald.outbox.drain()
    updated = await Delivery.get(id=copy.id)
    assert not updated.update_pending and not updated.error and updated.rendered_revision == 2
    assert [c for c in slack.fake.calls_to("chat.update") if c.ok], "the edit never reached the copy"


async def test_a_copy_in_doubt_when_herald_was_removed_is_looked_for_before_it_is_sent_again(
        slack_http: SlackHarness) -> None:
    """Anna's recall was posted, but Slack's answer was lost (a gateway's 504): her copy is in doubt,
    to be looked for in her DM before any second post (README "Running several replicas"). Acme
    then removes Herald, which fails the copy, and adds it back an hour later. The reconnection put
    the copy back as never sent, so it was posted again without a look: Anna got the recall twice.
    A copy that was in doubt (or on the wire) when it failed is now in doubt again after the
    reconnection: found in her DM, it is recorded as delivered, once."""
    slack = slack_http
    slack.clock.set(MONDAY_9_UTC)
    notice_id = await Rig(slack.fake, slack.herald, slack.clock).broadcast("member:anna@acme.example")
    slack.fake.fail_next("chat.postMessage", status=504, landed=True)
    await slack.herald.outbox.drain()
    (copy,) = await Delivery.filter(notice_id=notice_id)
    assert copy.status == "sending" and len(slack.fake.messages("DUANNA")) == 1  # posted; the answer lost

    await _event(slack, event_body({"type": "app_uninstalled"}, TEAM, event_id="EvGONE4"))
    await wait_until(lambda: Workspace.filter(external_id=TEAM, active=False).exists(), what="the uninstall")
    assert (await Delivery.get(id=copy.id)).status == "failed"

    slack.clock.advance(hours=1)
    await add_slack_workspace(TEAM, TOKEN, now=slack.clock.now(), actor="test")  # reconnected
    slack.herald.slack_workspaces.forget(TEAM)
    slack.clock.advance(seconds=1)
    await slack.herald.outbox.drain()
    copy = await Delivery.get(id=copy.id)
    assert len(slack.fake.messages("DUANNA")) == 1, "Anna got the recall twice"
    assert copy.status == "delivered" and copy.message_id == slack.fake.messages("DUANNA")[0]["ts"]
