"""Topic catalog and importance policy."""

from bot.topics.catalog import Topic, TopicCatalog, load_catalog
from bot.topics.importance import (
    IMPORTANCE,
    Importance,
    ImportancePolicy,
    parse_importance,
)

__all__ = [
    "IMPORTANCE",
    "Importance",
    "ImportancePolicy",
    "Topic",
    "TopicCatalog",
    "load_catalog",
    "parse_importance",
]
