"""Herald's formatting language for the text a CAM writes in a notice, parsed into a small tree
that the Slack and Teams renderers turn into their own markup.

Why a language of our own: Slack's mrkdwn and the Markdown of an Adaptive Card TextBlock differ
(`*bold*` against `**bold**`, `<url|text>` against `[text](url)`, no list syntax in Slack), and
each platform acts on characters the other shows literally. A CAM writes one text; both
platforms must show the same thing. So the text is parsed once, here, and every character that
is not part of the language is literal text that each renderer escapes for its platform.

The language (also in the compose form's help and the README):

    **bold** or *bold*        bold
    _italics_                 italics
    - item  (or * item, • item) at the start of a line: a bulleted list
    [text](https://...)       a link (http, https or mailto); a bare https://... link too
    a blank line              a new paragraph; a single line break stays a line break

Anything else (`~`, `` ` ``, `#`, `>`, `<!channel>`, ...) is shown as typed. Text a partner typed
(questions, relayed replies) never goes through this: it stays escaped everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Strong:
    children: tuple["Inline", ...]


@dataclass(frozen=True)
class Emphasis:
    children: tuple["Inline", ...]


@dataclass(frozen=True)
class Link:
    url: str
    children: tuple["Inline", ...]  # the label (never another link)


Inline = Text | Strong | Emphasis | Link
Line = tuple[Inline, ...]


@dataclass(frozen=True)
class Paragraph:
    lines: tuple[Line, ...]  # shown on separate lines


@dataclass(frozen=True)
class BulletList:
    items: tuple[Line, ...]


Block = Paragraph | BulletList

FORMAT_HELP = "**bold**, _italics_, lines starting with - for a bulleted list, [text](https://...) for a link"

_BULLET = re.compile(r"^[ \t]{0,3}[-*•][ \t]+(?=\S)")
_INLINE = re.compile(
    r"(?P<link>\[(?P<label>[^\[\]\n]+)\]\((?P<target>(?:https?://|mailto:)[^\s()<>|]+)\))"
    r"|(?P<url>https?://[^\s<>()\[\]|]+)"
    r"|(?P<strong2>\*\*(?=[^\s*])(?P<s2>.+?)(?<=[^\s*])\*\*)"
    r"|(?P<strong1>(?<![\w*])\*(?=[^\s*])(?P<s1>.+?)(?<=[^\s*])\*(?![\w*]))"
    r"|(?P<em>(?<![\w_])_(?=[^\s_])(?P<e>.+?)(?<=[^\s_])_(?![\w_]))"
)
_TRAILING_PUNCTUATION = ".,;:!?'\""
_MAX_DEPTH = 3


def parse(text: str) -> tuple[Block, ...]:
    """The blocks of a CAM's text. Never fails: what is not the language is literal text."""
    blocks: list[Block] = []
    paragraph: list[Line] = []
    items: list[Line] = []

    def close() -> None:
        if paragraph:
            blocks.append(Paragraph(tuple(paragraph)))
            paragraph.clear()
        if items:
            blocks.append(BulletList(tuple(items)))
            items.clear()

    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        if not line.strip():
            close()
            continue
        bullet = _BULLET.match(line)
        if bullet:
            if paragraph:
                close()
            items.append(parse_inline(line[bullet.end():]))
        else:
            if items:
                close()
            paragraph.append(parse_inline(line.strip()))
    close()
    return tuple(blocks)


def parse_inline(text: str, depth: int = 0, *, in_link: bool = False) -> Line:
    """Bold, italics and links in one line of text."""
    out: list[Inline] = []
    position = 0
    for match in _INLINE.finditer(text):
        kind = match.lastgroup
        if kind is None:
            continue
        if in_link and kind in ("link", "url"):
            continue
        if kind in ("strong2", "strong1", "em") and depth >= _MAX_DEPTH:
            continue
        if match.start() > position:
            out.append(Text(text[position:match.start()]))
        out.append(_inline(match, depth, in_link))
        position = match.end()
        inline = out[-1]
        if kind == "url" and isinstance(inline, Link):  # trailing punctuation ends the sentence, not the link
            kept = inline.url.rstrip(_TRAILING_PUNCTUATION)
            if kept != inline.url and _safe_url(kept):
                out[-1] = Link(kept, (Text(kept),))
                position = match.start() + len(kept)
    if position < len(text):
        out.append(Text(text[position:]))
    return _merge(out)


def _inline(match: re.Match[str], depth: int, in_link: bool) -> Inline:
    kind = match.lastgroup
    if kind == "link":
        url = match.group("target")
        label = parse_inline(match.group("label"), depth + 1, in_link=True)
        return Link(url, label) if _safe_url(url) else Text(match.group(0))
    if kind == "url":
        url = match.group("url")
        return Link(url, (Text(url),)) if _safe_url(url) else Text(url)
    if kind == "strong2":
        return Strong(parse_inline(match.group("s2"), depth + 1, in_link=in_link))
    if kind == "strong1":
        return Strong(parse_inline(match.group("s1"), depth + 1, in_link=in_link))
    return Emphasis(parse_inline(match.group("e"), depth + 1, in_link=in_link))


def _merge(parts: list[Inline]) -> Line:
    merged: list[Inline] = []
    for part in parts:
        if isinstance(part, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + part.text)
        elif not (isinstance(part, Text) and not part.text):
            merged.append(part)
    return tuple(merged)


def _safe_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme == "mailto":
        return "@" in parts.path
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def plain_text(blocks: tuple[Block, ...]) -> str:
    """The text without its markup (for notifications and fallbacks)."""
    def line(parts: Line) -> str:
        return "".join(_plain(p) for p in parts)

    out = []
    for block in blocks:
        if isinstance(block, Paragraph):
            out.append("\n".join(line(item) for item in block.lines))
        else:
            out.append("\n".join("• " + line(item) for item in block.items))
    return "\n\n".join(out)


def _plain(part: Inline) -> str:
    if isinstance(part, Text):
        return part.text
    label = "".join(_plain(child) for child in part.children)
    if isinstance(part, Link) and label != part.url:
        return f"{label} ({part.url})"
    return label
