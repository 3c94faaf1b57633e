"""A neutral view of a notice message; Slack and Teams renderers both draw from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.topics import ImportancePolicy, TopicCatalog, parse_importance
from storage.models import Notice

ACK_ACTION = "herald_ack"


@dataclass(frozen=True)
class Acknowledged:
    by: str
    at: datetime


@dataclass(frozen=True)
class NoticeView:
    notice_id: int
    topic_key: str
    topic_title: str
    policy: ImportancePolicy
    title: str
    body: str
    link: str
    deadline: datetime | None
    acknowledged: Acknowledged | None = None

    @property
    def shows_ack_button(self) -> bool:
        return self.policy.needs_ack and self.acknowledged is None

    def with_ack(self, by: str, at: datetime) -> "NoticeView":
        return NoticeView(self.notice_id, self.topic_key, self.topic_title, self.policy, self.title,
                          self.body, self.link, self.deadline, Acknowledged(by, at))


def notice_view(notice: Notice, catalog: TopicCatalog) -> NoticeView:
    topic = catalog.topics.get(notice.topic)
    return NoticeView(
        notice_id=notice.id, topic_key=notice.topic,
        topic_title=topic.title if topic else notice.topic,
        policy=parse_importance(notice.importance), title=notice.title, body=notice.body,
        link=notice.link, deadline=notice.deadline,
    )


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
