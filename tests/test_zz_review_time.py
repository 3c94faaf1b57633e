"""Review (area: time, time zones and schedules): failing tests for defects found by review.

Each test states what a user would see and what the README/SPEC promise instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core.commands.parser import SendCommand
from bot.core.notices import sending as notices
from tests.support import Rig


async def _send(rig: Rig, importance: str, audience: str, *, topic: str = "announcements", **extra) -> int:  # noqa: ANN003
    command = SendCommand(importance=importance, topic=topic, audience=audience, title=f"{importance} {topic}",
                          body="Details inside", **extra)
    preview = await notices.create_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    return preview.notice.id


def _posts_to(rig: Rig, channel: str) -> list:
    return [c for c in rig.fake.calls_to("chat.postMessage") if c.channel == channel and c.ok]


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
