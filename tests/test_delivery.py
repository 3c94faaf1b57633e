"""The outbox engine against the fake Slack API: throttling, retries, failures, crash recovery,
and several workers draining the same outbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.commands.parser import SendCommand
from bot.core.delivery.outbox import Job
from bot.core.notices import sending as notices
from bot.core.delivery.retry import RetryPolicy
from storage.models import Acknowledgement, AuditEvent, Delivery, DeliveryLane, Notice, PlatformAccount
from tests.support import TEAM, TOKEN, Rig, broadcast, directory_csv
from tests.teams_support import TeamsRig


async def _statuses(notice_id: int) -> dict[str, str]:
    rows = await Delivery.filter(notice_id=notice_id).values("member__email", "status")
    return {r["member__email"]: r["status"] for r in rows}


async def test_rate_limit_pauses_the_workspace_and_honours_retry_after(rig: Rig) -> None:
    notice_id = await rig.broadcast()
    rig.fake.fail_next("chat.postMessage", status=429, retry_after=30)
    await rig.herald.outbox.drain()
    pending = await Delivery.filter(notice_id=notice_id, status="pending").order_by("id")
    # one message hit the limit; the rest of the workspace's queue waited instead of hammering on
    assert len(pending) >= 1
    assert rig.fake.call_count("chat.postMessage") < 4 + len(pending)
    for row in pending:
        assert row.next_attempt_at >= rig.clock.now() + timedelta(seconds=29)
    await rig.herald.outbox.drain()  # nothing is due yet
    assert await Delivery.filter(notice_id=notice_id, status="pending").count() == len(pending)
    rig.clock.advance(seconds=31)
    await rig.herald.outbox.drain()
    assert set((await _statuses(notice_id)).values()) == {"delivered", "failed"}  # Ed has no account
    assert await Delivery.filter(notice_id=notice_id, status="delivered").count() == 4
    channels = [c.channel for c in rig.fake.calls_to("chat.postMessage") if c.ok]
    assert sorted(channels) == ["DUANNA", "DUBO", "DUCY", "DUDI"]  # each exactly once
    assert sorted(len(rig.fake.messages(f"D{u}")) for u in ("UANNA", "UBO", "UCY", "UDI")) == [1, 1, 1, 1]


async def test_server_errors_are_retried_with_backoff(rig: Rig) -> None:
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    rig.fake.fail_next("chat.postMessage", status=500, times=2)
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == "pending" and row.attempts == 1 and "HTTP 500" in row.error
    first_wait = row.next_attempt_at - rig.clock.now()
    rig.clock.advance(seconds=first_wait.total_seconds())
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == "pending" and row.attempts == 2
    assert row.next_attempt_at - rig.clock.now() > first_wait  # backing off
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == "delivered" and row.attempts == 3 and row.error == ""


async def test_a_gateways_html_error_page_is_retried(rig: Rig) -> None:
    """Slack's edge answers 502/504 with an HTML page, not the API's JSON: retried like a 5xx."""
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    rig.fake.fail_next("chat.postMessage", status=502, html=True)
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == "pending" and row.attempts == 1 and "HTTP 502" in row.error
    rig.clock.advance(hours=1)
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == "delivered" and row.attempts == 2


async def test_gives_up_after_max_attempts_with_a_reason(rig: Rig) -> None:
    notice_id = await rig.broadcast(audience="member:bo@acme.example")
    rig.fake.fail_next("chat.postMessage", status=503, times=50)
    for _ in range(10):
        await rig.herald.outbox.drain()
        rig.clock.advance(hours=1)
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == "failed" and row.attempts == rig.herald.settings.delivery_max_attempts
    assert row.error.startswith("gave up after 6 attempts") and "503" in row.error
    assert await AuditEvent.filter(notice_id=notice_id, kind="delivery.failed", member_id=row.member_id).count() == 1  # type: ignore[attr-defined]
    assert (await Notice.get(id=notice_id)).status == "sent"


async def test_a_teams_copy_that_is_only_ever_throttled_is_not_given_up(teams: TeamsRig) -> None:
    """Microsoft (learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit): after a 429
    wait for the Retry-After, "If the response doesn't include a Retry-After header, use an
    exponential backoff with random jitter". A 429 says "later", never "no": it is not an attempt.
    Six 429s without Retry-After used to use up RetryPolicy.max_attempts, and the must-know copy
    was failed for good ("gave up after 6 attempts: Teams rate limit"); now the tenant's lane is
    paused with growing backoff (at most the policy's 10 minutes) and the copy goes when it ends."""
    notice_id = await broadcast(teams.herald, teams.clock, "member:eve@teamsco.example")
    teams.connector.fail_next("send_activity", 429, times=6)  # throttled, no Retry-After
    pauses = []
    for _ in range(8):
        await teams.herald.outbox.drain()
        lane = await DeliveryLane.get(platform="teams")
        if lane.paused_until is not None and lane.paused_until > teams.clock.now():
            pauses.append((lane.paused_until - teams.clock.now()).total_seconds())
        teams.clock.advance(seconds=600)
    copy = await Delivery.get(notice_id=notice_id)
    statuses = [c.status for c in teams.connector.calls_to("send_activity")]
    assert copy.status == "delivered", f"the copy is {copy.status!r} ({copy.error}) after {statuses}"
    assert copy.attempts == 1 and statuses == [429] * 6 + [201]
    assert len(pauses) == 6 and pauses == sorted(pauses) and 2 <= pauses[0] <= 2.5 and pauses[-1] <= 600


def test_a_throttle_pause_backs_off_with_jitter_up_to_the_cap() -> None:
    """RetryPolicy.throttle_pause: 2, 6, 18, ... seconds (+0-25 % jitter), never above the cap,
    however many 429s in a row."""
    policy = RetryPolicy()
    for throttles, base in [(1, 2), (2, 6), (3, 18), (4, 54)]:
        assert base <= policy.throttle_pause(throttles) <= base * 1.25
    assert policy.throttle_pause(6) <= policy.cap_seconds
    assert policy.throttle_pause(10_000) == policy.cap_seconds


async def test_permanent_errors_fail_with_an_actionable_reason(rig: Rig) -> None:
    rig.fake.fail_next("chat.postMessage", error="channel_not_found")  # Slack's answer for a user id it will not DM
    notice_id = await rig.broadcast(audience="member:cy@bolt.example")
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == "failed" and "UCY does not exist in workspace T0PARTNER" in row.error
    assert row.attempts == 1


async def test_revoked_token_fails_with_reconnect_advice(rig: Rig) -> None:
    rig.fake.revoke(TOKEN)
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    assert row.status == "failed" and "reconnect it to deliver" in row.error


async def test_first_message_posts_to_the_user_id_and_caches_the_dm_channel(rig: Rig) -> None:
    """No conversations.open on the hot path: the first post goes to the user id, Slack answers
    with the DM's D... id, which is cached and used from then on."""
    await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    assert (await PlatformAccount.get(user_id="UANNA")).dm_channel == "DUANNA"
    await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    assert rig.fake.call_count("conversations.open") == 0
    assert [c.args["channel"] for c in rig.fake.calls_to("chat.postMessage")] == ["UANNA", "DUANNA"]
    assert [r.channel_id for r in await Delivery.filter(member__email="anna@acme.example")] == ["DUANNA", "DUANNA"]


async def test_crash_after_send_is_not_sent_twice(rig: Rig) -> None:
    """A worker posted the message and died before recording it; the lease expires and another
    worker finds the message by its metadata instead of posting it again."""
    notice_id = await rig.broadcast(audience="member:anna@acme.example")
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    posted_ts = row.message_id
    await Delivery.filter(id=row.id).update(status="sending", message_id="", delivered_at=None,
                                            claimed_by="dead-worker", claimed_until=rig.clock.now() + timedelta(seconds=60))
    await rig.herald.outbox.drain()
    assert (await Delivery.get(id=row.id)).status == "sending"  # lease still held by the dead worker
    rig.clock.advance(seconds=61)
    await rig.another_worker().outbox.drain()
    row = await Delivery.get(id=row.id)
    assert row.status == "delivered" and row.message_id == posted_ts
    assert rig.fake.call_count("chat.postMessage") == 1
    assert rig.fake.call_count("conversations.history") == 1


async def test_crash_before_send_is_sent_after_the_lease(rig: Rig) -> None:
    notice_id = await rig.broadcast(audience="member:bo@acme.example")
    await Delivery.filter(notice_id=notice_id).update(status="sending", claimed_by="dead-worker",
                                                      claimed_until=rig.clock.now() - timedelta(seconds=1))
    await rig.herald.outbox.drain()
    assert (await Delivery.get(notice_id=notice_id)).status == "delivered"
    assert rig.fake.call_count("chat.postMessage") == 1


async def test_two_workers_never_send_the_same_row(rig: Rig) -> None:
    rows = [f"big,Big Co,gold,emea,de,retail,large,reseller,cam@vendor.example,m{i}@big.example,M {i},sales,UTC,en,{TEAM},UM{i},,"
            for i in range(120)]
    for i in range(120):
        rig.fake.add_user(TEAM, f"UM{i}")
    from bot.core.directory.importer import import_directory

    await import_directory(directory_csv(rows), now=rig.clock.now(), actor="test")
    notice_id = await rig.broadcast(audience="org:big")
    workers = [rig.herald, rig.another_worker(), rig.another_worker()]
    await asyncio.gather(*(w.outbox.drain() for w in workers))
    assert await Delivery.filter(notice_id=notice_id, status="delivered").count() == 120
    posted = [c.channel for c in rig.fake.calls_to("chat.postMessage")]
    assert len(posted) == 120 and len(set(posted)) == 120
    for worker in workers[1:]:
        await worker.close()


def test_slack_renders_each_view_once_and_every_change_anew() -> None:
    """A broadcast's copies share one rendering; an acknowledgement or an edit is a new view."""
    from datetime import datetime, timezone

    from bot.channels.slack import SlackChannel, SlackWorkspaces
    from bot.core.notices.views import NoticeView
    from bot.topics import parse_importance

    channel = SlackChannel(SlackWorkspaces("http://127.0.0.1:9/api/"))
    view = NoticeView(notice_id=7, topic_key="operations", topic_title="Operations",
                      policy=parse_importance("must-know"), title="Recall", body="Stop selling *LX-200*.",
                      link="", deadline=None)
    assert channel._render(view) is channel._render(NoticeView(**{**view.__dict__}))

    def blocks(v: NoticeView) -> str:  # the rendering is the JSON body's "text" and "blocks" members
        return str(json.loads(b"{" + channel._render(v) + b"}")["blocks"])

    acked = view.with_ack("Ana", datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc))
    assert "Acknowledged by *Ana*" in blocks(acked)
    assert "Acknowledged" not in blocks(view)
    edited = NoticeView(**{**view.__dict__, "revision": 2, "body": "Stop selling *LX-300*."})
    assert "LX-300" in blocks(edited) and "LX-200" in blocks(view)


@pytest.mark.parametrize("members", [
    {"channel": "UB0000001", "unfurl_links": False, "unfurl_media": False},
    {"channel": 'D"q\\uote\n', "ts": "1712345678.000100", "thread_ts": "1.2", "reply_broadcast": True},
    {"text": "Réunion 😀 <b>&", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "ü\""}}],
     "count": 3, "share": 0.5, "none": None},
])
def test_slack_request_members_are_the_json_the_standard_encoder_writes(members: dict) -> None:
    """Each copy's chat.postMessage / chat.update body is put together from JSON members (the
    cached rendering, then the channel, ts and flags encoded per copy): the same bytes as
    json.dumps writes, escapes and non-ASCII text included, and one JSON object once joined."""
    from bot.channels.slack import _json_body, _json_members

    assert _json_members(**members) == json.dumps(members, separators=(",", ":")).encode()[1:-1]
    body = _json_body(_json_members(text="t", blocks=[]), channel=members.get("channel", "U1"), unfurl_links=False)
    assert json.loads(body) == {"channel": members.get("channel", "U1"), "unfurl_links": False, "text": "t",
                                "blocks": []}


def test_slack_sdk_formats_no_debug_line_per_request_unless_asked_to() -> None:
    """slack_sdk builds a debug line with the whole request body whenever its logger's own level
    is unset; Herald's clients get the level configured for slack_sdk."""
    import logging

    from bot.channels.slack import _sdk_logger

    sdk = logging.getLogger("slack_sdk")
    before = sdk.level
    try:
        sdk.setLevel(logging.WARNING)
        assert _sdk_logger().level == logging.WARNING
        sdk.setLevel(logging.DEBUG)  # an operator debugging Slack calls still gets the lines
        assert _sdk_logger().level == logging.DEBUG
    finally:
        sdk.setLevel(before)


async def test_a_broadcasts_first_sends_read_the_workspace_token_once(rig: Rig, monkeypatch) -> None:  # noqa: ANN001
    """The first sends of a broadcast all ask for the workspace's token at once: one read."""
    from storage.models import Workspace

    reads = 0
    original = Workspace.get_or_none

    async def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        nonlocal reads
        reads += 1
        return await original(*args, **kwargs)

    workspaces = rig.herald.channels["slack"].workspaces
    workspaces.forget(TEAM)
    monkeypatch.setattr(Workspace, "get_or_none", counted)
    tokens = await asyncio.gather(*(workspaces.token_for(TEAM) for _ in range(16)))
    assert tokens == [TOKEN] * 16 and reads == 1
    assert await workspaces.token_for(TEAM) == TOKEN and reads == 1  # cached


async def test_each_claim_draws_the_notice_as_it_is_now(rig: Rig) -> None:
    """The engine keeps a notice's shared view parts from one claim to the next; an edit, or an
    acknowledgement made meanwhile (here on the member's other platform), is drawn all the same."""
    from bot.core.notices.revisions import edit_notice

    notice_id = await rig.broadcast()
    source, now = rig.herald.outbox.notices, rig.clock.now()
    rows = await Delivery.filter(notice_id=notice_id, account_id__not_isnull=True).order_by("id")

    async def claim_one() -> Job:
        [job] = await source.claim(("slack", TEAM), 1, "test-turn", now, now + timedelta(seconds=60))
        return job

    first = await claim_one()
    assert (first.row.id, first.view.revision, first.view.body) == (rows[0].id, 1, "Stop selling LX-200")
    assert (await claim_one()).notice is first.notice  # unchanged: not read again

    await edit_notice(notice_id, None, rig.herald.catalog, now=now, operator="test", body="Stop selling LX-300")
    edited = await claim_one()
    assert (edited.view.revision, edited.view.body, edited.notice.revision) == (2, "Stop selling LX-300", 2)
    assert edited.view.acknowledged is None

    await Acknowledgement.create(notice_id=notice_id, member_id=rows[3].member_id, platform="teams", revision=1,
                                 acknowledged_at=now)
    acknowledged = await claim_one()
    assert acknowledged.row.id == rows[3].id
    assert acknowledged.view.acknowledged is not None and acknowledged.view.acknowledged.at == now
    assert acknowledged.notice is edited.notice


async def test_the_tick_marks_sent_a_notice_whose_replica_died_before_doing_so(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica killed between storing a notice's last copies and marking it sent left it "sending"
    with nothing left to send; the clock's tick marks it sent (and leaves one still being sent alone)."""
    from bot.core.delivery import outbox as outbox_module

    async def died(now: object, ids: object) -> int:
        return 0

    with monkeypatch.context() as patched:
        patched.setattr(outbox_module, "complete_sent_notices", died)
        finished = await rig.broadcast(audience="member:anna@acme.example")
        await rig.herald.outbox.drain()
    unsent = await rig.broadcast(audience="member:bo@acme.example")
    assert (await Notice.get(id=finished)).status == "sending"
    assert (await Delivery.get(notice_id=finished)).status == "delivered"
    assert (await rig.herald.tick())["notices_completed"] == 1
    assert (await Notice.get(id=finished)).status == "sent"
    assert (await Notice.get(id=unsent)).status == "sending"  # its copy is still to be sent


async def test_a_must_know_title_of_150_characters_is_shown_whole_in_slack(rig: Rig) -> None:
    """Titles may be 150 characters (sending.MAX_TITLE), a Slack header holds 150: "CRITICAL: "
    before such a title pushed its last ten characters (here: which lots are recalled) out of the
    header, and the title appeared nowhere else. Now the marker opens the context line instead."""
    title = ("Recall: stop selling and quarantine every LX-200 smart lock shipped since March, the latch "
             "can fail open in cold weather; affected lots no. 4711-47990")
    assert len(title) == 150
    command = SendCommand(importance="must-know", topic="announcements", audience="all", title=title,
                          body="Return them to the distributor.")
    preview = await notices.create_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await rig.herald.outbox.drain()
    (posted, *_) = rig.fake.calls_to("chat.postMessage")
    header, context = posted.args["blocks"][:2]
    assert header["text"]["text"] == title
    assert context["elements"][0]["text"].startswith("*CRITICAL*  ·  :rotating_light: *Must know*")


async def test_the_deadline_reaches_a_member_in_sydney_in_her_own_time(rig: Rig) -> None:
    """Di works in Sydney. Her must-know notice, due 2026-01-09 06:00 UTC, said "Acknowledge by
    2026-01-09 06:00 UTC" and left her to work out that it is 17:00 her time. It now carries
    Slack's date token for that moment, which Slack draws in each reader's zone and format (the UTC
    text is its fallback)."""
    rig.clock.set(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))  # Monday 11:00 Sydney
    deadline = datetime(2026, 1, 9, 6, 0, tzinfo=UTC)  # Friday 17:00 Sydney
    await rig.broadcast("member:di@keys.example", deadline=deadline)
    await rig.herald.outbox.drain()
    (post,) = [c for c in rig.fake.calls_to("chat.postMessage") if c.channel == "DUDI" and c.ok]
    context = post.args["blocks"][1]["elements"][0]["text"]
    assert "Acknowledge by *<!date^1767938400^{date_short_pretty} {time}|2026-01-09 06:00 UTC>*" in context
