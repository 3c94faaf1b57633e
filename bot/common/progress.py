"""How long work reports how far it got, without knowing who shows it (a bar, a log line, nothing)."""

from __future__ import annotations

from collections.abc import Callable

# progress(stage, done, total): e.g. ("writing", 25_000, 100_000); called often, must be cheap.
Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The default: nobody is watching."""
