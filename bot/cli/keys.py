"""`herald secrets rotate`: re-encrypt every stored value under the current HERALD_SECRET_KEY."""

from __future__ import annotations

import json
import sys

import click

from bot.cli.base import CLOCK, get_settings, main, operator_name, run


@main.group(help="Values Herald stores encrypted with HERALD_SECRET_KEY.")
def secrets() -> None:
    pass


@secrets.command("rotate", help="Re-encrypt every stored token and key under HERALD_SECRET_KEY (after setting the "
                                "old key as HERALD_SECRET_KEY_PREVIOUS and restarting); safe while servers run, "
                                "and safe to run again. Exit 1 if a value could be read with no configured key.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def secrets_rotate(as_json: bool) -> None:
    from bot.common.secrets import cipher_for
    from bot.core.compliance.audit import set_audit_origin
    from bot.core.compliance.sealed_values import rotate

    settings = get_settings()
    if not settings.secret_key:
        click.echo("herald: HERALD_SECRET_KEY is not set: there is no key to encrypt under", err=True)
        sys.exit(1)
    cipher = cipher_for(settings.secret_key, settings.previous_secret_keys)

    async def work():  # noqa: ANN202 - a RotationResult
        set_audit_origin(source="cli", os_user=operator_name())
        return await rotate(cipher, now=CLOCK.now(), actor=f"operator:{operator_name()}")

    result = run(work)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print(result, has_previous=bool(settings.previous_secret_keys))
    sys.exit(1 if result.unreadable else 0)


def _kinds(counts: dict[str, int]) -> str:
    return f" ({', '.join(f'{n} {kind}' for kind, n in sorted(counts.items()))})" if counts else ""


def _print(result, *, has_previous: bool) -> None:  # noqa: ANN001 - a RotationResult
    resealed, sealed = sum(result.resealed.values()), sum(result.sealed.values())
    click.echo(f"re-encrypted {resealed} value{'s' * (resealed != 1)} under HERALD_SECRET_KEY"
               f"{_kinds(dict(result.resealed))}")
    if sealed:
        click.echo(f"encrypted {sealed} plaintext value{'s' * (sealed != 1)}{_kinds(dict(result.sealed))}")
    if result.unreadable:
        click.echo(f"could not read {len(result.unreadable)} value{'s' * (len(result.unreadable) != 1)} with any "
                   f"configured key: {', '.join(result.unreadable)}")
        click.echo("  → set the key they were stored with in HERALD_SECRET_KEY_PREVIOUS and run this again, "
                   "or reconnect those workspaces")
    elif has_previous:
        click.echo("every stored value is under HERALD_SECRET_KEY: HERALD_SECRET_KEY_PREVIOUS can be removed "
                   "(then restart)")
