"""`herald directory import` and `herald staff ...`: the partner directory and vendor staff."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli.base import CLOCK, get_settings, in_sandbox, main, operator_name, run


@main.group(help="The partner directory.")
def directory() -> None:
    pass


@directory.command("import", help="Import partner organisations and members from a CSV file. "
                                   "Exits 1 if any row was rejected (the others are imported).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and count, write nothing.")
@click.option("--deactivate-missing", is_flag=True, help="Mark members absent from the file inactive.")
@click.option("--allow-mass-deactivation", is_flag=True,
              help="With --deactivate-missing, go ahead even if more than half of the active members would go.")
@click.option("--quiet", is_flag=True, help="No progress on standard error.")
def directory_import(file: Path, dry_run: bool, deactivate_missing: bool, allow_mass_deactivation: bool,
                     quiet: bool) -> None:
    from bot.cli.progress import Reporter
    from bot.common.errors import UserError
    from bot.core.directory.importer import decode_directory_file, detect_delimiter, import_directory

    try:
        text, encoding = decode_directory_file(file.read_bytes())
    except UserError as exc:  # a workbook, not a CSV export
        click.echo(f"herald: {file.name}: {exc}", err=True)
        sys.exit(1)
    if encoding not in ("utf-8", "utf-8-sig"):
        click.echo(f"note: {file.name} is not UTF-8; read it as {encoding}", err=True)
    if (delimiter := detect_delimiter(text)) != ",":  # Excel's "CSV" in many European locales
        separator = {";": "semicolons", "\t": "tabs"}[delimiter]
        click.echo(f"note: {file.name} separates its cells with {separator}, not commas; read it so", err=True)
    sandbox = in_sandbox(get_settings())

    async def work():  # noqa: ANN202
        result = await import_directory(text, now=CLOCK.now(), actor=f"operator:{operator_name()}",
                                        dry_run=dry_run, deactivate_missing=deactivate_missing,
                                        allow_mass_deactivation=allow_mass_deactivation, progress=progress)
        if sandbox and not dry_run:  # the sandbox delivers to its inboxes: give the new members one
            from bot.console.sandbox_seed import give_sandbox_accounts

            await give_sandbox_accounts()
        if result.restored:  # copies back in the outbox: the service's replicas need not wait for their poll
            from storage.wakeups import notify_outbox

            await notify_outbox()
        return result

    with Reporter("import", enabled=not quiet) as progress:
        result = run(work)
    if result.ignored_columns:  # a CRM export's own columns
        from bot.core.directory.importer import describe_columns

        click.echo(f"note: {file.name}: ignored column(s) that are not the directory's: "
                   f"{describe_columns(result.ignored_columns)}", err=True)
    for cam, organisations in result.unknown_cams.items():  # a typo, or a CAM not added as staff yet
        shown = ", ".join(organisations[:5]) + (f" and {len(organisations) - 5} more" if len(organisations) > 5 else "")
        click.echo(f"note: cam_email {cam} ({shown}) is not an active CAM or admin in Herald: "
                   f"`herald staff add {cam} --role cam`", err=True)
    for error in result.rejected:
        click.echo(f"line {error.line}: {error.reason}", err=True)
    prefix = "dry run: would have " if dry_run else ""
    click.echo(f"{prefix}created {result.created}, updated {result.updated}, unchanged {result.unchanged}, "
               f"deactivated {result.deactivated}, rejected {len(result.rejected)}")
    def copies(n: int) -> str:
        return f"{n} notice cop{'y' if n == 1 else 'ies'}"

    if result.cancelled:
        click.echo(f"{copies(result.cancelled)} still to be sent to the members deactivated "
                   f"{'would be' if dry_run else 'are'} cancelled")
    if result.restored:
        click.echo(f"{copies(result.restored)} cancelled when members were left out of the directory "
                   f"{'would be' if dry_run else 'are'} queued for them again")
    if result.rejected:  # the other rows are imported; a script still hears that some were not
        sys.exit(1)


@main.group(help="Vendor staff and their roles.")
def staff() -> None:
    pass


@staff.command("add", help="Add or update a staff member (cam, compliance or admin).")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["cam", "compliance", "admin"]))
@click.option("--name", default="")
@click.option("--slack-user", default="", help="Their Slack user id (U...).")
@click.option("--slack-team", default="", help="Their Slack workspace id (T...).")
@click.option("--teams-aad", default="", help="Their Microsoft Entra (AAD) object id, for Teams.")
def staff_add(email: str, role: str, name: str, slack_user: str, slack_team: str, teams_aad: str) -> None:
    from bot.core.directory.staff import add_staff

    person, created = run(lambda: add_staff(email, role, name=name, slack_user=slack_user,
                                             slack_team=slack_team, teams_aad=teams_aad, now=CLOCK.now(),
                                             actor=f"operator:{operator_name()}"))
    click.echo(f"{'added' if created else 'updated'} {person.email} as {person.role}")


@staff.command("remove", help="Take a staff member's access away (offboarding): inactive, console sessions "
                              "ended, API tokens revoked, open hand-offs moved to their partners' CAM, "
                              "scheduled notices failed. `staff add` again reactivates them.")
@click.argument("email")
def staff_remove(email: str) -> None:
    from bot.core.directory.offboarding import remove_staff

    done = run(lambda: remove_staff(email, now=CLOCK.now(), actor=f"operator:{operator_name()}"))
    click.echo(f"{'removed' if done.was_active else 'already inactive:'} {done.staff.email} ({done.staff.role}): "
               f"{done.sessions_ended} console session(s) ended, {done.tokens_revoked} API token(s) revoked, "
               f"{done.handoffs_moved} open hand-off(s) moved to their partners' CAM")
    if done.handoffs_left:
        click.echo(f"{done.handoffs_left} open hand-off(s) stay filed under them: their organisation names no "
                   "active CAM; an admin can answer them (`herald doctor` lists the organisations)", err=True)
    if done.notices_failed:
        ids = ", ".join(f"#{n}" for n in done.notices_failed)
        click.echo(f"scheduled notice(s) {ids} will not go out (failed: their author may no longer send)", err=True)


@staff.command("list", help="List staff.")
def staff_list() -> None:
    from bot.core.directory.staff import list_staff

    for person in run(list_staff):
        slack = f"{person.slack_team_id}/{person.slack_user_id}" if person.slack_user_id else "-"
        state = "" if person.active else " (inactive)"
        click.echo(f"{person.email:40} {person.role:11} {person.name or '-':24} slack:{slack}{state}")
