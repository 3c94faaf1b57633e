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



def test_the_documented_default_topics_file_and_kb_dir_work_when_written_out(tmp_path: Path) -> None:
    """README (Configuration table): `HERALD_TOPICS_FILE` default `config/topics.yaml`,
    `HERALD_KB_DIR` default `config/kb`; `.env.example`: "a commented line shows the default". The
    real defaults are the installed package's files (config.settings.CONFIG_DIR), while the value
    shown is relative to the working directory. So an operator who uncomments the default in .env
    (compose's containers run in /data, the Docker image in /data, a systemd unit wherever) gets
    `herald: cannot start: HERALD_TOPICS_FILE: cannot read topics file config/topics.yaml` and a
    knowledge base "config/kb does not exist": writing out the default changes the behaviour."""
    shown = dict(re.findall(r"^# (HERALD_(?:TOPICS_FILE|KB_DIR))=(\S+)$", ENV_EXAMPLE, re.M))
    assert shown == {"HERALD_TOPICS_FILE": "config/topics.yaml", "HERALD_KB_DIR": "config/kb"}, shown
    assert "| `HERALD_TOPICS_FILE` | `config/topics.yaml` |" in README
    result = herald("doctor", "--json", cwd=tmp_path, HERALD_DATABASE_URL="sqlite://herald.db", **shown)
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert (checks["topics"]["status"], checks["knowledge base"]["status"]) == ("ok", "ok"), (
        "the defaults .env.example shows, written out, in another working directory:\n"
        f"  topics: {checks['topics']['detail']}\n  knowledge base: {checks['knowledge base']['detail']}")
