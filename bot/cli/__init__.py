"""The `herald` command-line program: one module per command group, all registered on the group
defined in `bot.cli.base`."""

from bot.cli import (  # noqa: F401
    audit,
    console,
    directory,
    doctor,
    keys,
    notices,
    onboarding,
    reports,
    server,
    surveys,
    teams,
    workspaces,
)
from bot.cli.base import main

__all__ = ["main"]
