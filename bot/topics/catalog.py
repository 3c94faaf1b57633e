"""The topic catalog, loaded from `config/topics.yaml`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from bot.common.errors import UserError
from bot.common.schedule import ReminderSchedule


@dataclass(frozen=True)
class Topic:
    key: str
    title: str
    description: str
    roles: frozenset[str]  # empty = every role
    opt_out: bool
    reminders: ReminderSchedule = ReminderSchedule()

    def routes_to(self, role: str) -> bool:
        return not self.roles or role in self.roles


@dataclass(frozen=True)
class TopicCatalog:
    topics: dict[str, Topic]
    roles: tuple[str, ...]  # every partner role the directory may use

    def get(self, key: str) -> Topic:
        topic = self.topics.get(key.strip().lower())
        if topic is None:
            hint = difflib.get_close_matches(key.lower(), self.topics, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise UserError(
                f"unknown topic '{key}'{suggestion}; topics: {', '.join(self.topics)}"
            )
        return topic


MAX_TOPICS = 10_000  # Slack's topic menu: at most 100 option groups of 100 options (slack_blocks.topic_select)
MENU_TITLE = 75  # Slack shows at most this much of a title in a menu or checkbox (Block Kit's option text)


class CatalogError(Exception):
    """The topics file is malformed (an operator problem, reported at start-up)."""


def parse_catalog(data: dict) -> TopicCatalog:
    roles = tuple(str(r).lower() for r in data.get("roles") or ())
    if not roles:
        raise CatalogError("topics file: 'roles' must list the partner roles")
    default_reminders = _reminders(data.get("reminders"), ReminderSchedule(), "the file")
    topics: dict[str, Topic] = {}
    for key, spec in (data.get("topics") or {}).items():
        spec = spec or {}
        topic_roles = {str(r).lower() for r in spec.get("roles") or ["all"]}
        unknown = topic_roles - set(roles) - {"all"}
        if unknown:
            raise CatalogError(f"topics file: topic '{key}' names unknown roles {sorted(unknown)}")
        topics[str(key).lower()] = Topic(
            key=str(key).lower(),
            title=str(spec.get("title") or key),
            description=str(spec.get("description") or ""),
            roles=frozenset() if "all" in topic_roles else frozenset(topic_roles),
            opt_out=bool(spec.get("opt_out", False)),
            reminders=_reminders(spec.get("reminders"), default_reminders, f"topic '{key}'"),
        )
    if not topics:
        raise CatalogError("topics file: no topics defined")
    if len(topics) > MAX_TOPICS:
        raise CatalogError(f"topics file: {len(topics):,} topics; at most {MAX_TOPICS:,} fit in Slack's topic menu "
                           "(100 groups of 100)")
    return TopicCatalog(topics=topics, roles=roles)


def _reminders(data: dict | None, fallback: ReminderSchedule, where: str) -> ReminderSchedule:
    try:
        return ReminderSchedule.parse(data, fallback)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"topics file: {where}: {exc}") from None


@lru_cache(maxsize=8)
def load_catalog(path: Path | None = None) -> TopicCatalog:
    from config.settings import CONFIG_DIR

    source = path or CONFIG_DIR / "topics.yaml"
    try:
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"cannot read topics file {source}: {exc}") from None
    return parse_catalog(data)
