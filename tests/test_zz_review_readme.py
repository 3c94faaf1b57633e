"""README review: claims an operator would act on, checked against what Herald does.

Each test quotes the README sentence it holds Herald to and fails on the current code."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings
from tests.cli_support import herald

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")


def _readme_says(text: str) -> None:
    """The claim under test is still in the README (so the test is about what a reader is told)."""
    assert text in " ".join(README.split()), f"README no longer says: {text!r}"
