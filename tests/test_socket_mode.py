"""Slack over Socket Mode beyond the shared end-to-end scenarios (which run over it too, see the
`slack` fixture): reconnecting when Slack asks, an app token Slack refuses, what the fake's Web API
allows an app-level token, and the Socket Mode manifest."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import main
from bot.common import metrics
from tests.support import APP_TOKEN, TOKEN, SlackHarness, seed_directory, start_harness, stop_harness, wait_until


@pytest.fixture
async def socket(db: str):  # noqa: ANN201
    harness = await start_harness(db, transport="socket")
    await seed_directory(harness.clock)
    try:
        yield harness
    finally:
        await stop_harness(harness)


async def test_only_socket_mode_serves_slack_without_a_signing_secret(socket: SlackHarness) -> None:
    async with socket.session.post(socket.events_url, data=b"{}") as response:
        assert response.status in (404, 405)  # no Request URL at all
    assert socket.fake.calls_to("apps.connections.open")[0].ok
    assert metrics.sample("herald_slack_socket_mode_connected") == 1
    _, text, _ = await socket.command("help")
    assert "send <importance> <topic> <audience>" in text


async def test_reconnects_when_slack_asks_and_keeps_working(socket: SlackHarness) -> None:
    assert socket.socket is not None and socket.socket.connections == 1
    await socket.socket.request_refresh()
    await wait_until(lambda: socket.socket.connections == 2, what="a second connection")
    assert len(socket.fake.calls_to("apps.connections.open")) == 2  # each connection gets a fresh URL
    _, text, _ = await socket.command("help")
    assert "send <importance> <topic> <audience>" in text


async def test_a_refused_app_token_leaves_the_server_running(db: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "slack_sdk.socket_mode")
    metrics.socket_mode_connected(False)
    h = await start_harness(db, transport="http", extra_settings={"slack_app_token": "xapp-1-not-registered"})
    try:
        await wait_until(lambda: any("Failed to retrieve WSS URL" in r.message for r in caplog.records),
                         what="the error")
        assert metrics.sample("herald_slack_socket_mode_connected") == 0
        async with h.session.get(str(h.server.make_url("/healthz"))) as response:
            assert response.status == 200  # Teams, the outbox and the API carry on
        assert h.fake.calls_to("apps.connections.open")[0].error == "invalid_auth"
    finally:
        await stop_harness(h)


async def test_the_fake_keeps_app_level_and_bot_tokens_apart(socket: SlackHarness) -> None:
    bot = AsyncWebClient(base_url=socket.fake.url)
    with pytest.raises(SlackApiError) as refused:
        await bot.apps_connections_open(app_token=TOKEN)
    assert refused.value.response["error"] == "not_allowed_token_type"
    app = AsyncWebClient(token=APP_TOKEN, base_url=socket.fake.url)
    with pytest.raises(SlackApiError) as refused:
        await app.chat_postMessage(channel="UANNA", text="hi")
    assert refused.value.response["error"] == "not_allowed_token_type"
    opened = await app.apps_connections_open(app_token=APP_TOKEN)
    assert opened["url"].startswith("ws://127.0.0.1:")


def test_socket_mode_manifest() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["slack", "manifest", "--socket-mode"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert "request_url" not in settings["event_subscriptions"] and "request_url" not in settings["interactivity"]
    assert all("url" not in c for c in manifest["features"]["slash_commands"])
    assert "redirect_urls" not in manifest["oauth_config"] and "im:history" in manifest["oauth_config"]["scopes"]["bot"]
    with_install = json.loads(runner.invoke(main, ["slack", "manifest", "--socket-mode", "--url",
                                                   "https://herald.example.com"]).output)
    assert with_install["oauth_config"]["redirect_urls"] == ["https://herald.example.com/slack/oauth_redirect"]
    assert runner.invoke(main, ["slack", "manifest"]).exit_code == 2  # neither a URL nor Socket Mode
