"""Logging: human-readable lines or one JSON object per line, context fields, and no secrets.

- `configure_logging(level, "json")` prints `{"time", "level", "logger", "message", ...}` per record
  for log shippers; `"text"` (the default) prints readable lines with the context appended.
- `log_context(notice_id=..., workspace=...)` (or `bind_context` where a `with` does not fit) adds
  fields to every record logged inside it, including by libraries, through a context variable, so
  it follows the asyncio tasks started inside it.
- Every line passes through `Redactor` on its way out: Slack tokens (xoxb-, xoxe-, xapp-, ...),
  JWTs, bearer tokens, Herald API tokens, and the values of fields such as `client_secret`, `code`,
  `refresh_token` or `token=` in a URL; plus the exact secret values registered from the settings.
  slack_sdk logs whole request and response bodies at DEBUG, so this is not hypothetical.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar, Token
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

REDACTED = "[redacted]"
_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("herald_log_context", default={})  # noqa: B039 - never mutated
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NOISY = {"apscheduler": logging.WARNING, "aiosqlite": logging.INFO, "asyncio": logging.INFO,
          "tortoise.db_client": logging.INFO, "urllib3": logging.INFO}

_SECRET_KEYS = (r"client_secret|refresh_token|access_token|bot_token|app_token|id_token|code|token|"
                r"password|app_password|signing_secret|secret|sig|signature|state|ticket|authorization")
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Slack tokens: bot/user/app-level/rotating (xoxb-, xoxp-, xoxe.xoxb-, xoxe-, xapp-) and legacy ones
    (re.compile(r"\b(?:xox[abeoprs]|xapp)(?:[.-][A-Za-z0-9]+)+"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),  # JWT
    (re.compile(r"\bhrld_[A-Za-z0-9_-]{8,}"), REDACTED),  # Herald API tokens
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2" + REDACTED),
    # "client_secret": "...", 'code': '...' (JSON, Python reprs)
    (re.compile(r"""(?i)(['"](?:""" + _SECRET_KEYS + r""")['"]\s*:\s*)(['"])(?:(?!\2).)*\2"""),
     r"\1\2" + REDACTED + r"\2"),
    # client_secret=..., ?token=..., &code=... (form bodies, query strings)
    (re.compile(r"(?i)(?<![A-Za-z0-9_])((?:" + _SECRET_KEYS + r")=)(?!\[redacted\])[^&\s'\",;)}\]]+"), r"\1" + REDACTED),
)


class Redactor:
    """Removes secrets from log text: known token shapes, secret-looking fields, and exact values."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._exact: re.Pattern[str] | None = None

    def register(self, *values: str | None) -> None:
        """Secrets to remove wherever they appear (settings, tokens read from the database)."""
        fresh = {v for v in values if v and len(v) >= 6 and v not in self._values}
        if fresh:
            self._values |= fresh
            ordered = sorted(self._values, key=len, reverse=True)
            self._exact = re.compile("|".join(re.escape(v) for v in ordered))

    def scrub(self, text: str) -> str:
        if self._exact is not None:
            text = self._exact.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


REDACTOR = Redactor()


def register_secrets(values: Iterable[str | None]) -> None:
    REDACTOR.register(*values)


def bind_context(**fields: Any) -> Token[dict[str, Any]]:
    """Set fields of the log context (an empty value removes the field) for the rest of the
    current task and the tasks it starts, or until `reset_context(token)`."""
    context = dict(_CONTEXT.get())
    for key, value in fields.items():
        if value in (None, ""):
            context.pop(key, None)
        else:
            context[key] = value
    return _CONTEXT.set(context)


def reset_context(token: Token[dict[str, Any]]) -> None:
    _CONTEXT.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = bind_context(**fields)
    try:
        yield
    finally:
        reset_context(token)


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get())


class ContextFilter(logging.Filter):
    """Copies the log context onto each record (fields passed with `extra=` win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        record.herald_context = _CONTEXT.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "herald_context", None)
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return REDACTOR.scrub(line)


_RESERVED = ["args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName", "levelno", "lineno",
             "module", "msecs", "msg", "pathname", "process", "processName", "relativeCreated", "stack_info",
             "thread", "threadName", "taskName", "message", "levelname", "name"]


class JsonLinesFormatter(JsonFormatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, then context."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s", timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"},
                         reserved_attrs=[*_RESERVED, "herald_context"])

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # scrub each text before it is JSON-escaped (an escaped quote hides a field's shape)
        return {"time": log_data.pop("time", None),
                **{k: REDACTOR.scrub(v) if isinstance(v, str) else v for k, v in log_data.items()}}

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        return REDACTOR.scrub(super().serialize_log_record(log_data))


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time (a test runner may swap it per command)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def make_formatter(fmt: str) -> logging.Formatter:
    return JsonLinesFormatter() if fmt == "json" else TextFormatter()


def configure_logging(level: str = "INFO", fmt: str = "text", *, stream: IO[str] | None = None,
                      secrets: Iterable[str | None] = ()) -> logging.Handler:
    """Send every record (Herald's and libraries') to `stream` (stderr) in `fmt`, at `level`.

    Replaces the handlers Herald installed before, so calling it again (tests, `serve` after the
    CLI group) does not print lines twice."""
    register_secrets(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "herald", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or _CurrentStderr())  # type: ignore[arg-type]
    handler.herald = True  # type: ignore[attr-defined]
    handler.setLevel(level.upper())  # some libraries set their own loggers to DEBUG
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, floor in _NOISY.items():
        logging.getLogger(name).setLevel(max(floor, logging.getLevelName(level.upper())))
    logging.captureWarnings(True)
    return handler
