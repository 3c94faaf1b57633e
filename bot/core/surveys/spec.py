"""What a survey asks and how it may be answered, validated once for chat, the CLI and journeys.

Answers are two to five options (each a one-click button) or a 1-5 or 0-10 scale (one button per
point). The stored value of an answer is the option's index (from 0) or the scale point.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from bot.common.errors import UserError

MAX_QUESTION = 150  # Slack's header and button limits keep a pulse question short
MAX_OPTION = 60  # Slack button labels stop at 75 characters
MAX_FOLLOW_UP = 150  # Slack input placeholders stop at 150
MIN_OPTIONS, MAX_OPTIONS = 2, 5
SCALES = ((1, 5), (0, 10))
SCALE_WORDS = "scale:1-5 or scale:0-10"
NPS_SCALE = (0, 10)
_SCALE = re.compile(r"^\s*scale\s*:\s*(\d{1,2})\s*[-–]\s*(\d{1,2})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SurveySpec:
    question: str
    options: tuple[str, ...] = ()
    scale: tuple[int, int] | None = None
    follow_up: str = ""
    anonymous: bool = False

    @property
    def kind(self) -> str:
        return "scale" if self.scale else "options"

    @property
    def is_nps(self) -> bool:
        return self.scale == NPS_SCALE

    def choices(self) -> list[tuple[int, str]]:
        """(stored value, button label) in the order they are shown."""
        if self.scale:
            return [(point, str(point)) for point in range(self.scale[0], self.scale[1] + 1)]
        return list(enumerate(self.options))

    def label(self, value: int) -> str:
        return dict(self.choices()).get(value, str(value))

    def accepts(self, value: int) -> bool:
        return value in dict(self.choices())

    def describe_answers(self) -> str:
        if self.scale:
            return f"scale {self.scale[0]}-{self.scale[1]}"
        return " / ".join(self.options)

    def digest(self) -> str:
        """A short fingerprint of the definition: a changed question makes a new journey survey."""
        data = json.dumps([self.question, self.options, self.scale, self.follow_up, self.anonymous])
        return hashlib.sha256(data.encode("utf-8")).hexdigest()[:10]


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def parse_scale(text: str) -> tuple[int, int] | None:
    """`scale:1-5` → (1, 5); None when the text is not a scale term at all."""
    match = _SCALE.match(text or "")
    if match is None:
        return None
    scale = (int(match.group(1)), int(match.group(2)))
    if scale not in SCALES:
        raise UserError(f"'{text.strip()}' is not a scale Herald offers; use {SCALE_WORDS}")
    return scale


def build_spec(question: str, answers: list[str] | tuple[str, ...], *, follow_up: str = "",
               anonymous: bool = False) -> SurveySpec:
    """Validate a survey: `answers` is one `scale:...` term or two to five option labels."""
    question = _one_line(question)
    if not question:
        raise UserError("the survey question is empty")
    if len(question) > MAX_QUESTION:
        raise UserError(f"the question is {len(question)} characters; keep it under {MAX_QUESTION}")
    follow_up = _one_line(follow_up)
    if len(follow_up) > MAX_FOLLOW_UP:
        raise UserError(f"the follow-up question is {len(follow_up)} characters; keep it under {MAX_FOLLOW_UP}")
    answers = [_one_line(a) for a in answers if _one_line(a)]
    scales = [s for s in (parse_scale(a) for a in answers) if s is not None]
    if scales:
        if len(answers) != 1:
            raise UserError(f"give either a scale ({SCALE_WORDS}) or 2 to 5 options, not both")
        return SurveySpec(question, scale=scales[0], follow_up=follow_up, anonymous=anonymous)
    if not MIN_OPTIONS <= len(answers) <= MAX_OPTIONS:
        raise UserError(f"a survey needs 2 to 5 options or a scale ({SCALE_WORDS}); got {len(answers)} "
                        f"option{'s' if len(answers) != 1 else ''}")
    if len({a.lower() for a in answers}) != len(answers):
        raise UserError("two options have the same text")
    long = next((a for a in answers if len(a) > MAX_OPTION), None)
    if long is not None:
        raise UserError(f"the option '{long[:40]}…' is {len(long)} characters; keep options under {MAX_OPTION}")
    return SurveySpec(question, options=tuple(answers), follow_up=follow_up, anonymous=anonymous)


def spec_from_config(data: Any) -> SurveySpec:
    """A survey written in `config/journeys.yaml`: question, then options (a list) or scale
    ("1-5" or "0-10"), optional follow_up and anonymous. Raises ValueError saying what is wrong."""
    allowed = ("question", "options", "scale", "follow_up", "anonymous")
    if not isinstance(data, dict):
        raise ValueError(f"a survey must be a mapping with {', '.join(allowed)}")
    unknown = [str(k) for k in data if k not in allowed]
    if unknown:
        raise ValueError(f"unknown survey field '{unknown[0]}'; allowed: {', '.join(allowed)}")
    options, scale = data.get("options"), data.get("scale")
    if (options is None) == (scale is None):
        raise ValueError("a survey needs exactly one of 'options' (a list) and 'scale' (1-5 or 0-10)")
    if options is not None and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
        raise ValueError("'options' must be a list of texts")
    anonymous = data.get("anonymous", False)
    if not isinstance(anonymous, bool):
        raise ValueError("'anonymous' must be true or false")
    follow_up = data.get("follow_up") or ""
    if not isinstance(data.get("question"), str) or not isinstance(follow_up, str):
        raise ValueError("'question' and 'follow_up' must be text")
    answers = list(options) if options is not None else [f"scale:{scale}"]
    try:
        return build_spec(data["question"], answers, follow_up=follow_up, anonymous=anonymous)
    except UserError as exc:
        raise ValueError(str(exc)) from None


def spec_of(survey: Any) -> SurveySpec:
    """The spec of a stored `storage.models.Survey` row."""
    scale = (survey.scale_min, survey.scale_max) if survey.kind == "scale" else None
    return SurveySpec(survey.question, options=tuple(survey.options or ()), scale=scale,
                      follow_up=survey.follow_up, anonymous=survey.anonymous)
