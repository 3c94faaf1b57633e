"""TeamsChannel against the fake Bot Connector, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest

from bot.core.ports import (
    CREDENTIALS_REFUSED,
    Button,
    CredentialsRefused,
    DirectMessage,
    MessageRef,
    OutcomeKind,
    Recipient,
    UpdateRefused,
)
from bot.channels.teams import (
    DEFAULT_ALLOWED_SERVICE_HOSTS,
    BLOCKED,
    NO_CONVERSATION,
    NOT_INSTALLED,
    REMOVED,
    REMOVED_OR_BLOCKED,
    MsalTokenProvider,
    TeamsApiError,
    TeamsAuthError,
    TeamsChannel,
    TeamsCredentialsRefused,
    UntrustedServiceUrl,
    _untrusted,
)
from bot.channels.teams_cards import ACK_VERB, CARD_CONTENT_TYPE, MAX_ACTIVITY_BYTES, escape, notice_card
from bot.core.notices.views import NoticeView
from bot.topics.importance import IMPORTANCE, Importance
from tests.fakes.bot_connector import FakeBotConnector

TENANT = "tenant-1"
USER = "aad-anna"
SENT = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
DEADLINE = datetime(2026, 3, 9, 17, 0, tzinfo=timezone.utc)


def view(level: Importance = Importance.MUST, **changes: Any) -> NoticeView:
    fields: dict[str, Any] = dict(
        notice_id=7, topic_key="security", topic_title="Security advisories", policy=IMPORTANCE[level],
        title="Rotate the master keys", body="All distributors must rotate keys by Friday.",
        link="https://vendor.example/advisory/7", deadline=DEADLINE if level is Importance.MUST else None,
        sent_at=SENT,
    )
    fields.update(changes)
    return NoticeView(**fields)


def texts(card: dict[str, Any]) -> list[str]:
    """Every TextBlock text in the card, depth first."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "TextBlock":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card.get("body", []))
    return found


def execute_actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in card.get("actions", []) if a["type"] == "Action.Execute"]


class Lookup:
    """The service-URL lookup update() uses (test input in place of the database)."""

    def __init__(self, urls: dict[str, str] | None = None) -> None:
        self.urls = urls or {}
        self.asked: list[str] = []

    async def __call__(self, conversation_id: str) -> str | None:
        self.asked.append(conversation_id)
        return self.urls.get(conversation_id)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotConnector]:
    async with FakeBotConnector() as connector:
        yield connector


@pytest.fixture
async def channel() -> AsyncIterator[TeamsChannel]:
    teams = TeamsChannel(None, None, service_url_for=Lookup())
    try:
        yield teams
    finally:
        await teams.close()


def recipient(fake: FakeBotConnector, **changes: Any) -> Recipient:
    fields = dict(workspace_id=TENANT, user_id=USER, service_url=fake.url, display_name="Anna Berg")
    fields.update(changes)
    return Recipient(**fields)


def current_card(fake: FakeBotConnector, ref: MessageRef) -> dict[str, Any]:
    activity = fake.activity(ref.channel_id, ref.message_id)
    assert activity is not None
    card = fake.card_of(activity)
    assert card is not None
    return card


# ---- sending ------------------------------------------------------------------------------

async def test_first_delivery_creates_the_conversation_then_posts_the_card(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=11, maybe_sent=False)

    conversation = fake.conversation_id(USER)
    assert outcome.kind is OutcomeKind.DELIVERED
    assert (outcome.dm_channel, outcome.service_url) == (conversation, fake.url)  # for the engine to cache
    assert outcome.ref is not None and outcome.ref.channel_id == conversation
    [create] = fake.calls_to("create_conversation")
    assert create.body == {"bot": {"id": "herald-bot"}, "members": [{"id": USER}], "isGroup": False,
                           "tenantId": TENANT, "channelData": {"tenant": {"id": TENANT}}}
    [send] = fake.calls_to("send_activity")
    assert send.conversation_id == conversation
    assert [c.route for c in fake.calls] == ["create_conversation", "send_activity"]

    [activity] = fake.activities(conversation)
    assert activity["id"] == outcome.ref.message_id
    assert activity["type"] == "message"
    assert activity["summary"] == "[Must know] Rotate the master keys"
    assert activity["channelData"]["herald"] == {"notice_id": 7, "delivery_id": 11}
    assert activity["channelData"]["notification"] == {"alert": True}
    [attachment] = activity["attachments"]
    assert attachment["contentType"] == CARD_CONTENT_TYPE == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"

    [ack] = execute_actions(card)
    assert ack["verb"] == ACK_VERB == "herald.ack"
    assert ack["data"] == {"notice_id": 7, "revision": 1} and ack["title"] == "Acknowledge"
    [link] = [a for a in card["actions"] if a["type"] == "Action.OpenUrl"]
    assert link["url"] == "https://vendor.example/advisory/7"

    header = card["body"][0]
    assert header["type"] == "Container" and header["style"] == "attention"  # critical: visibly marked
    assert header["items"][1]["text"] == "CRITICAL: Rotate the master keys"
    assert header["items"][1]["color"] == "Attention"
    assert "Security advisories" in header["items"][0]["text"]
    all_text = texts(card)
    # Teams draws DATE()/TIME() in the reader's own zone (tests/test_formatting.py)
    assert "Acknowledge by **{{DATE(2026-03-09T17:00:00Z, SHORT)}} {{TIME(2026-03-09T17:00:00Z)}}**" in all_text
    assert "All distributors must rotate keys by Friday." in all_text
    assert all(block["wrap"] is True for block in _blocks(card))


def _blocks(card: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in card["body"]:
        out += item["items"] if item["type"] == "Container" else [item]
    return out


async def test_a_cached_conversation_is_used_without_creating_one(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    conversation = fake.open_conversation(USER, TENANT)
    outcome = await channel.deliver(recipient(fake, dm_channel=conversation), view(), delivery_id=1,
                                    maybe_sent=False)
    assert outcome.kind is OutcomeKind.DELIVERED and outcome.dm_channel == ""
    assert fake.calls_to("create_conversation") == []
    assert len(fake.activities(conversation)) == 1


async def test_need_to_know_has_no_button_and_no_critical_styling(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake), view(Importance.NEED), delivery_id=2, maybe_sent=False)
    assert outcome.ref is not None
    card = current_card(fake, outcome.ref)
    assert execute_actions(card) == []
    assert [a["type"] for a in card["actions"]] == ["Action.OpenUrl"]
    assert "style" not in card["body"][0]
    assert card["body"][0]["items"][1]["text"] == "Rotate the master keys"
    assert "notification" not in fake.activity(outcome.ref.channel_id, outcome.ref.message_id)["channelData"]


async def test_no_service_url_means_no_conversation_yet(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake, service_url=""), view(), delivery_id=3, maybe_sent=False)
    assert outcome.kind is OutcomeKind.FAILED and outcome.reason == NO_CONVERSATION
    assert fake.calls == []


async def test_a_default_service_url_reaches_members_who_never_wrote(fake: FakeBotConnector) -> None:
    teams = TeamsChannel(default_service_url=fake.url)
    try:
        outcome = await teams.deliver(recipient(fake, service_url=""), view(), delivery_id=4, maybe_sent=False)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.DELIVERED and outcome.dm_channel == fake.conversation_id(USER)
    assert outcome.service_url == fake.url  # stored with the chat: its updates need it in any process


async def test_an_update_uses_the_default_service_url_when_none_is_stored(fake: FakeBotConnector) -> None:
    """A new process knows nothing of the chats the last one opened: an update of a chat whose
    account has no service URL goes where chats are opened, as a send does."""
    sender = TeamsChannel(default_service_url=fake.url)
    try:
        sent = await sender.deliver(recipient(fake, service_url=""), view(), delivery_id=5, maybe_sent=False)
    finally:
        await sender.close()
    assert sent.ref is not None
    restarted = TeamsChannel(default_service_url=fake.url, service_url_for=Lookup())
    try:
        await restarted.update(TENANT, sent.ref, view().with_ack("Anna Berg", SENT))
    finally:
        await restarted.close()
    assert fake.calls_to("update_activity")[-1].status == 200


async def test_an_update_with_no_service_url_known_at_all_is_refused_for_good(fake: FakeBotConnector) -> None:
    """Not an internal error retried every minute for ever: the engine records and audits it."""
    teams = TeamsChannel(service_url_for=Lookup())
    try:
        with pytest.raises(UpdateRefused, match="no Teams service URL is known for conversation a:conv-x"):
            await teams.update(TENANT, MessageRef("a:conv-x", "1:1"), view())
    finally:
        await teams.close()
    assert fake.calls == []


async def test_maybe_sent_is_answered_from_memory_without_a_second_post(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    first = await channel.deliver(recipient(fake), view(), delivery_id=21, maybe_sent=False)
    again = await channel.deliver(recipient(fake), view(), delivery_id=21, maybe_sent=True)
    assert again.kind is OutcomeKind.DELIVERED and again.ref == first.ref
    assert (again.dm_channel, again.service_url) == (first.dm_channel, fake.url)  # the engine may not have cached it yet
    assert len(fake.calls_to("send_activity")) == 1


# ---- updates ------------------------------------------------------------------------------

async def test_update_puts_the_acknowledged_card_without_the_button(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=5, maybe_sent=False)
    assert outcome.ref is not None
    acked = view().with_ack("Anna Berg", datetime(2026, 3, 3, 8, 15, tzinfo=timezone.utc))

    await channel.update(TENANT, outcome.ref, acked)

    [put] = fake.calls_to("update_activity")
    assert put.method == "PUT"
    assert (put.conversation_id, put.activity_id) == (outcome.ref.channel_id, outcome.ref.message_id)
    assert put.body["id"] == outcome.ref.message_id
    assert "notification" not in put.body["channelData"]  # an edit does not alert again
    card = current_card(fake, outcome.ref)
    assert execute_actions(card) == []
    assert "✅ Acknowledged by **Anna Berg** at {{DATE(2026-03-03T08:15:00Z, SHORT)}} {{TIME(2026-03-03T08:15:00Z)}}" \
        in texts(card)
    assert len(fake.activities(outcome.ref.channel_id)) == 1  # replaced in place


async def test_update_looks_up_the_service_url_when_it_does_not_know_it(fake: FakeBotConnector) -> None:
    conversation = fake.open_conversation(USER, TENANT)
    sender = TeamsChannel()
    try:
        outcome = await sender.deliver(recipient(fake, dm_channel=conversation), view(), delivery_id=6,
                                       maybe_sent=False)
    finally:
        await sender.close()
    assert outcome.ref is not None
    lookup = Lookup({conversation: fake.url})
    fresh = TeamsChannel(service_url_for=lookup)  # e.g. another replica
    try:
        await fresh.update(TENANT, outcome.ref, view(revision=2, title="Rotate the master keys today"))
        await fresh.update(TENANT, outcome.ref, view(revision=3))
    finally:
        await fresh.close()
    assert lookup.asked == [conversation]  # remembered after the first look-up
    card = current_card(fake, outcome.ref)
    assert "edited (revision 3)" in card["body"][0]["items"][0]["text"]


async def test_update_of_an_unknown_message_raises(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=7, maybe_sent=False)
    assert outcome.ref is not None
    with pytest.raises(UpdateRefused, match="no longer exists in Teams") as raised:  # for good: not retried
        await channel.update(TENANT, MessageRef(outcome.ref.channel_id, "1:missing"), view())
    cause = raised.value.__cause__
    assert isinstance(cause, TeamsApiError) and cause.status == 404 and cause.code == "ActivityNotFound"


async def test_update_without_a_known_service_url_raises(channel: TeamsChannel) -> None:
    with pytest.raises(Exception, match="no Teams service URL"):
        await channel.update(TENANT, MessageRef("a:unknown", "1:1"), view())


async def test_update_that_is_rate_limited_raises_so_it_stays_pending(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=8, maybe_sent=False)
    assert outcome.ref is not None
    fake.fail_next("update_activity", 429, retry_after=3)
    with pytest.raises(TeamsApiError) as raised:
        await channel.update(TENANT, outcome.ref, view(revision=2))
    assert raised.value.status == 429 and raised.value.retry_after == 3.0


async def test_retracted_card(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=9, maybe_sent=False)
    assert outcome.ref is not None
    await channel.update(TENANT, outcome.ref, view(retracted_reason="wrong date"))
    card = current_card(fake, outcome.ref)
    assert "actions" not in card
    assert texts(card)[0] == "Retracted: wrong date"
    assert "Notice #7 (Rotate the master keys) was withdrawn by the sender. Please disregard it." in texts(card)
    assert fake.activity(outcome.ref.channel_id, outcome.ref.message_id)["summary"] == "Retracted: wrong date"


# ---- reminders ----------------------------------------------------------------------------

async def test_reminder_replies_to_the_original(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    original = await channel.deliver(recipient(fake), view(), delivery_id=10, maybe_sent=False)
    assert original.ref is not None
    conversation = original.ref.channel_id
    reminder = view().as_reminder(2, (conversation, original.ref.message_id))

    outcome = await channel.deliver(recipient(fake, dm_channel=conversation), reminder, delivery_id=12,
                                    maybe_sent=False)

    assert outcome.kind is OutcomeKind.DELIVERED and outcome.ref is not None
    [reply] = fake.calls_to("reply_activity")
    assert reply.activity_id == original.ref.message_id
    stored = fake.activity(conversation, outcome.ref.message_id)
    assert stored["replyToId"] == original.ref.message_id
    assert stored["summary"] == "[Reminder: please acknowledge] Rotate the master keys"
    card = fake.card_of(stored)
    assert card["body"][0]["items"][1]["text"] == "Reminder: Rotate the master keys"
    assert ("You have not acknowledged notice #7 sent {{DATE(2026-03-02T09:30:00Z, SHORT)}} "
            "{{TIME(2026-03-02T09:30:00Z)}} yet (reminder 2)." in texts(card))
    assert [a["verb"] for a in execute_actions(card)] == [ACK_VERB]


async def test_reminder_whose_original_is_gone_is_sent_as_a_new_message(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    conversation = fake.open_conversation(USER, TENANT)
    reminder = view().as_reminder(1, (conversation, "1:deleted"))
    outcome = await channel.deliver(recipient(fake, dm_channel=conversation), reminder, delivery_id=13,
                                    maybe_sent=False)
    assert outcome.kind is OutcomeKind.DELIVERED
    assert [c.route for c in fake.calls] == ["reply_activity", "send_activity"]
    assert len(fake.activities(conversation)) == 1


# ---- escaping -----------------------------------------------------------------------------

async def test_markdown_in_user_text_is_escaped(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    hostile = view(
        title="[click](http://evil.example) **now**",
        body="Hi _there_\n- not a list\n1. not numbered\n# not a heading\n> not a quote\n<at>all</at> `code` ~x~",
        topic_title="Sec [x](http://evil)",
        link="javascript:alert(1)",
    )
    outcome = await channel.deliver(recipient(fake), hostile, delivery_id=14, maybe_sent=False)
    assert outcome.ref is not None
    card = current_card(fake, outcome.ref)
    heading = card["body"][0]["items"][1]["text"]
    assert heading == r"CRITICAL: \[click\]\(http://evil.example\) \*\*now\*\*"
    body = next(t for t in texts(card) if t.startswith("Hi "))
    # the body is the CAM's text in Herald's formatting language (bot.core.notices.formatting):
    # italics and a bullet list are kept; every other Markdown construct stays escaped
    assert body == ("Hi _there_\n\n- not a list\n\n1\\. not numbered\n\n\\# not a heading\n\n"
                    "\\> not a quote\n\n\\<at\\>all\\</at\\> \\`code\\` \\~x\\~")
    assert r"Sec \[x\]\(http://evil\)" in card["body"][0]["items"][0]["text"]
    for text in texts(card):
        assert "[click](" not in text and "](http" not in text
    # a non-http link never becomes a button; it is shown as escaped text
    assert [a["type"] for a in card["actions"]] == ["Action.Execute"]
    assert "Link: javascript:alert\\(1\\)" in texts(card)


def test_user_text_never_becomes_card_structure() -> None:
    breakout = '"}]}, {"type": "Action.OpenUrl", "url": "http://evil"} \\'
    card = notice_card(view(title=breakout, body=breakout))
    assert [a["type"] for a in card["actions"]] == ["Action.Execute", "Action.OpenUrl"]
    assert card["actions"][1]["url"] == "https://vendor.example/advisory/7"
    assert json.loads(json.dumps(card)) == card
    assert escape("a\\b") == "a\\\\b"  # a trailing backslash cannot escape our own markup


async def test_a_huge_body_is_shortened_to_fit(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake), view(body="é" * 120_000), delivery_id=15,
                                    maybe_sent=False)
    assert outcome.kind is OutcomeKind.DELIVERED and outcome.ref is not None
    [send] = fake.calls_to("send_activity")
    assert len(json.dumps(send.body, ensure_ascii=False).encode("utf-16-le")) <= MAX_ACTIVITY_BYTES
    body = next(t for t in texts(current_card(fake, outcome.ref)) if t.startswith("éé"))
    assert body.endswith("…")


# ---- errors -------------------------------------------------------------------------------

async def test_429_with_retry_after_is_a_throttled_retry(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    conversation = fake.open_conversation(USER, TENANT)
    fake.fail_next("send_activity", 429, retry_after=2)
    outcome = await channel.deliver(recipient(fake, dm_channel=conversation), view(), delivery_id=16,
                                    maybe_sent=False)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.throttled is True and outcome.retry_after == 2.0
    assert outcome.reason == "Teams rate limit"
    assert fake.activities(conversation) == []


async def test_429_while_creating_the_conversation(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    fake.fail_next("create_conversation", 429, retry_after=5)
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=17, maybe_sent=False)
    assert outcome.kind is OutcomeKind.RETRY and outcome.throttled and outcome.retry_after == 5.0
    assert outcome.dm_channel == ""


async def test_created_conversation_is_reported_even_when_the_send_fails(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    fake.fail_next("send_activity", 503)
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=18, maybe_sent=False)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.throttled is False and outcome.retry_after is None
    assert outcome.reason == "Teams answered HTTP 503 ServiceUnavailable"
    assert outcome.dm_channel == fake.conversation_id(USER)  # cached, so the retry does not create again


@pytest.mark.parametrize("status", [412, 502, 503, 504])
async def test_transient_statuses_are_retried(fake: FakeBotConnector, channel: TeamsChannel, status: int) -> None:
    fake.fail_next("send_activity", status, retry_after=1 if status == 412 else None)
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=19, maybe_sent=False)
    assert outcome.kind is OutcomeKind.RETRY and outcome.throttled is False
    assert outcome.retry_after == (1.0 if status == 412 else None)


async def test_a_500_service_error_is_not_tried_again(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    """Microsoft's status codes table: 500 ServiceError, "Retry request: No" (the request may have
    been processed; a bot retries 412, 429, 502, 503 and 504 only)."""
    fake.fail_next("send_activity", 500)
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=21, maybe_sent=False)
    assert outcome.kind is OutcomeKind.FAILED and "500" in outcome.reason


async def test_403_invalid_bot_api_host_names_the_setting(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    """Microsoft's status codes table: 403 InvalidBotApiHost, the tenant is in a government cloud."""
    fake.fail_next("send_activity", 403, code="InvalidBotApiHost", message="Invalid bot api host")
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=22, maybe_sent=False)
    assert outcome.kind is OutcomeKind.FAILED and "HERALD_TEAMS_SERVICE_URL" in outcome.reason


async def test_403_member_removed_herald(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    """BotNotInConversationRoster on a conversation Herald had: the app was uninstalled since."""
    conversation = fake.open_conversation(USER, TENANT)
    fake.remove_app(USER)
    outcome = await channel.deliver(recipient(fake, dm_channel=conversation), view(), delivery_id=20,
                                    maybe_sent=False)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == REMOVED == "the member removed Herald in Teams"
    assert fake.calls_to("send_activity")[0].error_code == "BotNotInConversationRoster"


async def test_403_member_blocked_herald(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    conversation = fake.open_conversation(USER, TENANT)
    fake.block(USER)
    outcome = await channel.deliver(recipient(fake, dm_channel=conversation), view(), delivery_id=20,
                                    maybe_sent=False)
    assert outcome.kind is OutcomeKind.FAILED and outcome.reason == BLOCKED
    assert fake.calls_to("send_activity")[0].error_code == "ConversationBlockedByUser"


async def test_403_on_creating_the_conversation_says_herald_is_not_installed_for_the_member(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    """Creating a 1:1 conversation with someone without the app is refused with
    BotNotInConversationRoster (MicrosoftDocs/msteams-docs#11125): Herald was never installed for
    them, which is not something they did (and not "removed or blocked")."""
    fake.remove_app(USER)
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=21, maybe_sent=False)
    (create,) = fake.calls_to("create_conversation")
    assert (create.status, create.error_code) == (403, "BotNotInConversationRoster")
    assert outcome.kind is OutcomeKind.FAILED and outcome.reason == NOT_INSTALLED
    assert "not installed" in outcome.reason and "removed" not in outcome.reason


async def test_another_403_for_a_member_may_be_either(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    conversation = fake.open_conversation(USER, TENANT)
    fake.fail_next("send_activity", 403, code="Forbidden", message="Forbidden")
    outcome = await channel.deliver(recipient(fake, dm_channel=conversation), view(), delivery_id=23,
                                    maybe_sent=False)
    assert outcome.reason == REMOVED_OR_BLOCKED


async def test_403_bot_disabled_by_admin_says_whom_to_ask_and_stops_the_tenant(
        fake: FakeBotConnector, channel: TeamsChannel) -> None:
    """The whole tenant refuses Herald: the outcome names the tenant's admin and the Teams admin
    center, and carries the code for the engine to mark the tenant unreachable (an update too)."""
    fake.disable_bot(TENANT)
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=22, maybe_sent=False)
    assert outcome.kind is OutcomeKind.FAILED and outcome.removed_cause == "BotDisabledByAdmin"
    assert outcome.reason == (f"a Teams admin of tenant {TENANT} blocked Herald: ask them to allow it in the Teams "
                              "admin center; the copies are sent when it is allowed again")
    fake.enable_bot(TENANT)
    sent = await channel.deliver(recipient(fake), view(), delivery_id=23, maybe_sent=False)
    fake.disable_bot(TENANT)
    with pytest.raises(UpdateRefused) as refused:
        await channel.update(TENANT, sent.ref, view())
    assert refused.value.removed_cause == "BotDisabledByAdmin" and str(refused.value) == outcome.reason


async def test_404_conversation_gone(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    conversation = fake.open_conversation(USER, TENANT)
    fake.remove_conversation(conversation)
    outcome = await channel.deliver(recipient(fake, dm_channel=conversation), view(), delivery_id=23,
                                    maybe_sent=False)
    assert outcome.kind is OutcomeKind.FAILED and outcome.reason == "the Teams conversation no longer exists"


async def test_400_is_a_failure_naming_the_code(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    fake.fail_next("send_activity", 400, code="BadArgument", message="Unknown attachment type")
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=24, maybe_sent=False)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == "Teams refused the message (BadArgument: Unknown attachment type)"


async def test_network_errors_are_retried(fake: FakeBotConnector) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    teams = TeamsChannel()
    try:
        outcome = await teams.deliver(recipient(fake, service_url=dead), view(), delivery_id=25, maybe_sent=False)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.RETRY and outcome.reason.startswith("network error talking to Teams")


async def test_timeouts_are_retried(fake: FakeBotConnector) -> None:
    fake.delay("create_conversation", 1.0)
    teams = TeamsChannel(timeout=0.2)
    try:
        outcome = await teams.deliver(recipient(fake), view(), delivery_id=26, maybe_sent=False)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.RETRY and "Timeout" in outcome.reason


# ---- SSRF guard ---------------------------------------------------------------------------

async def test_untrusted_service_url_is_refused_when_the_allow_list_is_set(fake: FakeBotConnector) -> None:
    teams = TeamsChannel(allowed_service_hosts=list(DEFAULT_ALLOWED_SERVICE_HOSTS),
                         service_url_for=Lookup({"a:conv-x": fake.url}))
    try:
        outcome = await teams.deliver(recipient(fake), view(), delivery_id=27, maybe_sent=False)
        # refused for good (recorded on the row and audited), not retried for ever as an internal error
        with pytest.raises(UpdateRefused, match="refusing to send to untrusted service URL") as refused:
            await teams.update(TENANT, MessageRef("a:conv-x", "1:1"), view())
        assert isinstance(refused.value.__cause__, UntrustedServiceUrl)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason.startswith("refusing to send to untrusted service URL")
    assert fake.calls == []


@pytest.mark.parametrize(("url", "trusted"), [
    ("https://smba.trafficmanager.net/emea/", True),
    ("https://smba.trafficmanager.net/amer/", True),
    ("https://SMBA.trafficmanager.net./teams/", True),
    ("https://europe.webchat.botframework.com/", True),
    ("https://smba.infra.gov.teams.microsoft.us/", True),
    ("http://smba.trafficmanager.net/emea/", False),
    ("https://evil.trafficmanager.net/", False),
    ("https://smba.trafficmanager.net.evil.example/", False),
    ("https://evilbotframework.com/", False),
    ("https://user:pw@smba.trafficmanager.net/", False),
    ("https://10.0.0.5/", False),
    ("https://[::1]/", False),
    ("https://smba.trafficmanager.net:bad/", False),
    ("file:///etc/passwd", False),
])
def test_service_url_allow_list(url: str, trusted: bool) -> None:
    assert (_untrusted(url, DEFAULT_ALLOWED_SERVICE_HOSTS) == "") is trusted


# ---- auth ---------------------------------------------------------------------------------

async def test_anonymous_mode_sends_no_authorization_header(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    outcome = await channel.deliver(recipient(fake), view(), delivery_id=28, maybe_sent=False)
    assert outcome.ref is not None
    await channel.update(TENANT, outcome.ref, view(revision=2))
    assert len(fake.calls) == 3
    assert all(call.authorization is None for call in fake.calls)


async def test_bearer_token_from_the_provider(fake: FakeBotConnector) -> None:
    asked = []

    async def provider() -> str:
        asked.append(1)
        return "token-abc"

    fake.expect_token("token-abc")
    teams = TeamsChannel("app-123", provider)
    try:
        outcome = await teams.deliver(recipient(fake), view(), delivery_id=29, maybe_sent=False)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.DELIVERED
    assert [call.authorization for call in fake.calls] == ["Bearer token-abc"] * 2
    assert fake.calls_to("create_conversation")[0].body["bot"] == {"id": "28:app-123"}


async def test_a_rejected_token_is_refreshed_once(fake: FakeBotConnector) -> None:
    class Rotating:
        def __init__(self) -> None:
            self.token = "stale"

        async def __call__(self) -> str:
            return self.token

        def invalidate(self) -> None:
            self.token = "fresh"

    fake.expect_token("fresh")
    teams = TeamsChannel("app-123", Rotating())
    try:
        outcome = await teams.deliver(recipient(fake), view(), delivery_id=30, maybe_sent=False)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.DELIVERED
    assert [(c.route, c.status) for c in fake.calls] == [
        ("create_conversation", 401), ("create_conversation", 201), ("send_activity", 201)]


async def test_a_401_with_a_fresh_token_too_is_a_refusal_of_herald_not_of_the_copy(fake: FakeBotConnector) -> None:
    """The connector refuses Herald's token itself (401 again after one fresh token: the Azure Bot
    is bound to another app registration): every conversation would refuse it, so the copy is not
    failed but waits for Herald's credentials (`credentials_refused`: the engine pauses Teams)."""
    fresh = 0

    class Provider:
        async def __call__(self) -> str:
            return f"token-{fresh}"

        def invalidate(self) -> None:
            nonlocal fresh
            fresh += 1

    fake.expect_token("the token of another app registration")
    teams = TeamsChannel("app-123", Provider())
    try:
        outcome = await teams.deliver(recipient(fake), view(), delivery_id=31, maybe_sent=False)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.DEFERRED and outcome.credentials_refused
    assert outcome.reason.startswith(CREDENTIALS_REFUSED) and "HTTP 401" in outcome.reason
    assert [(c.route, c.authorization) for c in fake.calls] == [
        ("create_conversation", "Bearer token-0"), ("create_conversation", "Bearer token-1")]


async def test_an_update_refused_with_401_raises_credentials_refused(fake: FakeBotConnector) -> None:
    async def provider() -> str:
        return "not-the-token"

    teams = TeamsChannel("app-123", provider, service_url_for=Lookup({"a:conv": fake.url}))
    fake.expect_token("right")
    try:
        with pytest.raises(CredentialsRefused, match="HTTP 401"):
            await teams.update(TENANT, MessageRef("a:conv", "1"), view())
    finally:
        await teams.close()


async def test_a_token_provider_failure_is_retried(fake: FakeBotConnector) -> None:
    async def provider() -> str:
        raise OSError("login.microsoftonline.com unreachable")

    teams = TeamsChannel("app-123", provider)
    try:
        outcome = await teams.deliver(recipient(fake), view(), delivery_id=32, maybe_sent=False)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.RETRY and "Bot Connector token" in outcome.reason
    assert fake.calls == []


# ---- direct messages ----------------------------------------------------------------------

async def test_send_message_card_with_buttons(fake: FakeBotConnector, channel: TeamsChannel) -> None:
    message = DirectMessage(
        title="Escalation: notice #7",
        lines=("Anna Berg has not acknowledged *Rotate the master keys*.", "[call](http://evil)"),
        buttons=(Button("Take it", "herald_take", "7:3", "primary"), Button("Dismiss", "herald_dismiss", "7:3")),
    )
    outcome = await channel.send_message(recipient(fake), message)
    assert outcome.kind is OutcomeKind.DELIVERED and outcome.ref is not None
    card = current_card(fake, outcome.ref)
    assert card["version"] == "1.5"
    assert texts(card) == ["Escalation: notice \\#7",
                           "Anna Berg has not acknowledged \\*Rotate the master keys\\*.",
                           "\\[call\\]\\(http://evil\\)"]
    assert card["actions"] == [
        {"type": "Action.Execute", "title": "Take it", "verb": "herald_take", "data": {"value": "7:3"},
         "style": "positive"},
        {"type": "Action.Execute", "title": "Dismiss", "verb": "herald_dismiss", "data": {"value": "7:3"}},
    ]


# ---- MSAL token provider ------------------------------------------------------------------

class _ScriptedEntra(MsalTokenProvider):
    """Replaces only the MSAL network call (Entra ID is not reachable from tests) with scripted
    answers in MSAL's result format; the caching and error handling under test are the real ones."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        super().__init__("app-123", "secret", "tenant-1")
        self.answers = answers
        self.acquired = 0

    def _acquire(self) -> dict[str, Any]:
        self.acquired += 1
        return self.answers.pop(0)


async def test_msal_provider_caches_until_expiry_and_reports_errors() -> None:
    provider = _ScriptedEntra([{"access_token": "t1", "expires_in": 3599}, {"access_token": "t2", "expires_in": 3599},
                               {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client "
                                "secret provided.\nTrace ID: x"}])
    assert provider.authority == "https://login.microsoftonline.com/tenant-1"
    assert MsalTokenProvider("a", "p").authority == "https://login.microsoftonline.com/botframework.com"
    assert "secret" not in repr(provider)
    assert [await provider(), await provider()] == ["t1", "t1"] and provider.acquired == 1
    provider.invalidate()
    assert await provider() == "t2"
    provider.invalidate()
    with pytest.raises(TeamsAuthError, match=r"\(invalid_client\) AADSTS7000215: Invalid client secret provided.$"):
        await provider()


async def test_entra_refusing_the_secret_is_a_refusal_of_herald_asked_once_for_the_waiting_sends(
        fake: FakeBotConnector) -> None:
    """AADSTS7000222 (the client secret expired): the sends waiting for a token get that one
    answer instead of asking Entra ID each (a broadcast would otherwise ask once per copy), and
    their copies wait for Herald's credentials instead of failing."""
    expired = {"error": "invalid_client", "error_description": "AADSTS7000222: The provided client secret keys "
               "for app 'app-123' are expired.\nTrace ID: x"}
    provider = _ScriptedEntra([expired, expired])
    teams = TeamsChannel("app-123", provider)
    try:
        outcomes = await asyncio.gather(*(teams.deliver(recipient(fake, user_id=f"aad-{i}"), view(), delivery_id=i,
                                                        maybe_sent=False) for i in range(5)))
    finally:
        await teams.close()
    assert provider.acquired == 1 and fake.calls == []
    assert all(o.credentials_refused and o.kind is OutcomeKind.DEFERRED and "AADSTS7000222" in o.reason
               for o in outcomes)
    with pytest.raises(TeamsCredentialsRefused):  # a later call asks again (the engine's re-check)
        await provider()
    assert provider.acquired == 2


async def test_entra_unable_to_answer_is_a_passing_failure_not_a_refusal(fake: FakeBotConnector) -> None:
    provider = _ScriptedEntra([{"error": "temporarily_unavailable", "error_description": "AADSTS50196: busy"}])
    teams = TeamsChannel("app-123", provider)
    try:
        outcome = await teams.deliver(recipient(fake), view(), delivery_id=33, maybe_sent=False)
    finally:
        await teams.close()
    assert outcome.kind is OutcomeKind.RETRY and not outcome.credentials_refused


@pytest.mark.parametrize(("authority_host", "tenant", "expected_authority", "expected_scope"), [
    ("https://login.microsoftonline.us", None, "https://login.microsoftonline.us/MicrosoftServices.onmicrosoft.us",
     "https://api.botframework.us/.default"),
    ("https://login.microsoftonline.us/", "tenant-1", "https://login.microsoftonline.us/tenant-1",
     "https://api.botframework.us/.default"),
    ("https://login.microsoftonline.com", None, "https://login.microsoftonline.com/botframework.com",
     "https://api.botframework.com/.default"),
])
async def test_the_connector_token_is_asked_for_in_the_authoritys_cloud(
        monkeypatch: pytest.MonkeyPatch, authority_host: str, tenant: str | None, expected_authority: str,
        expected_scope: str) -> None:
    """Microsoft (GovernmentConstants): in Azure Government a bot → channel token is asked of
    login.microsoftonline.us for `https://api.botframework.us/.default`, by default in the tenant
    `MicrosoftServices.onmicrosoft.us`. Herald asked for the public scope and tenant whatever the
    authority, a token the US Government connector does not take. MSAL itself is replaced by a
    recorder: login.microsoftonline.us cannot be faked by name."""
    import msal

    asked: list[tuple[str, list[str]]] = []

    class RecordingApp:
        def __init__(self, client_id: str, *, authority: str, **kwargs: Any) -> None:
            self.authority = authority

        def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
            asked.append((self.authority, scopes))
            return {"access_token": "t", "expires_in": 3600}

    monkeypatch.setattr(msal, "ConfidentialClientApplication", RecordingApp)
    assert await MsalTokenProvider("app-123", "secret", tenant, authority_host=authority_host)() == "t"
    assert asked == [(expected_authority, [expected_scope])]
