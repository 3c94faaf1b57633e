"""Progress of long commands on standard error: a rich progress bar on a terminal, a plain line
every tenth of the way when the output is a file or a pipe (logs, CI), nothing with --json.

Standard output stays for the result (a report, JSON), so progress never mixes into it.
"""

from __future__ import annotations

import sys
from types import TracebackType

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

STEP = 10  # plain mode: a line at every 10 %


class Reporter:
    """Call it as a `bot.common.progress.Progress`: `reporter(stage, done, total)`."""

    def __init__(self, what: str, *, enabled: bool = True, console: Console | None = None) -> None:
        self.what = what
        self.enabled = enabled
        self.console = console or Console(file=sys.stderr)
        self.bar: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._printed: dict[str, int] = {}

    @property
    def interactive(self) -> bool:
        return self.enabled and self.console.is_terminal

    def __enter__(self) -> Reporter:
        if self.interactive:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                                console=self.console, transient=False)
            self.bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        label = f"{self.what}: {stage}"
        if self.bar is not None:
            task = self._tasks.get(stage)
            if task is None:
                task = self._tasks[stage] = self.bar.add_task(label, total=total or None)
            self.bar.update(task, completed=done, total=total or None)
            return
        percent = 0 if total <= 0 else min(100, done * 100 // total)
        step = percent // STEP * STEP
        if self._printed.get(stage) != step:  # a total that grows (followed counts) may move it back
            self._printed[stage] = step
            click.echo(f"{label} {done}/{total} ({percent}%)", err=True)
