"""The content files Herald reads: the topic catalog, the onboarding journeys and the assistant's
knowledge base. `herald serve` refuses to start on one it cannot use, and `herald doctor` lists
each: both take them from `check_content_files`, which reads and validates them as the server
does, without the embedding model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from config.settings import Settings

_MAX_REASON = 300


@dataclass(frozen=True)
class ContentFile:
    name: str  # "topics", "journeys", "knowledge base"
    source: str  # what names the file: a setting, or the file itself when it is not configurable
    usable: bool
    detail: str  # what was read, or (one line) why it cannot be used
    fix: str


def check_content_files(settings: Settings) -> list[ContentFile]:
    from bot.core.onboarding.journeys import default_journeys_path, load_journeys
    from bot.core.onboarding.qa import read_knowledge_base
    from bot.topics import load_catalog
    from bot.topics.catalog import MENU_TITLE

    def topics() -> str:
        catalog = load_catalog(settings.topics_file)
        long_titles = [t.key for t in catalog.topics.values() if len(t.title) > MENU_TITLE]
        shortened = (f"; Slack's menus shorten {len(long_titles)} title(s) over {MENU_TITLE} characters "
                     f"({', '.join(long_titles[:5])})" if long_titles else "")
        return f"{len(catalog.topics)} topics from {settings.topics_file}{shortened}"

    def journeys() -> str:
        return f"{len(load_journeys().journeys)} journeys from {default_journeys_path()}"

    def knowledge_base() -> str:
        return f"{len(read_knowledge_base(settings.kb_dir))} entries from {settings.kb_dir}"

    return [_check("topics", "HERALD_TOPICS_FILE", topics, "fix HERALD_TOPICS_FILE (see config/topics.yaml)"),
            _check("journeys", "config/journeys.yaml", journeys, "fix config/journeys.yaml"),
            _check("knowledge base", "HERALD_KB_DIR", knowledge_base, "fix the YAML files in HERALD_KB_DIR")]


def _check(name: str, source: str, read: Callable[[], str], fix: str) -> ContentFile:
    try:
        return ContentFile(name, source, True, read(), "")
    except Exception as exc:  # noqa: BLE001 - each loader has its own error type (and YAML, OS errors)
        return ContentFile(name, source, False, _one_line(exc), fix)


def _one_line(exc: BaseException) -> str:
    """The loaders' messages name the file; YAML's parser spreads its over several lines."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 3] + "..."
