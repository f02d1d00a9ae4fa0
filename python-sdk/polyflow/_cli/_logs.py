"""``logs``: print the stored output of a task, or of every task of a step (Metaflow's
``logs show``; ``logs PATHSPEC`` is short for ``logs show PATHSPEC``).

The core stores each attempt's stdout and stderr as the task prints them, so the output of a
task that was killed, or is still running, is there too. What the task printed goes to this
command's standard output, unchanged (pipe it, grep it); the lines saying which task and
stream follow go to standard error and ``--quiet`` leaves them out.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from polyflow._cli._output import Console
from polyflow._cli._tasks import TaskPath, attempt_count, find_tasks, parse_task_path

if TYPE_CHECKING:
    from polyflow.client import Task

__all__ = ["logs_group"]

_STREAMS = ("stdout", "stderr")


class _DefaultCommandGroup(click.Group):
    """A group whose first argument, when it names no subcommand, goes to a default one."""

    def __init__(self, *args: Any, default_command: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_command = default_command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def _streams(stdout: bool, stderr: bool, both: bool) -> list[str]:
    """The streams to show, by Metaflow's rule: ``--stdout``/``--stderr`` pick one (or both);
    without either, ``--both`` (the default) shows both."""
    chosen = [name for name, wanted in zip(_STREAMS, (stdout, stderr), strict=True) if wanted]
    if chosen:
        return chosen
    if both:
        return list(_STREAMS)
    raise click.UsageError("nothing to show: give --stdout, --stderr or --both")


def _print_stream(task: Task, stream: str, attempt: int | None, console: Console) -> None:
    """Copy one stored stream of a task attempt to standard output, page by page."""
    from polyflow._daemon import get_client
    from polyflow._transport import name_from_pathspec
    from polyflow.api.common.v1 import enums_pb2

    wire_stream = enums_pb2.LOG_STREAM_STDOUT if stream == "stdout" else enums_pb2.LOG_STREAM_STDERR
    client = get_client()
    out = sys.stdout.buffer
    name = name_from_pathspec(task.pathspec)
    offset = 0
    last = b""
    while True:
        response = client.read_task_log(name, wire_stream, attempt=attempt, offset=offset)
        if response.data:
            if not last:
                console.info(f"{stream}:")
            out.write(response.data)
            last = response.data[-1:]
        if response.eof or not response.data or response.next_offset >= response.size_bytes:
            break
        offset = response.next_offset
    if not last:
        console.info(f"{stream}: (empty)")
    elif last != b"\n":
        out.write(b"\n")  # the next header must not land at the end of the last line
    out.flush()


def show_logs(path: TaskPath, streams: list[str], attempt: int | None, console: Console) -> int:
    """Print the logs of the tasks ``path`` names; return the exit status.

    Raises:
        NotFoundError: The run, step or task does not exist.
        click.ClickException: No task has logs to show (none started, or none made the
            attempt asked for).
    """
    tasks = find_tasks(path)
    if not tasks:
        raise click.ClickException(f"Step {path.pathspec} has no task.")
    skipped: list[str] = []
    for task in tasks:
        made = attempt_count(task)
        if made == 0:
            skipped.append(f"Task {task.pathspec} has not started yet: it has no logs.")
            continue
        if attempt is not None and attempt >= made:
            skipped.append(
                f"Task {task.pathspec} has no attempt {attempt}: it made {made} "
                f"attempt{'s' if made > 1 else ''}, numbered from 0."
            )
            continue
        number = attempt if attempt is not None else made - 1
        latest = number == made - 1
        running = "" if not latest or task.finished else " (still running: the output so far)"
        console.info(f"Logs of task {task.pathspec}, attempt {number}{running}")
        for stream in streams:
            _print_stream(task, stream, number, console)
    if len(skipped) == len(tasks):
        raise click.ClickException("\n".join(skipped))
    for line in skipped:
        console.info(line)
    return 0


def logs_group(flow_cls: type) -> click.Group:
    """The ``logs`` command group of a flow."""
    flow = flow_cls.__name__

    @click.group(
        "logs",
        cls=_DefaultCommandGroup,
        default_command="show",
        help="Show the output that tasks stored. 'logs PATHSPEC' is short for "
        "'logs show PATHSPEC'.",
    )
    def logs() -> None:
        pass

    @logs.command(
        "show",
        help="Show the stdout and stderr of a task, or of every task of a step. PATHSPEC is "
        "run_id/step_name or run_id/step_name/task_id.",
    )
    @click.argument("pathspec")
    @click.option(
        "--stdout/--no-stdout", default=False, help="Show the task's standard output only."
    )
    @click.option(
        "--stderr/--no-stderr", default=False, help="Show the task's standard error only."
    )
    @click.option(
        "--both/--no-both",
        default=True,
        show_default=True,
        help="Show both streams (the default unless --stdout or --stderr is given).",
    )
    @click.option(
        "--attempt",
        type=click.IntRange(min=0),
        default=None,
        help="The attempt to show (0 is the first); the latest by default.",
    )
    @click.pass_context
    def show(
        ctx: click.Context,
        pathspec: str,
        stdout: bool,
        stderr: bool,
        both: bool,
        attempt: int | None,
    ) -> None:
        streams = _streams(stdout, stderr, both)
        path = parse_task_path(flow, pathspec)
        console = Console(bool((ctx.obj or {}).get("quiet")))
        ctx.exit(show_logs(path, streams, attempt, console))

    return logs
