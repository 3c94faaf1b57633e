"""Importance levels, each a policy object: how a notice of that level is delivered."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.common.errors import UserError


class Importance(StrEnum):
    NICE = "nice-to-know"
    NEED = "need-to-know"
    MUST = "must-know"


@dataclass(frozen=True)
class ImportancePolicy:
    level: Importance
    label: str
    badge: str  # a short emoji-free marker renderers turn into their own badge style
    dm_now: bool  # a direct message is sent at once (otherwise it waits for the digest)
    needs_ack: bool  # the message carries an Acknowledge button and acks are tracked
    respects_quiet_hours: bool
    respects_opt_outs: bool
    critical: bool  # rendered as visibly critical


IMPORTANCE: dict[Importance, ImportancePolicy] = {
    Importance.NICE: ImportancePolicy(
        Importance.NICE, "Nice to know", "FYI", dm_now=False, needs_ack=False,
        respects_quiet_hours=True, respects_opt_outs=True, critical=False,
    ),
    Importance.NEED: ImportancePolicy(
        Importance.NEED, "Need to know", "IMPORTANT", dm_now=True, needs_ack=False,
        respects_quiet_hours=True, respects_opt_outs=True, critical=False,
    ),
    Importance.MUST: ImportancePolicy(
        Importance.MUST, "Must know", "CRITICAL", dm_now=True, needs_ack=True,
        respects_quiet_hours=False, respects_opt_outs=False, critical=True,
    ),
}

_ALIASES = {
    "nice": Importance.NICE, "nice-to-know": Importance.NICE, "fyi": Importance.NICE,
    "need": Importance.NEED, "need-to-know": Importance.NEED,
    "must": Importance.MUST, "must-know": Importance.MUST, "critical": Importance.MUST,
}


def parse_importance(word: str) -> ImportancePolicy:
    level = _ALIASES.get(word.strip().lower())
    if level is None:
        raise UserError(
            f"unknown importance '{word}' (use nice-to-know, need-to-know or must-know)"
        )
    return IMPORTANCE[level]
