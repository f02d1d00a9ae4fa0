"""How the flow command line prints: Metaflow-like timestamped lines.

Framework messages and task stderr go to standard error (as Metaflow prints), task stdout to
standard output, so ``python flow.py run > out.txt`` keeps what the steps printed.
``--quiet`` keeps only task output, errors and the final failure.
"""

from __future__ import annotations

import datetime as dt

import click

__all__ = ["Console", "timestamp"]


def timestamp(when: dt.datetime | None = None) -> str:
    """Local time as ``2026-11-25 13:20:01.123``.

    Args:
        when: An aware or naive (local) time; now when None.
    """
    moment = when if when is not None else dt.datetime.now()
    if moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class Console:
    """The flow command line's printer."""

    def __init__(self, quiet: bool = False) -> None:
        """Create a printer.

        Args:
            quiet: Print only task output, errors and failures.
        """
        self.quiet = quiet

    def info(self, text: str) -> None:
        """A framework line without a timestamp (banner, validation)."""
        if not self.quiet:
            click.echo(text, err=True)

    def event(self, text: str, when: dt.datetime | None = None) -> None:
        """A timestamped framework line (``Workflow starting``, ``Done!``)."""
        if not self.quiet:
            click.echo(f"{timestamp(when)} {text}", err=True)

    def task(self, pathspec: str, text: str, when: dt.datetime | None = None) -> None:
        """A timestamped line about a task: ``<ts> [Flow/1/start/1] Task is starting.``."""
        if not self.quiet:
            click.echo(f"{timestamp(when)} [{pathspec}] {text}", err=True)

    def task_failure(self, pathspec: str, lines: list[str], when: dt.datetime | None) -> None:
        """Lines about a failed task; printed even when quiet."""
        stamp = timestamp(when)
        for line in lines:
            click.echo(f"{stamp} [{pathspec}] {line}", err=True)

    def log(self, pathspec: str, text: str, *, stderr: bool, when: dt.datetime | None) -> None:
        """A line a task printed, prefixed with its pathspec; printed even when quiet."""
        click.echo(f"{timestamp(when)} [{pathspec}] {text}", err=stderr)

    def error(self, text: str) -> None:
        """An error for the user; always printed, on standard error."""
        click.echo(text, err=True)
