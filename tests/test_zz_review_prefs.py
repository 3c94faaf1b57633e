"""Review (area: prefs): members' preferences and the CAM's pause, through the real surfaces
(signed Slack requests to the running app, the fake Slack API, the injected clock).

Each test fails on the current code for the reason its docstring states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.channels.slack_blocks import PREF_TIMEZONE_ACTION, PREF_TOPICS_ACTION, SEND_ACTION
from bot.core.commands.parser import SendCommand
from bot.core.notices import sending as notices
from storage.models import AuditEvent, Delivery, Member
from tests.fakes.slack_signing import event_body, interaction_body
from tests.support import CAM_USER, TEAM, SlackHarness, wait_until

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin (Anna, Bo of Acme Locks)


async def _reply(slack: SlackHarness, text: str, user: str = CAM_USER) -> str:
    """`/herald <text>` as a signed slash command; the text Herald answered with."""
    response, body, key = await slack.command(text, user=user)
    assert response.status == 200
    if body:
        return body
    (call,) = await slack.responses(key)
    return call.args.get("text", "")


async def _must_know(slack: SlackHarness, audience: str, *, deadline: datetime | None = None,
                     title: str = "Recall LX-200") -> int:
    command = SendCommand(importance="must-know", topic="operations", audience=audience, title=title,
                          body="Stop selling LX-200", deadline=deadline)
    preview = await notices.create_draft(None, command, slack.herald.catalog, now=slack.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, slack.herald.catalog, now=slack.clock.now(), operator="test")
    await slack.herald.outbox.drain()
    return preview.notice.id


async def _hours(slack: SlackHarness, hours: int) -> None:
    """Let `hours` hours pass, the scheduler ticking every hour and the outbox sending what is due."""
    for _ in range(hours):
        slack.clock.advance(hours=1)
        await slack.herald.tick()
        await slack.herald.outbox.drain()


# ---- the CAM's pause -----------------------------------------------------------------------------

# ---- preferences in the Slack App Home ----------------------------------------------------------

async def _home(slack: SlackHarness, user: str) -> dict:
    """The member opens Herald's Home tab (a signed `app_home_opened` event): the view published."""
    before = len(slack.fake.calls_to("views.publish"))
    response = await slack.post_signed(event_body({"type": "app_home_opened", "user": user, "tab": "home"}, TEAM))
    assert response.status == 200
    published = await wait_until(lambda: (c := slack.fake.calls_to("views.publish")) and len(c) > before and c,
                                 what="the home tab")
    return published[-1].args["view"]


async def _home_action(slack: SlackHarness, user: str, action: dict) -> dict:
    """One control of the Home tab changed (a signed block_actions request, as Slack sends it from
    the view); the view Herald published after it."""
    view = await _home(slack, user)
    before = len(slack.fake.calls_to("views.publish"))
    payload = {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "AHERALD",
               "trigger_id": "t", "container": {"type": "view", "view_id": "VHOME"}, "view": view,
               "actions": [action]}
    response = await slack.post_signed(interaction_body(payload))
    assert response.status == 200
    published = await wait_until(lambda: (c := slack.fake.calls_to("views.publish")) and len(c) > before and c,
                                 what="the home tab after the change")
    return published[-1].args["view"]


def _need_to_know(slack: SlackHarness, audience: str, topic: str = "support") -> SendCommand:
    return SendCommand(importance="need-to-know", topic=topic, audience=audience, title="Portal maintenance",
                       body="The partner portal is down on Wednesday")


async def _send(slack: SlackHarness, command: SendCommand) -> int:
    preview = await notices.create_draft(None, command, slack.herald.catalog, now=slack.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, slack.herald.catalog, now=slack.clock.now(), operator="test")
    return preview.notice.id


def _dms(slack: SlackHarness, channel: str, text: str = "Portal maintenance") -> list:
    """The DMs posted to `channel` that show `text` (the notice; not a journey step sent meanwhile)."""
    return [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == channel and c.ok
            and text in str(c.args.get("blocks") or c.args.get("text"))]


async def test_leaving_a_topic_in_the_home_tab_cancels_its_need_to_know_copy_still_held_for_quiet_hours(
        slack_http: SlackHarness) -> None:
    """A need-to-know Support notice is held for Anna's quiet hours (21:30 in Berlin). That evening
    she leaves Support in her Home tab ("Saved."). README: "Opt-outs apply to nice- and need-to-know
    notices" and "Leaving a topic also takes its notices out of a digest not yet sent" (digests.py:
    "a nice-to-know notice is not pushed to someone who has said they no longer want its topic").
    A need-to-know copy not sent yet is in the same position, yet at 08:00 it is pushed to her
    anyway: nothing looks at the opt-out after the copy was written."""
    slack = slack_http
    slack.clock.set(datetime(2026, 1, 5, 20, 30, tzinfo=UTC))  # Mon 21:30 in Berlin
    notice_id = await _send(slack, _need_to_know(slack, "member:anna@acme.example", topic="support"))
    await slack.herald.outbox.drain()
    assert not _dms(slack, "DUANNA")  # held for her quiet hours

    slack.clock.advance(minutes=10)
    view = await _home(slack, "UANNA")
    [block] = [b for b in view["blocks"] if b.get("accessory", {}).get("action_id") == PREF_TOPICS_ACTION]
    kept = [o for o in block["accessory"]["options"] if o["value"] != "support"]
    view = await _home_action(slack, "UANNA", {"action_id": PREF_TOPICS_ACTION, "type": "checkboxes",
                                               "block_id": block["block_id"], "selected_options": kept})
    assert "Saved." in str(view)
    assert (await Member.get(email="anna@acme.example")).topic_opt_outs == ["support"]

    slack.clock.set(datetime(2026, 1, 6, 7, 5, tzinfo=UTC))  # Tue 08:05 in Berlin
    await slack.herald.tick()
    await slack.herald.outbox.drain()
    copy = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example")
    assert not _dms(slack, "DUANNA"), (
        f"Anna left Support at 21:40 and still got its need-to-know notice at 08:05 (copy {copy.status})")


# ---- digests ------------------------------------------------------------------------------------

async def test_a_notice_retracted_while_its_digest_waits_in_the_outbox_is_not_listed_in_it(
        slack_http: SlackHarness) -> None:
    """A CAM sends a nice-to-know notice on Sunday evening; at 09:00 in Berlin on Monday the tick
    queues Anna's digest in the outbox, which sends digests in the workspace's lane after every
    notice copy (README), so behind a broadcast it can wait there a long while. Meanwhile the CAM
    retracts the notice (`retract`: "pending sends ... stop"). The digest then goes out still
    listing the retracted notice, title, id and link: `digest_message` is rendered once when the
    run is queued, and a retraction drops a notice only from digests not queued yet (README:
    a digest's retracted notices are left out; "Leaving a topic also takes its notices out of a
    digest not yet sent")."""
    slack = slack_http
    slack.clock.set(datetime(2026, 1, 4, 19, 0, tzinfo=UTC))  # Sunday evening
    response, _, key = await slack.command(
        "send nice-to-know product-updates member:anna@acme.example | LX-300 datasheet v2 | Updated specs")
    assert response.status == 200
    (preview,) = await slack.responses(key)
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["action_id"] == SEND_ACTION))
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)

    slack.clock.set(MONDAY_9_UTC - timedelta(hours=1))  # Monday 09:00 in Berlin: Anna's digest moment
    assert (await slack.herald.tick())["digests"] == 1  # queued; the outbox sends it when it gets to it
    slack.clock.advance(minutes=2)
    assert "Retracted" in await _reply(slack, f"retract {notice_id} wrong specs, do not use")
    await slack.herald.outbox.drain()

    digests = [c for c in slack.fake.calls_to("chat.postMessage") if c.ok and c.channel == "DUANNA"
               and "Your Herald digest" in str(c.args.get("text"))]
    listed = [c for c in digests if "LX-300 datasheet v2" in str(c.args.get("blocks"))]
    assert not listed, (
        f"Anna's digest, sent at {slack.clock.now():%H:%M} UTC, lists notice #{notice_id} retracted at 08:02 UTC: "
        f"{[b['text']['text'] for b in listed[0].args['blocks'] if b['type'] == 'section']}")
