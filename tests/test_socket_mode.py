"""Slack over Socket Mode beyond the shared end-to-end scenarios (which run over it too, see the
`slack` fixture): `herald serve` itself connecting, reconnecting when Slack asks, an app token Slack
refuses, what the fake's Web API allows an app-level token, and the Socket Mode manifest."""

from __future__ import annotations

import asyncio
import json
import logging
import socket as sockets
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import main
from bot.common import metrics
from tests.cli_support import herald_env
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_socket_mode import FakeSocketMode
from tests.support import APP_TOKEN, TEAM, TOKEN, SlackHarness, seed_directory, start_harness, stop_harness, wait_until


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


def _free_port() -> int:
    with sockets.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_herald_serve_with_every_transport_starts_and_connects_its_websocket(tmp_path: Path) -> None:
    """README "Behind a firewall": with HERALD_SLACK_APP_TOKEN "Herald then opens a WebSocket to
    Slack itself". `herald serve` used to die at start-up with `RuntimeError: no running event
    loop`: `build_app` made slack_sdk's Socket Mode client (which opens an aiohttp session) before
    `web.run_app` had started the loop. The harness builds the app inside a running loop, so only
    the real entry point shows this class of mistake; here it runs with every transport configured
    at once (Slack over HTTP and Socket Mode, Teams, the metrics listener)."""
    slack, socket_server = FakeSlackAPI(), FakeSocketMode()
    await slack.start()
    await socket_server.start()
    slack.add_workspace(TEAM, TOKEN)
    slack.enable_socket_mode(APP_TOKEN, socket_server)
    env = herald_env(HERALD_SLACK_APP_TOKEN=APP_TOKEN, HERALD_SLACK_BOT_TOKEN=TOKEN,
                     HERALD_SLACK_SIGNING_SECRET="firstrun-signing-secret", HERALD_SLACK_API_URL=slack.url,
                     HERALD_TEAMS_APP_ID="00000000-1111-2222-3333-444444444444",
                     HERALD_TEAMS_APP_PASSWORD="teams-app-password", HERALD_METRICS_HOST="127.0.0.1",
                     HERALD_METRICS_PORT=str(_free_port()), HERALD_DATABASE_URL=f"sqlite://{tmp_path / 'herald.db'}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", "0", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    seen: list[str] = []
    try:
        assert process.stdout is not None
        while line := (await asyncio.wait_for(process.stdout.readline(), 120)).decode():
            seen.append(line)
            if "Running on" in line:
                break
        output = "".join(seen)
        assert "Traceback" not in output, output[-600:]
        assert "Running on" in output, output[-600:]
        await asyncio.wait_for(socket_server.connected.wait(), 60)  # Herald opened its WebSocket
        assert slack.calls_to("apps.connections.open")[0].ok
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await socket_server.stop()
        await slack.stop()


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
