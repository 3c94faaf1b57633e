"""`herald report` (acknowledgement reports, streamed) and `herald token` (API tokens).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

import click

from bot.cli.base import CLOCK, ROW_ID, main, operator_name, run


@main.command(help="Acknowledgement report of one notice (streamed), or with --since/--until and no "
                    "NOTICE_ID a summary of every notice sent in that window.")
@click.argument("notice_id", type=ROW_ID, required=False)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
@click.option("--since", default=None, help="Summary: first day (YYYY-MM-DD, UTC), inclusive.")
@click.option("--until", default=None, help="Summary: last day (YYYY-MM-DD, UTC), inclusive.")
@click.option("--topic", default=None, help="Summary: only notices on this topic.")
@click.option("--importance", default=None, type=click.Choice(["nice-to-know", "need-to-know", "must-know"]),
              help="Summary: only notices of this importance.")
def report(notice_id: int | None, fmt: str, output: Path | None, since: str | None, until: str | None,
           topic: str | None, importance: str | None) -> None:
    if notice_id is not None:
        if since or until or topic or importance:
            raise click.UsageError("--since, --until, --topic and --importance are for the summary; "
                                   "leave out NOTICE_ID to get it")
        _notice_report(notice_id, fmt, output)
        return
    if not since or not until:
        raise click.UsageError("give a NOTICE_ID, or --since and --until for the summary of a period")
    _summary(since, until, topic, importance, fmt, output)


class _Sink:
    """Standard output, or a file written next to its destination and moved into place only when
    the report is complete (a failed export leaves no half file behind)."""

    def __init__(self, output: Path | None) -> None:
        self.output = output
        self.partial = output.with_name(output.name + ".partial") if output else None
        self.handle: IO[str] | None = None
        self.bytes = 0

    def write(self, text: str) -> None:
        if self.output is None:
            click.echo(text, nl=False)
            return
        if self.handle is None:
            assert self.partial is not None
            self.handle = self.partial.open("w", encoding="utf-8", newline="")
        self.handle.write(text)
        self.bytes += len(text)

    def commit(self) -> None:
        if self.output is None:
            sys.stdout.flush()
            return
        if self.handle is None:  # nothing was written at all: still produce the (empty) file
            self.write("")
        assert self.handle is not None and self.partial is not None
        self.handle.close()
        os.replace(self.partial, self.output)

    def discard(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.partial is not None:
            with contextlib.suppress(FileNotFoundError):
                self.partial.unlink()


def _notice_report(notice_id: int, fmt: str, output: Path | None) -> None:
    from bot.cli.progress import Reporter
    from bot.core.compliance.reports import report_chunks

    sink = _Sink(output)
    actor = f"operator:{operator_name()}"

    async def work(progress: Reporter) -> None:
        chunks = report_chunks(notice_id, fmt, now=CLOCK.now(), actor=actor, reader=None,  # type: ignore[arg-type]
                               progress=progress)
        try:
            async for chunk in chunks:
                sink.write(chunk)
        finally:
            await chunks.aclose()

    try:
        # progress only when the report goes to a file: standard output is the report itself
        with Reporter(f"report of notice {notice_id}", enabled=output is not None) as progress:
            run(lambda: work(progress))
        sink.commit()
    except BaseException:
        sink.discard()
        raise
    if output is not None:
        click.echo(f"report of notice {notice_id} written to {output}", err=True)


def _summary(since: str, until: str, topic: str | None, importance: str | None, fmt: str,
             output: Path | None) -> None:
    from bot.cli.base import get_settings
    from bot.core.compliance.reports import export_summary, parse_window, summary_csv
    from bot.topics.catalog import load_catalog

    known_topics = load_catalog(get_settings().topics_file).topics if topic else {}

    async def work() -> dict[str, Any]:
        start, end = parse_window(since, until)
        return await export_summary(since=start, until=end, topic=topic, importance=importance, now=CLOCK.now(),
                                    actor=f"operator:{operator_name()}", fmt=fmt,  # type: ignore[arg-type]
                                    known_topics=known_topics)

    document = run(work)
    text = summary_csv(document) if fmt == "csv" else json.dumps(document, indent=2) + "\n"
    sink = _Sink(output)
    try:
        sink.write(text)
        sink.commit()
    except BaseException:
        sink.discard()
        raise
    if output is not None:
        click.echo(f"summary of {len(document['notices'])} notices written to {output}", err=True)


# ---- tokens ---------------------------------------------------------------------------------

@main.group(help="Bearer tokens for the reports API (/api/v1).")
def token() -> None:
    pass


@token.command("create", help="Create an API token for a staff member; it is shown once, reads what their role "
                                    "allows now (all reports for compliance and admins) and expires after 365 days "
                                    "unless --expires-in, --expires or --no-expiry says otherwise.")
@click.argument("email")
@click.option("--name", default="", help="What the token is for, e.g. 'compliance dashboard'.")
@click.option("--expires-in", "expires_in", default=None, metavar="N[d|w|y]",
              help="Expire after N days (90d), weeks (12w) or years (1y); default 365d.")
@click.option("--expires", "expires_on", default=None, metavar="DATE",
              help="Expire at the end of this day (YYYY-MM-DD, UTC), or at this ISO-8601 time.")
@click.option("--no-expiry", is_flag=True, help="Never expire (revoke it by hand when it is no longer needed).")
def token_create(email: str, name: str, expires_in: str | None, expires_on: str | None, no_expiry: bool) -> None:
    from bot.core.compliance.api_tokens import DEFAULT_LIFETIME, create_token, when

    now = CLOCK.now()
    if [expires_in is not None, expires_on is not None, no_expiry].count(True) > 1:
        raise click.UsageError("give one of --expires-in, --expires and --no-expiry")
    if no_expiry:
        expires_at = None
    elif expires_on is not None:
        expires_at = _expiry_date(expires_on)
    else:
        expires_at = now + (_lifetime(expires_in) if expires_in is not None else DEFAULT_LIFETIME)
    row, plaintext = run(lambda: create_token(email, name=name, now=now, expires_at=expires_at,
                                              actor=f"operator:{operator_name()}"))
    until = f"expires {when(row.expires_at)}" if row.expires_at else "never expires"
    click.echo(f"created token {row.id} for {row.staff.email} ({row.role}), {until}"
               + (f", named '{row.name}'" if row.name else ""), err=True)
    click.echo(plaintext)
    click.echo("warning: store this token now; it cannot be shown again (only its hash is kept).", err=True)
    click.echo(_token_reach(row.staff.email, row.role, row.id), err=True)


_UNITS = {"d": 1, "w": 7, "y": 365}


def _lifetime(text: str) -> timedelta:
    """`--expires-in`: 90d, 12w, 1y (a bare number is days)."""
    raw = text.strip().lower()
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in _UNITS else (raw, "d")
    if not number.isascii() or not number.isdigit() or not 0 < int(number) <= 100 * 365:
        raise click.BadParameter(f"'{text}' is not a lifetime: give days, weeks or years, e.g. 90d, 12w, 1y",
                                 param_hint="--expires-in")
    return timedelta(days=int(number) * _UNITS[unit])


def _expiry_date(text: str) -> datetime:
    """`--expires`: a date is the end of that day (UTC); a time without an offset is UTC."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw) + timedelta(days=1), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a date (YYYY-MM-DD) or an ISO-8601 time",
                                 param_hint="--expires") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _token_reach(email: str, role: str, token_id: int) -> str:
    """What a new token reads through /api/v1: what its role allows (the person's role now)."""
    if role == "cam":
        reads = ("the notices they sent and those escalated to them (their own partners' rows only), "
                 "their surveys and A/B tests; not the audit chain check")
    else:
        reads = ("every notice's acknowledgement report (names and e-mail addresses of every partner's "
                 "recipients), the period summary, every survey and A/B test, and the audit chain check")
    return (f"it reads, as {email} ({role}) may: {reads}. It keeps the role {role}: should theirs change to "
            f"one that reads less, it reads only what both allow. It stops working when it expires, when "
            f"revoked (`herald token revoke {token_id}`) or when they are removed.")


@token.command("list", help="List API tokens (never the tokens themselves), with each one's role and expiry.")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    from bot.core.compliance.api_tokens import acting_role, expired, fingerprint, list_tokens
    from bot.core.compliance.reports import iso

    now = CLOCK.now()
    rows = [{"id": t.id, "fingerprint": fingerprint(t), "staff": t.staff.email, "role": t.role,
             "staff_role": t.staff.role, "reads_as": acting_role(t.role, t.staff.role) if t.staff.active else None,
             "name": t.name, "created_at": iso(t.created_at), "last_used_at": iso(t.last_used_at),
             "expires_at": iso(t.expires_at), "expired": expired(t, now),
             "revoked_at": iso(t.revoked_at)} for t in run(list_tokens)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no API tokens")
        return
    for r in rows:
        if r["revoked_at"]:
            state = f"revoked {r['revoked_at']}"
        elif r["expired"]:
            state = f"expired {r['expires_at']}"
        else:
            state = "active"
        used = r["last_used_at"] or "never used"
        until = f"expires {r['expires_at']}" if r["expires_at"] else "no expiry"
        role = r["role"] if r["staff_role"] == r["role"] else f"{r['role']} (now {r['staff_role']})"
        click.echo(f"{r['id']:>5}  {r['fingerprint']}  {r['staff']:32} {role:11} {r['name'] or '-':24} "
                   f"created {r['created_at']}  {until}  {used}  {state}")


@token.command("revoke", help="Revoke a token by its id, its fingerprint (from `token list`) or the token itself.")
@click.argument("token_ref", metavar="ID")
def token_revoke(token_ref: str) -> None:
    from bot.core.compliance.api_tokens import revoke_token

    row, newly = run(lambda: revoke_token(token_ref, now=CLOCK.now(), actor=f"operator:{operator_name()}"))
    label = f"token {row.id} of {row.staff.email}" + (f" ('{row.name}')" if row.name else "")
    click.echo(f"revoked {label}" if newly else f"{label} was already revoked")
