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


# ---- limits mode ---------------------------------------------------------------------------

from tests.fakes.rate_limits import ManualMonotonic, Rate  # noqa: E402
from tests.fakes.seeding import generated_workspace  # noqa: E402
from tests.fakes.slack_limits import SlackLimits  # noqa: E402


@pytest.fixture
def clock() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
async def limited(clock: ManualMonotonic) -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(limits=SlackLimits(), clock=clock) as api:
        api.add_workspace("T1", TOKEN, bot_user_id="UBOT1")
        api.add_workspace("T2", "xoxb-t2", bot_user_id="UBOT2")
        for team in ("T1", "T2"):
            for user in ("U1", "U2", "U3"):
                api.add_user(team, user)
        yield api


def raw_client(token: str, fake: FakeSlackAPI) -> AsyncWebClient:
    """A client that surfaces every 429 (no retry handlers)."""
    client = AsyncWebClient(token=token, base_url=fake.url)
    client.retry_handlers.clear()
    return client


async def ratelimited(call) -> SlackApiError:  # noqa: ANN001
    with pytest.raises(SlackApiError) as exc:
        await call
    assert exc.value.response.status_code == 429
    assert exc.value.response.data == {"ok": False, "error": "ratelimited"}
    return exc.value


async def test_slack_sdk_sees_a_tier_3_burst_end_in_429_with_retry_after(
        limited: FakeSlackAPI, clock: ManualMonotonic) -> None:
    client = raw_client(TOKEN, limited)
    for _ in range(50):  # Tier 3: 50 a minute, a minute's worth at once
        await client.conversations_open(users="U1")
    error = await ratelimited(client.conversations_open(users="U1"))
    # one token comes back every 60/50 = 1.2 s; Slack gives whole seconds, rounded up
    assert error.response.headers["Retry-After"] == "2"
    assert isinstance(error, SlackApiError) and error.response["error"] == "ratelimited"

    # other methods of the workspace, and the same method elsewhere, are not restricted
    assert (await client.users_info(user="U1"))["ok"]
    assert (await raw_client("xoxb-t2", limited).conversations_open(users="U1"))["ok"]

    clock.advance(1.2)
    assert (await client.conversations_open(users="U1"))["ok"]  # exactly one token refilled
    await ratelimited(client.conversations_open(users="U1"))
    clock.advance(2)  # what the Retry-After said
    assert (await client.conversations_open(users="U1"))["ok"]


async def test_post_message_one_a_second_per_channel_with_a_short_burst(
        limited: FakeSlackAPI, clock: ManualMonotonic) -> None:
    client = raw_client(TOKEN, limited)
    for _ in range(3):
        await client.chat_postMessage(channel="DU1", text="x")
    error = await ratelimited(client.chat_postMessage(channel="DU1", text="x"))
    assert error.response.headers["Retry-After"] == "1"
    # the user id means the same DM: it shares the channel's allowance
    await ratelimited(client.chat_postMessage(channel="U1", text="x"))
    # other channels have their own
    for channel in ("DU2", "U3", "C1"):
        assert (await client.chat_postMessage(channel=channel, text="x"))["ok"]
    clock.advance(1)
    assert (await client.chat_postMessage(channel="U1", text="x"))["channel"] == "DU1"
    await ratelimited(client.chat_postMessage(channel="DU1", text="x"))
    assert len(limited.messages("DU1")) == 4
    assert limited.limits_stats()["throttled"]["by_reason"] == {"channel": 3}


async def test_post_message_workspace_wide_cap(clock: ManualMonotonic) -> None:
    limits = SlackLimits(post_per_workspace=Rate(5, 60.0))
    async with FakeSlackAPI(limits=limits, clock=clock) as fake:
        fake.add_workspace("T1", TOKEN)
        fake.add_workspace("T2", "xoxb-t2")
        client = raw_client(TOKEN, fake)
        for n in range(5):
            await client.chat_postMessage(channel=f"C{n}", text="x")
        error = await ratelimited(client.chat_postMessage(channel="C9", text="x"))
        assert error.response.headers["Retry-After"] == "12"  # 5 a minute: one every 12 s
        assert (await raw_client("xoxb-t2", fake).chat_postMessage(channel="C9", text="x"))["ok"]
        clock.advance(12)
        assert (await client.chat_postMessage(channel="C9", text="x"))["ok"]
        stats = fake.limits_stats()
        assert stats["throttled"]["by_reason"] == {"workspace": 1}
        assert stats["accepted"]["by_workspace"] == {"T1": {"chat.postMessage": 6}, "T2": {"chat.postMessage": 1}}


async def test_history_is_tightened_only_for_distributed_non_marketplace_installs(clock: ManualMonotonic) -> None:
    async with FakeSlackAPI(clock=clock) as fake:
        fake.add_workspace("T1", TOKEN)
        fake.add_workspace("T2", "xoxb-t2", non_marketplace=True)
        internal, distributed = raw_client(TOKEN, fake), raw_client("xoxb-t2", fake)
        for client, channel in ((internal, "C1"), (distributed, "C2")):
            first = await client.chat_postMessage(channel=channel, text="parent")
            for n in range(20):
                await client.chat_postMessage(channel=channel, text=f"m{n}")
                await client.chat_postMessage(channel=channel, text=f"r{n}", thread_ts=first["ts"])
        fake.set_limits(SlackLimits())
        # a page of 15 objects at most, and 15 by default
        page = await distributed.conversations_history(channel="C2", limit=100)
        assert len(page["messages"]) == 15 and page["has_more"] is True
        replies = await distributed.conversations_replies(channel="C2", ts=first["ts"])
        assert len(replies["messages"]) == 15
        # then one request a minute, per method
        error = await ratelimited(distributed.conversations_history(channel="C2"))
        assert error.response.headers["Retry-After"] == "60"
        await ratelimited(distributed.conversations_replies(channel="C2", ts=first["ts"]))
        clock.advance(60)
        assert len((await distributed.conversations_history(channel="C2"))["messages"]) == 15

        # an internal app (or a Marketplace one) keeps Tier 3 and full pages
        for _ in range(3):
            assert len((await internal.conversations_history(channel="C1"))["messages"]) == 21
        assert fake.limits_stats()["throttled"]["by_reason"] == {"non_marketplace": 2}

        fake.set_non_marketplace("T2", False)
        assert len((await distributed.conversations_history(channel="C2"))["messages"]) == 21


async def test_post_to_a_user_id_posts_into_the_bots_dm_and_names_it(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="U1", text="hello")
    assert posted["channel"] == "DU1" == fake.dm_channel_id("U1")
    assert [m["text"] for m in fake.messages("DU1")] == ["hello"]
    assert fake.messages("U1") == []
    # the DM now exists, and conversations.open names the same one
    opened = await client.conversations_open(users="U1")
    assert opened["channel"]["id"] == "DU1" and opened["already_open"] is True
    again = await client.chat_postMessage(channel="DU1", text="again")
    assert [m["ts"] for m in fake.messages("DU1")] == [posted["ts"], again["ts"]]
    assert fake.calls_to("chat.postMessage")[0].args["channel"] == "U1"  # recorded as sent
    for nobody in ("UNOPE", "UBOT1"):  # a stranger, or the bot itself: no DM to open
        with pytest.raises(SlackApiError) as exc:
            await client.chat_postMessage(channel=nobody, text="x")
        assert exc.value.response["error"] == "channel_not_found"


async def test_limits_stats_count_every_429_and_the_retry_after_given(
        limited: FakeSlackAPI, clock: ManualMonotonic) -> None:
    client = raw_client(TOKEN, limited)
    for _ in range(4):
        try:
            await client.chat_postMessage(channel="DU1", text="x")
        except SlackApiError:
            pass
    limited.fail_next("users.info", retry_after=7)
    await ratelimited(client.users_info(user="U1"))
    stats = limited.limits_stats()
    assert stats["limits"]["post_per_channel"] == {"count": 1, "per": 1.0, "burst": 3.0}
    assert stats["accepted"]["total"] == 3 and stats["accepted"]["by_method"] == {"chat.postMessage": 3}
    assert stats["throttled"]["total"] == 2
    assert stats["throttled"]["by_workspace"] == {"T1": {"chat.postMessage": 1, "users.info": 1}}
    assert stats["throttled"]["by_reason"] == {"channel": 1, "injected": 1}
    assert stats["retry_after"] == {"chat.postMessage": {"1": 1}, "users.info": {"7": 1}}
    limited.reset_limits_stats()
    assert limited.limits_stats()["throttled"]["total"] == 0


async def test_limits_are_off_by_default(fake: FakeSlackAPI, client: AsyncWebClient) -> None:
    for _ in range(60):
        await client.conversations_open(users="U1")
    for _ in range(10):
        await client.chat_postMessage(channel="DU1", text="x")
    stats = fake.limits_stats()
    assert stats["limits"] is None and stats["throttled"]["total"] == 0 and stats["accepted"]["total"] == 70


async def test_scale_runs_the_same_shape_faster(clock: ManualMonotonic) -> None:
    async with FakeSlackAPI(limits=SlackLimits(scale=60), clock=clock) as fake:
        fake.add_workspace("T1", TOKEN)
        fake.add_user("T1", "U1")
        client = raw_client(TOKEN, fake)
        for _ in range(50):  # the burst is unchanged ...
            await client.conversations_open(users="U1")
        error = await ratelimited(client.conversations_open(users="U1"))
        assert error.response.headers["Retry-After"] == "1"  # whole seconds, at least 1
        clock.advance(0.02)  # ... the rate is 60 times higher: 50 a second
        assert (await client.conversations_open(users="U1"))["ok"]


async def test_limits_profile_overrides() -> None:
    limits = SlackLimits.from_dict({"scale": 2, "tiers": {"tier3": [10, 60]}, "post_per_channel": {"count": 2, "per": 1},
                                    "method_tiers": {"users.info": "tier3"}})
    assert limits.scale == 2.0 and limits.tiers["tier3"] == Rate(10, 60) and limits.tiers["tier4"] == Rate(100)
    assert limits.method_tiers["users.info"] == "tier3" and limits.post_per_channel.capacity == 2
    with pytest.raises(ValueError):
        SlackLimits.from_dict({"tier9": 1})
    with pytest.raises(ValueError):
        SlackLimits.from_dict({"method_tiers": {"users.info": "tier9"}})


async def test_control_routes_seed_switch_limits_and_report_over_http(clock: ManualMonotonic) -> None:
    async with FakeSlackAPI(clock=clock, record_calls=False) as fake, aiohttp.ClientSession() as http:
        spec = {"workspaces": [generated_workspace(0, 100_000), generated_workspace(1, 3, non_marketplace=True)]}
        async with http.post(f"{fake.base}/_fake/seed", json=spec) as r:
            assert (await r.json())["seeded"] == {"workspaces": 2, "users": 100_003}
        async with http.post(f"{fake.base}/_fake/limits", json={"scale": 1, "tiers": {"tier3": [2, 60]}}) as r:
            assert (await r.json())["limits"]["tiers"]["tier3"] == {"count": 2, "per": 60.0, "burst": 2.0}

        client = raw_client(spec["workspaces"][0]["token"], fake)
        member = "U0000N099999"
        found = await client.users_lookupByEmail(email=f"{member.lower()}@ws0000.example")
        assert found["user"]["id"] == member
        assert (await client.conversations_open(users=member))["channel"]["id"] == "D" + member
        assert (await client.chat_postMessage(channel="U0000N000007", text="x",
                                              metadata={"event_type": "herald_notice", "event_payload": {"n": 1}}))["ok"]
        assert (await client.users_lookupByEmail(email="u0000n000001@ws0000.example"))["user"]["id"] == "U0000N000001"
        await ratelimited(client.users_lookupByEmail(email="u0000n000002@ws0000.example"))  # Tier 3 set to 2/min
        with pytest.raises(SlackApiError) as exc:
            await client.conversations_open(users="U0000N100000")  # outside the range
        assert exc.value.response.status_code == 200 and exc.value.response["error"] == "user_not_found"

        async with http.get(f"{fake.base}/_fake/stats") as r:
            stats = await r.json()
        assert stats["throttled"]["by_workspace"] == {"T0000BENCH": {"users.lookupByEmail": 1}}
        assert stats["retry_after"] == {"users.lookupByEmail": {"30": 1}}
        assert stats["requests"]["conversations.open"] == 2
        async with http.get(f"{fake.base}/_fake/messages", params={"event_type": "herald_notice"}) as r:
            [message] = (await r.json())["messages"]
        assert message["channel"] == "DU0000N000007" and message["metadata"]["event_payload"] == {"n": 1}
        async with http.post(f"{fake.base}/_fake/limits", json={"enabled": False}) as r:
            assert (await r.json())["limits"] is None
        async with http.post(f"{fake.base}/_fake/seed", json={"workspaces": [{"team_id": "T9"}]}) as r:
            assert r.status == 400 and "token" in (await r.json())["error"]


async def test_standalone_fake_prints_its_url_and_serves(tmp_path) -> None:  # noqa: ANN001
    import asyncio
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.slack_api", "--limits", "on", "--workspaces", "2",
        "--users-per-workspace", "10", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api/")
        client = AsyncWebClient(token="xoxb-bench-0001", base_url=url)
        assert (await client.auth_test())["team_id"] == "T0001BENCH"
        assert (await client.chat_postMessage(channel="U0001N000009", text="x"))["channel"] == "DU0001N000009"
        async with aiohttp.ClientSession() as http, http.get(url.removesuffix("api/") + "_fake/stats") as r:
            stats = await r.json()
        assert stats["limits"]["scale"] == 1.0
        assert stats["accepted"]["by_workspace"] == {"T0001BENCH": {"auth.test": 1, "chat.postMessage": 1}}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


async def test_messages_must_keep_block_kit_limits() -> None:
    async with FakeSlackAPI() as fake:
        fake.add_workspace("T1", "xoxb-1")
        fake.add_user("T1", "U1")
        client = AsyncWebClient(token="xoxb-1", base_url=fake.url)
        button = {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "ok"}, "value": "1"}
        await client.chat_postMessage(channel="U1", text="t", blocks=[{"type": "actions", "elements": [
            {**button, "action_id": f"a{n}"} for n in range(25)]}])
        for blocks, problem in (
                ([{"type": "actions", "elements": [button, button]}], "already exists in the block"),
                ([{"type": "actions", "elements": [{**button, "action_id": f"a{n}"} for n in range(26)]}], "1 to 25"),
                ([{"type": "actions", "elements": [{**button, "text": {"type": "plain_text", "text": "x" * 76}}]}],
                 "button text"),
                ([{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}], "header text"),
                ([{"type": "divider"}] * 51, "more than 50 blocks")):
            with pytest.raises(SlackApiError) as raised:
                await client.chat_postMessage(channel="U1", text="t", blocks=blocks)
            assert raised.value.response["error"] == "invalid_blocks"
            assert any(problem in p for p in raised.value.response["errors"])


def test_views_keep_block_kits_limits() -> None:
    """A Home tab or modal breaking Block Kit's limits is refused (views.publish, views.open, ...)."""
    from tests.fakes.block_kit import view_problems

    eleven = {"type": "checkboxes", "action_id": "a", "options": [
        {"text": {"type": "plain_text", "text": str(i)}, "value": str(i)} for i in range(11)]}
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "t"}, "accessory": eleven}]}
    assert view_problems(home) == ["blocks[0].accessory: checkboxes with more than 10 options"]
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "x" * 25}, "blocks": []}
    assert view_problems(modal) == ["title longer than 24"]
    assert view_problems({"type": "home", "blocks": [{"type": "divider"}] * 101}) == ["more than 100 blocks"]
    options = [{"text": {"type": "plain_text", "text": str(i)}, "value": str(i)} for i in range(101)]

    def menu(**element: object) -> dict:
        return {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": [{
            "type": "input", "label": {"type": "plain_text", "text": "Topic"},
            "element": {"type": "static_select", "action_id": "value", **element}}]}

    grouped = [{"label": {"type": "plain_text", "text": "A"}, "options": options[:100]},
               {"label": {"type": "plain_text", "text": "B"}, "options": options[100:]}]
    assert view_problems(menu(option_groups=grouped)) == []  # 100 groups of 100 at most
    assert view_problems(menu(options=options)) == ["blocks[0].element: static_select with more than 100 options"]
    assert view_problems(menu(option_groups=[{**grouped[0], "options": options}])) == [
        "blocks[0].element: an option group with more than 100 options"]


_BUTTON = {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "ok"}, "value": "1"}
_OPTION = {"text": {"type": "plain_text", "text": "One"}, "value": "1"}

# Each is a message Slack refuses with invalid_blocks (api.slack.com/reference/block-kit/blocks and
# /composition-objects): the fake (tests/fakes/block_kit.block_problems) must refuse every one.
MESSAGES_SLACK_REFUSES = {
    # "block_id ... Maximum length for this field is 255 characters" (every block)
    "block_id-256": [{"type": "section", "block_id": "b" * 256, "text": {"type": "mrkdwn", "text": "t"}}],
    # section "fields ... Maximum number of items is 10. Maximum length for the text in each item is 2000"
    "section-11-fields": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
    "section-field-2001": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
    # text object "minimum length for this field is 1"
    "section-empty-text": [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}],
    # option object "value ... Maximum length for this field is 150 characters"
    "option-value-151": [{"type": "section", "text": {"type": "mrkdwn", "text": "t"}, "accessory": {
        "type": "static_select", "action_id": "s", "options": [{**_OPTION, "value": "v" * 151}]}}],
    # context elements are text objects: 3,000 characters at most
    "context-text-3001": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * 3001}]}],
}

# Each is a modal Slack refuses (api.slack.com/reference/surfaces/views, /blocks#input,
# /block-elements#input): the fake (view_problems) must refuse every one.
_INPUT = {"type": "input", "block_id": "i", "label": {"type": "plain_text", "text": "Label"},
          "element": {"type": "plain_text_input", "action_id": "value"}}
VIEWS_SLACK_REFUSES = {
    # view "private_metadata ... Max length of 3000 characters"
    "private_metadata-3001": {"private_metadata": "m" * 3001, "blocks": [_INPUT]},
    # view "callback_id ... Max length of 255 characters"
    "callback_id-256": {"callback_id": "c" * 256, "blocks": [_INPUT]},
    # input block "label ... Maximum length for the text in this field is 2000 characters"
    "input-label-2001": {"blocks": [{**_INPUT, "label": {"type": "plain_text", "text": "l" * 2001}}]},
    # plain_text_input "max_length ... Maximum value is 3000"
    "input-max_length-3001": {"blocks": [{**_INPUT, "element": {**_INPUT["element"], "max_length": 3001}}]},
    # plain_text_input "placeholder ... Maximum length for the text in this field is 150 characters"
    "input-placeholder-151": {"blocks": [{**_INPUT, "element": {
        **_INPUT["element"], "placeholder": {"type": "plain_text", "text": "p" * 151}}}]},
}


@pytest.mark.parametrize("case", sorted(MESSAGES_SLACK_REFUSES))
async def test_the_fake_slack_api_refuses_messages_slack_refuses(case: str) -> None:
    """A fake that accepts what Slack answers with invalid_blocks hides exactly the defect it exists
    to catch: Herald's own tests would pass while real members get nothing."""
    async with FakeSlackAPI() as fake:
        fake.add_workspace("T1", "xoxb-1")
        fake.add_user("T1", "U1")
        client = AsyncWebClient(token="xoxb-1", base_url=fake.url)
        try:
            await client.chat_postMessage(channel="U1", text="t", blocks=MESSAGES_SLACK_REFUSES[case])
        except SlackApiError as exc:
            assert exc.response["error"] == "invalid_blocks"
            return
        pytest.fail(f"the fake Slack API accepted a message Slack refuses with invalid_blocks ({case})")


@pytest.mark.parametrize("case", sorted(VIEWS_SLACK_REFUSES))
async def test_the_fake_slack_api_refuses_views_slack_refuses(case: str) -> None:
    """The same for views: a modal Slack refuses opens nothing for the person who asked."""
    async with FakeSlackAPI() as fake:
        fake.add_workspace("T1", "xoxb-1")
        client = AsyncWebClient(token="xoxb-1", base_url=fake.url)
        view = {"type": "modal", "title": {"type": "plain_text", "text": "Herald"}, **VIEWS_SLACK_REFUSES[case]}
        try:
            await client.views_open(trigger_id="1.1.t", view=view)
        except SlackApiError as exc:
            assert exc.response["error"] == "invalid_arguments"
            return
        pytest.fail(f"the fake Slack API opened a modal Slack refuses ({case})")


async def test_the_fake_slack_api_truncates_text_as_slack_does() -> None:
    """chat.postMessage: "Slack will truncate messages containing more than 40,000 characters": a
    test reading the conversation back sees only the text a member would."""
    async with FakeSlackAPI() as fake:
        fake.add_workspace("T1", "xoxb-1")
        fake.add_user("T1", "U1")
        client = AsyncWebClient(token="xoxb-1", base_url=fake.url)
        posted = await client.chat_postMessage(channel="U1", text="x" * 45_000)
        history = await client.conversations_history(channel=posted["channel"])
        stored = history["messages"][0]["text"]
        assert len(stored) <= 40_000, f"the fake kept all {len(stored):,} characters of the text"
