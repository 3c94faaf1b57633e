"""Review (area: time, time zones and schedules): failing tests for defects found by review.

Each test states what a user would see and what the README/SPEC promise instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core.commands.parser import SendCommand
from bot.core.notices import sending as notices
from storage.models import Delivery
from tests.support import Rig


async def _send(rig: Rig, importance: str, audience: str, *, topic: str = "announcements", **extra) -> int:  # noqa: ANN003
    command = SendCommand(importance=importance, topic=topic, audience=audience, title=f"{importance} {topic}",
                          body="Details inside", **extra)
    preview = await notices.create_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    return preview.notice.id


def _posts_to(rig: Rig, channel: str) -> list:
    return [c for c in rig.fake.calls_to("chat.postMessage") if c.channel == channel and c.ok]


# ---- 2. quiet hours are decided once, when the row is written, never when it is sent ------------

async def test_need_to_know_delayed_into_the_night_waits_for_the_morning(rig: Rig) -> None:
    """A need-to-know notice is written at 19:59 in Berlin (not quiet yet, so not held). Herald is
    down for the evening (a crash, or a deploy in the usual night-time maintenance window) and
    comes back at 02:00 Berlin time: the outbox sends the backlog at once and Anna's phone buzzes
    at 02:00. SPEC: need-to-know is "held until the end of the member's quiet hours, in their time
    zone"; the outbox should check the member's quiet hours when it sends (bo and anna are both in
    Berlin; neither should be messaged before 08:00)."""
    rig.clock.set(datetime(2026, 1, 5, 18, 59, tzinfo=UTC))  # Monday 19:59 Berlin
    notice_id = await _send(rig, "need-to-know", "org:acme")
    assert await Delivery.filter(notice_id=notice_id, status="pending").count() == 2  # written, not sent yet

    rig.clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # Herald back up: Tuesday 02:00 Berlin
    await rig.herald.outbox.drain()
    night = [c.channel for c in rig.fake.calls_to("chat.postMessage") if c.ok]
    assert night == [], f"need-to-know notice sent at 02:00 Berlin time to {night}"

    rig.clock.set(datetime(2026, 1, 6, 7, 0, tzinfo=UTC))  # 08:00 Berlin
    await rig.herald.outbox.drain()
    assert sorted(c.channel for c in rig.fake.calls_to("chat.postMessage") if c.ok) == ["DUANNA", "DUBO"]


# ---- 3. acknowledgement deadlines are shown in UTC to every member, wherever they are ------------

def _all_text(blocks: list[dict]) -> str:
    out: list[str] = []

    def walk(node) -> None:  # noqa: ANN001
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(blocks)
    return "\n".join(out)


async def test_deadline_is_shown_in_the_members_own_time(rig: Rig) -> None:
    """Di works in Sydney (directory: Australia/Sydney). A must-know notice due 2026-01-09 06:00 UTC
    tells her "Acknowledge by 2026-01-09 06:00 UTC": she has to work out herself that this is 17:00
    her time, on the day she acts. Herald knows her zone (it holds her notices for her quiet hours)
    and Slack renders `<!date^unix^{date_short_pretty} {time}|fallback>` in each reader's own zone
    (docs.slack.dev, "Formatting text for app surfaces": date formatting). Expected: the deadline in
    her local time (17:00 Sydney) or as a Slack date token for that instant."""
    rig.clock.set(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))  # Monday 11:00 Sydney
    deadline = datetime(2026, 1, 9, 6, 0, tzinfo=UTC)  # Friday 17:00 Sydney
    await _send(rig, "must-know", "member:di@keys.example", deadline=deadline)
    await rig.herald.outbox.drain()
    (post,) = _posts_to(rig, "DUDI")
    text = _all_text(post.args["blocks"])
    token = f"<!date^{int(deadline.timestamp())}^"
    assert token in text or "2026-01-09 17:00" in text, (
        f"the deadline shown to a member in Sydney: {[line for line in text.splitlines() if 'Acknowledge' in line]}")
