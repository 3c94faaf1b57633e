"""One formatting language for a CAM's notice text, rendered the same in Slack and Teams.

Golden examples go through both renderers (and the console's Block Kit HTML, which draws what
Slack would); the browser test renders the Teams side with Microsoft's own renderer. Fuzzing
checks that nothing a CAM types escapes the language: no Slack mention or link syntax, no card
structure, no Markdown beyond bold, italics, bullets and links.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.channels.slack_blocks import direct_message_blocks, formatted_sections, notice_blocks
from bot.channels.slack_blocks import escape as slack_escape
from bot.channels.slack_blocks import formatted as mrkdwn
from bot.channels.teams_cards import direct_message_card, notice_card
from bot.channels.teams_cards import formatted as card_markdown
from bot.console.blockkit import mrkdwn as slack_html
from bot.core.notices.formatting import BulletList, Emphasis, Link, Paragraph, Strong, Text, parse, plain_text
from bot.core.notices.views import NoticeView
from bot.core.ports import Button, DirectMessage
from bot.handlers.slack.common import typed_text
from bot.topics import IMPORTANCE
from bot.topics.importance import Importance
from tests.support import slack_encoded

# (CAM text, Slack mrkdwn, Teams TextBlock Markdown)
GOLDEN = [
    ("Please **stop** selling _LX-200_ now.",
     "Please *stop* selling _LX-200_ now.",
     "Please **stop** selling _LX-200_ now."),
    ("*bold* as in Slack",
     "*bold* as in Slack",
     "**bold** as in Slack"),
    ("Do this:\n- return stock\n* tell customers\n• update firmware",
     "Do this:\n\n• return stock\n• tell customers\n• update firmware",
     "Do this:\n\n- return stock\n- tell customers\n- update firmware"),
    ("Read the [recall page](https://x.example/r?a=1&b=2).",
     "Read the <https://x.example/r?a=1&amp;b=2|recall page>.",
     "Read the [recall page](https://x.example/r?a=1&b=2)."),
    ("See https://x.example/faq.",
     "See <https://x.example/faq|https://x.example/faq>.",
     "See [https://x.example/faq](https://x.example/faq)."),
    ("line one\nline two\n\nnew paragraph",
     "line one\nline two\n\nnew paragraph",
     "line one\n\nline two\n\nnew paragraph"),
    ("**_both_** and [**bold link**](https://x.example)",
     "*_both_* and <https://x.example|*bold link*>",
     "**_both_** and [**bold link**](https://x.example)"),
    # not the language: shown as typed, escaped for each platform
    # (Slack's own link syntax is not the language; the bare URL inside it still becomes a plain link)
    ("<!channel> <@U1> <https://evil.example|x> 5 * 3 * 2 snake_case_name # h\n> quote",
     "&lt;!channel&gt; &lt;@U1&gt; &lt;<https://evil.example|https://evil.example>|x&gt; 5 * 3 * 2 "
     "snake_case_name # h\n&gt; quote",
     "\\<!channel\\> \\<@U1\\> \\<[https://evil.example](https://evil.example)|x\\> 5 \\* 3 \\* 2 "
     "snake\\_case\\_name \\# h\n\n\\> quote"),
    ("[click](javascript:alert(1)) [x](ftp://a) 1. not a list",
     "[click](javascript:alert(1)) [x](ftp://a) 1. not a list",
     "\\[click\\]\\(javascript:alert\\(1\\)\\) \\[x\\]\\(ftp://a\\) 1. not a list"),
    ("1. numbered lists are not the language\n2. so they stay text",
     "1. numbered lists are not the language\n2. so they stay text",
     "1\\. numbered lists are not the language\n\n2\\. so they stay text"),
]


@pytest.mark.parametrize("text, slack, teams", GOLDEN)
def test_golden_examples_render_alike_in_slack_and_teams(text: str, slack: str, teams: str) -> None:
    assert mrkdwn(text) == slack
    assert card_markdown(text) == teams


def test_the_parse_tree() -> None:
    assert parse("Hi **you**\n- a [b](https://b.example)\n\n_end_") == (
        Paragraph(((Text("Hi "), Strong((Text("you"),))),)),
        BulletList(((Text("a "), Link("https://b.example", (Text("b"),))),)),
        Paragraph(((Emphasis((Text("end"),)),),)),
    )
    assert plain_text(parse("**Stop** now\n- a [b](https://b.example)")) == "Stop now\n\n• a b (https://b.example)"


def test_slacks_drawing_of_the_golden_examples_has_the_same_structure() -> None:
    """What the console shows for Slack (the mrkdwn drawn as Slack draws it) carries the formatting."""
    html = str(slack_html(mrkdwn("Please **stop** _now_:\n- one\n- [two](https://x.example)")))
    assert "<strong>stop</strong>" in html and "<em>now</em>" in html
    assert "• one<br>• <a href=\"https://x.example\"" in html


def _view(body: str) -> NoticeView:
    return NoticeView(notice_id=7, topic_key="operations", topic_title="Operations",
                      policy=IMPORTANCE[Importance.MUST], title="Recall", body=body, link="", deadline=None)


# Microsoft's renderer (the vendored adaptivecards 3.0.6, as Teams): a DATE()/TIME() function is drawn
# only in this form (upper case, no spaces inside the braces, RFC 3339 with seconds), else shown raw.
_CARD_DATE = re.compile(r"\{\{DATE\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[-+]\d{2}:\d{2}))(?:, ?(?:COMPACT|LONG|SHORT))?\)\}\}")
_CARD_TIME = re.compile(r"\{\{TIME\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[-+]\d{2}:\d{2}))\)\}\}")


def test_times_are_shown_in_each_readers_own_zone_on_both_platforms() -> None:
    """A deadline, a reminder's sent time and an acknowledgement's time are drawn by the platform
    in the reader's zone: Slack's date token (the UTC text its fallback), Teams' DATE()/TIME() in
    a TextBlock (the only element that evaluates them). The console draws Slack's token as the
    moment it names, readably."""
    deadline, sent, acked = (datetime(2026, 1, 9, 6, 0, tzinfo=UTC), datetime(2026, 1, 5, 0, 0, tzinfo=UTC),
                             datetime(2026, 1, 6, 22, 30, tzinfo=UTC))
    # the reminder shows when the notice was sent; once acknowledged it shows when instead (and no
    # longer says the member has not acknowledged it)
    view = replace(_view("Count the units"), deadline=deadline, sent_at=sent).as_reminder(1, None)
    views = (view, view.with_ack("Di Evans", acked))
    slack = json.dumps([notice_blocks(v) for v in views])
    for moment, utc in ((deadline, "2026-01-09 06:00 UTC"), (sent, "2026-01-05 00:00 UTC"), (acked, "2026-01-06 22:30 UTC")):
        assert f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{utc}>" in slack

    blocks = [b for shown_view in views for b in _all_elements(notice_card(shown_view))
              if any("{{" in value for value in b.values() if isinstance(value, str))]
    assert blocks and all(b["type"] == "TextBlock" for b in blocks)
    shown = "\n".join(b["text"] for b in blocks)
    assert _CARD_DATE.findall(shown) == _CARD_TIME.findall(shown) == [
        "2026-01-09T06:00:00Z", "2026-01-05T00:00:00Z", "2026-01-09T06:00:00Z", "2026-01-06T22:30:00Z"]
    assert "Acknowledge by **{{DATE(2026-01-09T06:00:00Z, SHORT)}} {{TIME(2026-01-09T06:00:00Z)}}**" in shown

    html = str(slack_html(notice_blocks(view)[1]["elements"][0]["text"]))
    assert 'Acknowledge by <strong><time datetime="2026-01-09T06:00:00Z">2026-01-09 06:00 UTC</time></strong>' in html


def _all_elements(node: object) -> list[dict]:
    if isinstance(node, list):
        return [e for item in node for e in _all_elements(item)]
    if isinstance(node, dict):
        found = [node] if "type" in node else []
        return found + [e for value in node.values() for e in _all_elements(value)]
    return []


def test_notices_use_the_language_on_both_platforms() -> None:
    body = "Please **stop**:\n- return stock"
    slack_text = [b["text"]["text"] for b in notice_blocks(_view(body)) if b["type"] == "section"]
    assert "Please *stop*:\n\n• return stock" in slack_text
    card_texts = [t["text"] for t in notice_card(_view(body))["body"] if t.get("type") == "TextBlock"]
    assert "Please **stop**:\n\n- return stock" in card_texts


def test_a_long_body_is_split_between_paragraphs_never_inside_a_link() -> None:
    body = "\n\n".join(f"Paragraph {i} with a [link](https://x.example/{i}) & more " + "x" * 300 for i in range(12))
    sections = formatted_sections(body)
    assert len(sections) > 1
    for section in sections:
        text = section["text"]["text"]
        assert len(text) <= 3000
        assert text.count("<https://") == text.count("|link>")


@pytest.mark.parametrize("body", [
    "\n".join(f"- https://partners.example.com/docs/price-list-{i:03d}.pdf" for i in range(50)) + "\n- LAST ITEM",
    "R&D <-> Sales & Ops " * 130 + "END",  # escaping (&amp; &lt; &gt;) more than doubles it
    "& " * 600 + "[a link](https://x.example/" + "y" * 1000 + ") then END",  # the link lands on the limit
], ids=["list-of-bare-links", "one-escaped-paragraph", "a-long-link"])
def test_one_paragraph_or_list_longer_than_a_section_is_split_not_cut(body: str) -> None:
    """Within the body's limit (2,800 characters typed) its mrkdwn can pass a section's 3,000."""
    from bot.core.notices.sending import MAX_BODY

    assert len(body) <= MAX_BODY
    texts = [section["text"]["text"] for section in formatted_sections(body)]
    assert len(texts) > 1 and all(len(text) <= 3000 for text in texts)
    joined = " ".join(texts)
    assert "END" in joined or "LAST ITEM" in joined
    assert all(text.count("<") == text.count(">") for text in texts)  # no link cut in half
    assert re.sub(r"\s+", " ", joined) == re.sub(r"\s+", " ", mrkdwn(body))  # nothing lost


def test_a_long_direct_message_is_split_between_lines_not_inside_an_escaped_character() -> None:
    """An escalation listing many members with long addresses: each piece of the message ends at a
    line break, so no "&lt;" is cut into "&" and "lt;" and no member's line into two sections."""
    lines = ("The deadline of notice #12 passed at 2026-02-01 17:00 UTC",
             "Contoso Security (gold): 40 members have not acknowledged it:",
             *(f"• Member {n} <member.{n}@emea-partner-service.contoso-distribution.example> (technical)"
               for n in range(40)))
    sections = [b["text"]["text"] for b in direct_message_blocks(DirectMessage(title="Escalation", lines=lines))
                if b["type"] == "section"]
    assert len(sections) > 1 and all(len(s) <= 3000 for s in sections)
    local = "<!date^1769965200^{date_short_pretty} {time}|2026-02-01 17:00 UTC>"  # the reader's zone
    assert "\n".join(sections) == "\n".join(lines).replace("<", "&lt;").replace(">", "&gt;").replace(
        "2026-02-01 17:00 UTC", local)
    assert all(s.endswith("(technical)") for s in sections[1:])


def test_a_heading_too_long_for_a_slack_header_is_never_cut_off() -> None:
    """A header holds 150 characters. A reminder's "Reminder: " moves to the context line when the
    title needs the whole header; a retraction's reason (up to 500) and a direct message's title
    that do not fit are shortened in the header and shown whole in the section under it."""
    title = "T" * 145 + " END."
    reminder = notice_blocks(replace(_view("Body"), title=title).as_reminder(1, None))
    assert reminder[0]["text"]["text"] == title
    assert reminder[1]["elements"][0]["text"].startswith("*REMINDER*  ·  ")
    short = notice_blocks(_view("Body").as_reminder(1, None))
    assert short[0]["text"]["text"] == "Reminder: Recall" and not short[1]["elements"][0]["text"].startswith("*")
    reason = "We sent this to the wrong partners; " * 10 + "the corrected notice follows. END"
    retracted = notice_blocks(replace(_view("Body"), retracted_reason=reason))
    assert len(retracted[0]["text"]["text"]) == 150 and retracted[0]["text"]["text"].endswith("…")
    assert retracted[1] == {"type": "section", "text": {"type": "mrkdwn", "text": f"*Retracted: {reason}*"}}
    message = direct_message_blocks(DirectMessage(title="Not acknowledged: " + title, lines=("x",)))
    assert message[1]["text"]["text"] == f"*Not acknowledged: {title}*"


def test_a_direct_message_too_long_for_50_blocks_keeps_its_buttons_and_counts_what_it_left_out() -> None:
    """A message holds 50 blocks; the blocks were cut at 50, dropping lines and the buttons without
    a word (a long digest or list marked delivered all the same)."""
    lines = tuple(f"• Notice {n} https://partners.example.com/docs/" + "x" * 80 for n in range(2_000))
    buttons = (Button("Remind now", "herald_remind_now", "1:acme", "primary"), Button("Open report", "r", "1"))
    blocks = direct_message_blocks(DirectMessage(title="Digest", lines=lines, buttons=buttons))
    assert len(blocks) == 50 and blocks[-1]["type"] == "actions" and len(blocks[-1]["elements"]) == 2
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    shown = sum(s.count("• Notice ") for s in sections)
    assert sections[-1].endswith(f"… and {2_000 - shown} more lines, too many for one Slack message")
    assert all(len(s) <= 3000 for s in sections) and shown > 1_000


@pytest.mark.parametrize("text", ["wxyz" + "a & b " * 700, "x" * 2_990 + " <https://x.example/long|a link> after"],
                         ids=["escaped-characters", "a-link-on-the-limit"])
def test_mrkdwn_cut_at_3000_never_falls_inside_an_escaped_character_or_a_link(text: str) -> None:
    """A text still over a section's 3,000 characters after escaping (a survey comment of 2,500
    ampersands) is shortened with an ellipsis, never into "&am" or an unclosed "<"."""
    from bot.channels.slack_blocks import cut_mrkdwn

    escaped = text.replace("&", "&amp;") if "<" not in text else text
    cut = cut_mrkdwn(escaped, 3000)
    assert len(cut) <= 3000 and cut.endswith("…") and escaped.startswith(cut[:-1])
    assert re.search(r"&[a-z]*…$", cut) is None and cut.count("<") == cut.count(">")


def test_nul_characters_in_text_are_not_taken_for_the_previews_link_slots() -> None:
    """The console's Slack drawing marks the links it pulls out with NUL-delimited slots: text that
    holds such a slot neither breaks the page nor becomes a copy of a link."""
    html = str(slack_html(mrkdwn("see https://partners.example/a and \x000\x00 then \x007\x00 too")))
    assert html.count("<a ") == 1 and "\x00" not in html


def test_text_partners_typed_stays_escaped_everywhere() -> None:
    """Questions and relayed replies are DirectMessages: no formatting language, fully escaped."""
    message = DirectMessage(title="A partner asked", lines=("**bold** _it_ - x [a](https://evil.example) <!channel>",))
    slack = json.dumps(direct_message_blocks(message))
    assert "&lt;!channel&gt;" in slack and "<https://evil.example|a>" not in slack
    card_text = direct_message_card(message)["body"][1]["text"]
    assert card_text == "\\*\\*bold\\*\\* \\_it\\_ - x \\[a\\]\\(https://evil.example\\) \\<!channel\\>"


_TYPED = st.lists(st.sampled_from(list("ab &;<>!@|#") + ["&amp;", "&lt;", "&gt;", "&copy;", "<!channel>", "<@U1>",
                                                         "<https://x.example|x>"]), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(_TYPED)
def test_fuzz_what_slack_delivers_is_read_as_typed_and_posted_back_escaped(typed: str) -> None:
    """Slack delivers a slash command's or a DM's text with & < > encoded; Herald reads back
    exactly what was typed (a typed "&lt;" included) and escapes it again when it posts it, so
    words never turn into a mention, a broadcast or a link."""
    assert typed_text(slack_encoded(typed)) == typed
    posted = slack_escape(typed_text(slack_encoded(typed)))
    assert posted == slack_encoded(typed) and "<" not in posted and ">" not in posted


_ALPHABET = st.sampled_from(list("ab _*-•[]()<>!@#&|~`\\\n:/.") + ["https://x.example", "<!channel>", "\r\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_fuzz_nothing_a_cam_types_escapes_the_language(text: str) -> None:
    slack = mrkdwn(text)
    # Slack acts on <...> only for links and mentions: every < that reaches it opens one of our links
    assert all(m.startswith("<http") for m in re.findall(r"<[^>]*>?", slack)), slack
    assert "<!" not in slack and "<@" not in slack
    teams = card_markdown(text)
    # the card stays one TextBlock with this text: JSON can carry any string, nothing breaks out
    card = notice_card(_view(text or "x"))
    assert json.loads(json.dumps(card)) == card
    # raw HTML never survives: every < in the Markdown is backslash-escaped
    assert not re.search(r"(?<!\\)<", teams), teams
    # the Slack drawing in the console is HTML-escaped apart from our own tags
    html = str(slack_html(slack))
    assert not re.search(r"<(?!/?(strong|em|del|code|br|a |/a|span|/span)\b)", html), html
