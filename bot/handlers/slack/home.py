"""The App Home tab: a member's preferences, published again after every change; for vendor staff,
how to use Herald (`/herald`)."""

from __future__ import annotations

from bot.channels.slack_blocks import home_view, not_a_member_home, staff_home
from bot.core.directory.staff import staff_for_slack
from bot.core.directory.preferences import preferences_for
from bot.core.onboarding.assistant import member_for
from bot.topics import TopicCatalog
from storage.models import Platform


async def publish_home(client, catalog: TopicCatalog, team: str, user: str, note: str = "") -> None:  # noqa: ANN001
    member = await member_for(Platform.SLACK.value, team, user)
    if member is None:
        staff = await staff_for_slack(team, user)
        await client.views_publish(user_id=user, view=staff_home() if staff else not_a_member_home())
        return
    prefs = await preferences_for(member.id, catalog)
    await client.views_publish(user_id=user, view=home_view(prefs, catalog, note=note))
