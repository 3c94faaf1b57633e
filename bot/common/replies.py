"""Chat replies that list things (onboarding progress, open hand-offs, scheduled notices) kept
within what one message may hold.

Slack keeps the first 40,000 characters of a message's text and drops the rest without a word;
Teams refuses a bot message over ~100 KB (counted as UTF-16) with 413 and shows nothing. A reply
listing one line per member or notice passes either for a large enough CAM, so it keeps as many
lines as fit and ends the list with "… and N more" and where to see the rest, as the survey
results do for their segments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


def utf16_units(text: str) -> int:
    """Length in UTF-16 code units: never less than the characters, whatever a platform counts."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class ReplyBudget:
    """How much one reply may hold on a platform, measured as that platform measures it."""

    limit: int
    join: str = "\n"  # between lines (Teams Markdown needs a blank line)
    measure: Callable[[str], int] = utf16_units

    def listing(self, head: Sequence[str], items: Sequence[str], tail: Sequence[str] = (), *,
                more: Callable[[int], str], at_most: int | None = None) -> str:
        """`head`, as many of `items` as fit (and at most `at_most`), `more(left_out)` if any were
        left out, and `tail`, joined; the longest such text within the limit (a binary search over
        the item count)."""

        def text(shown: int) -> str:
            rest = [more(len(items) - shown)] if shown < len(items) else []
            return self.join.join([*head, *items[:shown], *rest, *tail])

        most = len(items) if at_most is None else min(at_most, len(items))
        if self.measure(text(most)) <= self.limit:
            return text(most)
        low, high = 0, most - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.measure(text(middle)) <= self.limit:
                low = middle
            else:
                high = middle - 1
        return text(low)

