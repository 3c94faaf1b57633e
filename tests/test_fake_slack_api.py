"""The fake Slack Web API, driven by the real slack_sdk AsyncWebClient, and the signing helpers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_signing import (
    event_body,
    interaction_body,
    sign,
    signed_headers,
    slash_command_body,
)

TOKEN = "xoxb-t1"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI() as api:
        api.add_workspace("T1", TOKEN, bot_user_id="UBOT1")
        api.add_user("T1", "U1", email="alice@example.com", name="alice")
        api.add_user("T1", "U2", email="bob@example.com", name="bob")
        yield api


@pytest.fixture
def client(fake: FakeSlackAPI) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=fake.url)


async def test_url_and_auth_test(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    assert fake.url.startswith("http://127.0.0.1:") and fake.url.endswith("/api/")
    res = await client.auth_test()
    assert res["team_id"] == "T1" and res["user_id"] == "UBOT1"
    assert fake.calls_to("auth.test")[0].team_id == "T1"


async def test_dm_post_update_history_with_metadata(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    opened = await client.conversations_open(users="U1")
    channel = opened["channel"]["id"]
    assert channel == "DU1"
    assert (await client.conversations_open(users="U1"))["channel"]["id"] == channel

    metadata = {"event_type": "herald_notice", "event_payload": {"notice_id": 7}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    first = await client.chat_postMessage(channel=channel, text="hi", blocks=blocks, metadata=metadata)
    second = await client.chat_postMessage(channel=channel, text="second")
    assert first["channel"] == channel
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["metadata"] == metadata

    call = fake.calls_to("chat.postMessage")[0]
    assert call.team_id == "T1"
    assert call.args["blocks"] == blocks and call.args["metadata"] == metadata

    await client.chat_update(channel=channel, ts=first["ts"], text="edited", blocks=[])
    stored = fake.messages(channel)
    assert [m["text"] for m in stored] == ["edited", "second"]
    assert stored[0]["metadata"] == metadata

    history = await client.conversations_history(channel=channel, include_all_metadata=True)
    assert [m["ts"] for m in history["messages"]] == [second["ts"], first["ts"]]
    assert history["messages"][1]["metadata"] == metadata
    plain = await client.conversations_history(channel=channel)
    assert all("metadata" not in m for m in plain["messages"])

    limited = await client.conversations_history(channel=channel, limit=1)
    assert [m["ts"] for m in limited["messages"]] == [second["ts"]] and limited["has_more"] is True

    with pytest.raises(SlackApiError) as exc:
        await client.chat_update(channel=channel, ts="1.000000", text="x")
    assert exc.value.response["error"] == "message_not_found"


async def test_form_encoded_json_fields_are_normalised(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    blocks = [{"type": "divider"}]
    metadata = {"event_type": "t", "event_payload": {"a": 1}}
    await client.api_call(
        "chat.postMessage",
        data={"channel": "C9", "text": "x", "blocks": json.dumps(blocks), "metadata": json.dumps(metadata)},
    )
    assert fake.calls_to("chat.postMessage")[0].args["blocks"] == blocks
    assert fake.messages("C9")[0]["metadata"] == metadata


async def test_unknown_user_and_lookups(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        await client.conversations_open(users="UNOPE")
    assert exc.value.response["error"] == "user_not_found"
    assert (await client.users_lookupByEmail(email="Bob@example.com"))["user"]["id"] == "U2"
    assert (await client.users_info(user="U1"))["user"]["profile"]["email"] == "alice@example.com"
    with pytest.raises(SlackApiError) as exc:
        await client.users_lookupByEmail(email="nobody@example.com")
    assert exc.value.response["error"] == "users_not_found"


async def test_views_and_ephemeral(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    opened = await client.views_open(trigger_id="1.2.3", view={"type": "modal", "title": {"type": "plain_text", "text": "t"}})
    view_id = opened["view"]["id"]
    assert view_id.startswith("V")
    updated = await client.views_update(view_id=view_id, view={"type": "modal", "callback_id": "x"})
    assert updated["view"]["id"] == view_id and fake.views[view_id]["callback_id"] == "x"
    home = await client.views_publish(user_id="U1", view={"type": "home", "blocks": []})
    assert home["view"]["id"].startswith("V")
    eph = await client.chat_postEphemeral(channel="C1", user="U1", text="psst")
    assert eph["message_ts"]
    assert fake.ephemeral_messages("C1")[0]["text"] == "psst"


async def test_invalid_and_revoked_token(fake: FakeSlackAPI) -> None:
    bad = AsyncWebClient(token="xoxb-nope", base_url=fake.url)
    with pytest.raises(SlackApiError) as exc:
        await bad.chat_postMessage(channel="C1", text="x")
    assert exc.value.response.status_code == 200
    assert exc.value.response["error"] == "invalid_auth"
    assert fake.calls_to("chat.postMessage")[0].team_id is None

    fake.add_workspace("T2", "xoxb-t2")
    fake.revoke("xoxb-t2")
    with pytest.raises(SlackApiError) as exc:
        await AsyncWebClient(token="xoxb-t2", base_url=fake.url).auth_test()
    assert exc.value.response["error"] == "token_revoked"


async def test_unknown_method(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        await client.api_call("nope.nothing")
    assert exc.value.response["error"] == "unknown_method"


async def test_injected_429_is_seen_raw(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    client.retry_handlers.clear()
    fake.fail_next("chat.postMessage", status=429, retry_after=2)
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel="C1", text="x")
    response = exc.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response["error"] == "ratelimited"
    assert fake.messages("C1") == []
    # the fault is used up: the next call goes through
    await client.chat_postMessage(channel="C1", text="x")
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [429, 200]


async def test_injected_faults_repeat_and_queue(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", status=500, times=2)
    fake.fail_next("chat.postMessage", error="channel_not_found")
    for expected_status, expected_error in [(500, "internal_error"), (500, "internal_error"), (200, "channel_not_found")]:
        with pytest.raises(SlackApiError) as exc:
            await client.chat_postMessage(channel="C1", text="x")
        assert exc.value.response.status_code == expected_status
        assert exc.value.response["error"] == expected_error
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]
    assert fake.call_count("chat.postMessage") == 4
    assert len(fake.messages("C1")) == 1


async def test_delay(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    fake.delay("auth.test", 0.05)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.05
    fake.delay("auth.test", 0)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started < 0.05


async def test_response_url_recording(fake: FakeSlackAPI) -> None:
    url = fake.response_url("cmd-1")
    assert url.startswith(fake.url.removesuffix("api/"))
    webhook = AsyncWebhookClient(url)
    res = await webhook.send(text="done", response_type="ephemeral", replace_original=True)
    assert res.status_code == 200
    async with aiohttp.ClientSession() as session:
        async with session.post(fake.response_url("cmd-2"), json={"text": "raw"}) as r:
            assert r.status == 200
    calls = fake.calls_to("response_url")
    assert [(c.key, c.args["text"]) for c in calls] == [("cmd-1", "done"), ("cmd-2", "raw")]
    assert calls[0].args["replace_original"] is True and calls[0].team_id is None


async def test_response_url_fault(fake: FakeSlackAPI) -> None:
    fake.fail_next("response_url", status=404, error="expired_url")
    res = await AsyncWebhookClient(fake.response_url("k")).send(text="late")
    assert res.status_code == 404


def test_signed_headers_verify_with_slack_sdk() -> None:
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    now = int(time.time())
    body = slash_command_body(command="/herald", text="send T1", user_id="U1", team_id="T1", channel_id="C1")
    headers = signed_headers(secret, body, timestamp=now)
    verifier = SignatureVerifier(secret)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert verifier.is_valid_request(body, headers)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert not SignatureVerifier("other-secret").is_valid(body, str(now), headers["X-Slack-Signature"])
    fields = parse_qs(body)
    assert fields["command"] == ["/herald"] and fields["text"] == ["send T1"] and fields["trigger_id"]

    payload = {"type": "block_actions", "actions": [{"action_id": "ack"}]}
    ibody = interaction_body(payload)
    assert json.loads(parse_qs(ibody)["payload"][0]) == payload
    assert verifier.is_valid_request(ibody, signed_headers(secret, ibody, now))

    ebody = event_body({"type": "app_home_opened", "user": "U1"}, "T1")
    eh = signed_headers(secret, ebody, now)
    assert eh["Content-Type"] == "application/json" and verifier.is_valid_request(ebody, eh)
    envelope = json.loads(ebody)
    assert envelope["type"] == "event_callback" and envelope["team_id"] == "T1"
    assert envelope["event_id"] != json.loads(event_body({}, "T1"))["event_id"]

    # matches the published Slack example (docs: verifying requests from Slack)
    example_body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    assert sign(secret, example_body, 1531420618) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )
