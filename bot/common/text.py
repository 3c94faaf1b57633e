"""Text typed or pasted by people, made safe to store and show."""

from __future__ import annotations

import re

# C0 control characters but tab, line feed and carriage return: invisible, meaningless in a notice
# or a question, and PostgreSQL's text columns refuse NUL outright (text pasted from a PDF or a
# spreadsheet can hold them).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def without_control_characters(text: str) -> str:
    return _CONTROL.sub("", text)
