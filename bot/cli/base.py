"""The `herald` group and what every sub-command shares: settings, a database session around a
command, the operator's login name and the clock."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn, TypeVar

import click

from bot.common.clock import SystemClock
from bot.common.errors import UserError
from bot.common.logs import configure_logging
from config.settings import ConfigError, Settings, load_settings
from storage.models import MAX_ROW_ID

T = TypeVar("T")
CLOCK = SystemClock()
class _RowId(click.IntRange):
    """An id argument: not a number, or out of range, is a usage error, not a failed query."""

    name = "id"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            self.fail(f"{value!r} is not a number (ids are whole numbers, e.g. 12)", param, ctx)
        return super().convert(value, param, ctx)


ROW_ID = _RowId(1, MAX_ROW_ID)
# `--limit N` of the listing commands: 0 or less is a usage error (exit 2), not a failed query's traceback
LIMIT = click.IntRange(1, MAX_ROW_ID)


def get_settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(2)


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret in the settings, for the log redactor."""
    values = [settings.slack_bot_token, settings.slack_signing_secret, settings.slack_client_secret,
              settings.secret_key, settings.teams_app_password, settings.metrics_token, settings.slack_app_token]
    return [v.get_secret_value() for v in values if v is not None] + list(settings.previous_secret_keys)


def setup_logging(level: str | None, settings: Settings | None = None) -> None:
    """Logging for a command: `HERALD_LOG_FORMAT` (text or json), secrets redacted. `level` None:
    a command's, WARNING (its output is what it prints), or DEBUG when HERALD_LOG_LEVEL asks for it
    (e.g. the traceback of a failed migration)."""
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError:
            configure_logging(level or "WARNING", "text")  # the command itself reports the configuration error
            return
    if level is None:
        level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    configure_logging(level, settings.log_format, secrets=settings_secrets(settings))


def in_sandbox(settings: Settings) -> bool:
    """With neither Slack nor Teams configured `serve` runs the sandbox on the sandbox's database; so
    does a command, unless HERALD_DATABASE_URL names one (e.g. a directory imported before Slack is
    connected)."""
    return settings.sandbox_active and "database_url" not in settings.model_fields_set


def database_settings() -> Settings:
    """The settings a command's database work uses (see `in_sandbox`; it says so)."""
    return with_commands_database(get_settings())


def with_commands_database(settings: Settings) -> Settings:
    """`settings` on the database the commands use: the sandbox's in sandbox mode (see
    `in_sandbox`), saying so on standard error."""
    if in_sandbox(settings):
        click.echo(f"herald: sandbox mode (neither Slack nor Teams is configured): using the sandbox's database, "
                   f"{settings.sandbox_database_url}; set HERALD_DATABASE_URL for another", err=True)
        return settings.for_sandbox()
    return settings


def run(work: Callable[[], Awaitable[T]], *, current_schema: bool = True) -> T:
    """Connect to the database, run `work`, disconnect; person-facing errors become one line.
    `current_schema`: a new database gets the schema, an existing one must be up to date
    (`storage.db.connect_current`); False: the database as it is, unchanged, and none is created
    (a URL with no Herald database is one line and exit 2: `storage.db.connect_existing`)."""
    from storage import db as storage_db

    settings = database_settings()

    async def runner() -> T:
        if current_schema:
            await storage_db.connect_current(settings.tortoise_db_url)
        else:
            await storage_db.connect_existing(settings.tortoise_db_url)
        try:
            return await work()
        finally:
            await storage_db.close()

    with database_errors():
        try:
            return asyncio.run(runner())
        except UserError as exc:
            click.echo(f"herald: {exc}", err=True)
            sys.exit(1)
        except storage_db.NoHeraldDatabase as exc:
            click.echo(f"herald: {exc}: nothing to check", err=True)
            sys.exit(2)


@contextlib.contextmanager
def database_errors(prefix: str = "") -> Iterator[None]:
    """Around every command's database work: a database that cannot be reached or refuses the
    login, a schema this version cannot use, or a migration that failed is one line on standard
    error (`prefix` first) and exit code 2, never a traceback."""
    from storage import db as storage_db

    try:
        yield
    except BrokenPipeError:
        raise  # standard output's reader went away (`herald report 1 | head`): HeraldGroup ends quietly
    except (storage_db.SchemaNotCurrent, storage_db.UpgradeFailed) as exc:
        click.echo(f"herald: {prefix}{exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - only the database's refusals are turned into one line
        reason = storage_db.unavailable(exc)
        if reason is None:
            raise
        click.echo(f"herald: {prefix}{reason}", err=True)
        sys.exit(2)


def operator_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"


def as_option(func):  # noqa: ANN001, ANN201 - a click decorator
    """`--as EMAIL`: the staff member a command acts for. Required: a notice, an edit, a
    retraction, a cancellation or a pause needs an accountable person, and the shell user alone
    is not one (there is deliberately no default in the environment)."""
    return click.option("--as", "as_email", required=True, metavar="EMAIL",
                        help="The staff member acting (their role must allow it); recorded as the author.")(func)


async def acting_staff(email: str):  # noqa: ANN201 - a Staff row
    """The active staff member `--as` names; the audit events of the rest of the command also
    record that it came from the CLI and which operating-system user ran it."""
    from bot.core.compliance.audit import set_audit_origin
    from storage.models import Staff

    staff = await Staff.get_or_none(email=email.strip().lower())
    if staff is None or not staff.active:
        raise UserError(f"--as {email}: no active staff member with that e-mail (see `herald staff list`)")
    set_audit_origin(source="cli", os_user=operator_name())
    return staff


def refuse_unconfirmable_send(yes: bool, what: str = "notice") -> None:
    """Before a send creates anything: without --yes it must be confirmed, and with standard input
    not a terminal (a cron job, a pipeline, < /dev/null) nobody can. Asking anyway met end of input
    ("Aborted!", exit 1) and left the draft made for the question behind, unsendable; this says
    what to add instead (exit 2, nothing created)."""
    if yes or (sys.stdin is not None and sys.stdin.isatty()):
        return
    click.echo(f"herald: standard input is not a terminal, so nobody can confirm this {what}: "
               "add --yes to send it without asking (nothing was created)", err=True)
    sys.exit(2)


def confirmed(question: str) -> bool:
    """Ask `question` at the terminal; Ctrl-C or end of input is a no (the caller cancels its
    draft, which would otherwise stay behind, neither sent nor cancelled)."""
    try:
        return click.confirm(question)
    except click.Abort:
        click.echo("", err=True)  # the prompt's line was left open
        return False


class HeraldGroup(click.Group):
    """The `herald` group: a command whose standard output is closed under it ends quietly."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            end_on_closed_pipe()


def end_on_closed_pipe() -> NoReturn:
    """`herald report 1 | head`: the reader has gone, so stop quietly, as cat or grep do, instead of
    "cannot reach the database ([Errno 32] Broken pipe)" (a BrokenPipeError is an OSError) and exit
    code 2. Python's recipe (the `signal` module's note on SIGPIPE): point standard output at
    /dev/null, or the interpreter's last flush of it fails again on the way out."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


@click.group(cls=HeraldGroup, help="Herald: partner notices with acknowledgement, in Slack and Microsoft Teams.")
def main() -> None:
    setup_logging(None)
