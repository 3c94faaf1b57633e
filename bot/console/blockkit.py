"""Block Kit as Slack draws it, in HTML: the block types Herald sends (header, section, context,
actions, divider) and Slack's mrkdwn (bold, italics, strike, code, links, the emoji Herald uses,
line breaks). The console's previews and the sandbox inbox use it, so what a page shows is the
very JSON Herald sends to Slack, not a second rendering of the notice.

Everything is escaped with markupsafe; only the tags this module writes reach the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from bot.common.text import without_control_characters

# The emoji short names Herald's own messages use, as Slack shows them.
EMOJI = {
    "rotating_light": "🚨", "large_orange_diamond": "🔶", "information_source": "ℹ️", "link": "🔗",
    "white_check_mark": "✅", "warning": "⚠️", "no_entry": "⛔", "no_entry_sign": "🚫", "bell": "🔔",
    "key": "🔑", "pencil2": "✏️", "calendar": "📆", "outbox_tray": "📤", "tada": "🎉",
    "double_vertical_bar": "⏸️", "arrow_forward": "▶️",
}

_TOKEN = re.compile(r"<([^<>|\n]+)(?:\|([^<>\n]+))?>")
_FORMATS = (
    (re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])"), "strong"),
    (re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])"), "em"),
    (re.compile(r"(?<![\w~])~(?=[^\s~])(.+?)(?<=[^\s~])~(?![\w~])"), "del"),
    (re.compile(r"`([^`\n]+)`"), "code"),
)
_EMOJI = re.compile(r":([a-z0-9_+-]+):")
_SLOT = "\x00{}\x00"

ButtonRenderer = Callable[[dict[str, Any]], Markup]


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mrkdwn(text: str) -> Markup:
    """Slack mrkdwn as HTML."""
    text = without_control_characters(text)  # NUL marks the links' slots below: none may come in the text
    links: list[Markup] = []

    def keep(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("http://", "https://", "mailto:")):
            shown = Markup(_styled(str(escape(_unescape(label or target)))))
            links.append(Markup('<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>').format(
                _unescape(target), shown))
        elif target.startswith("!date^"):
            links.append(_date_token(target, label))
        elif target.startswith(("@", "#", "!")):
            links.append(Markup('<span class="mention">{}</span>').format(label or target.lstrip("!")))
        else:
            links.append(escape(match.group(0)))
        return _SLOT.format(len(links) - 1)

    html = _styled(str(escape(_unescape(_TOKEN.sub(keep, text)))))
    html = html.replace("\n", "<br>")
    html = re.sub("\x00(\\d+)\x00", lambda m: str(links[int(m.group(1))]), html)
    return Markup(html)


def _date_token(target: str, fallback: str | None) -> Markup:
    """A Slack date token (`<!date^unix^format|fallback>`), which Slack draws in the reader's own
    zone: here its fallback (the UTC text), marked up as the moment it names."""
    stamp = target.split("^")[1]
    try:
        moment = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError):
        return escape(f"<{target}|{fallback}>" if fallback else f"<{target}>")
    shown = _unescape(fallback) if fallback else moment.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}">{}</time>').format(moment.isoformat().replace("+00:00", "Z"), shown)


def _styled(html: str) -> str:
    """Bold, italics, strike, code and emoji on already escaped text."""
    for pattern, tag in _FORMATS:
        html = pattern.sub(lambda m, tag=tag: f"<{tag}>{m.group(1)}</{tag}>", html)
    return _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), html)


def _text(obj: dict[str, Any] | None) -> Markup:
    if not obj:
        return Markup("")
    if obj.get("type") == "mrkdwn":
        return mrkdwn(obj.get("text", ""))
    return _plain(obj.get("text", ""))


def _plain(text: str) -> Markup:
    """plain_text with `emoji: true`: short names become emoji, nothing else is interpreted."""
    return Markup(_EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), str(escape(text))))


def disabled_button(element: dict[str, Any]) -> Markup:
    style = element.get("style", "")
    return Markup('<button type="button" class="sk-button {}" disabled>{}</button>').format(
        style, _plain(element.get("text", {}).get("text", "")))


def blocks_html(blocks: list[dict[str, Any]], *, button: ButtonRenderer = disabled_button) -> Markup:
    """A message's blocks as HTML; `button` draws each button (a form in the sandbox inbox)."""
    parts: list[Markup] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            parts.append(Markup('<div class="sk-header">{}</div>').format(_text(block.get("text"))))
        elif kind == "section":
            inner = _text(block.get("text"))
            fields = Markup("").join(Markup('<div class="sk-field">{}</div>').format(_text(f))
                                     for f in block.get("fields", []))
            accessory = block.get("accessory")
            extra = button(accessory) if accessory and accessory.get("type") == "button" else Markup("")
            parts.append(Markup('<div class="sk-section"><div class="sk-text">{}</div>{}{}</div>').format(
                inner, fields, extra))
        elif kind == "context":
            items = Markup(" ").join(Markup("<span>{}</span>").format(_text(e)) for e in block.get("elements", []))
            parts.append(Markup('<div class="sk-context">{}</div>').format(items))
        elif kind == "actions":
            buttons = Markup("").join(button(e) for e in block.get("elements", []) if e.get("type") == "button")
            parts.append(Markup('<div class="sk-actions">{}</div>').format(buttons))
        elif kind == "divider":
            parts.append(Markup('<hr class="sk-divider">'))
    return Markup('<div class="sk-message">{}</div>').format(Markup("").join(parts))
