"""``dump``: print the artifacts of a task, or of every task of a step (Metaflow's ``dump``).

Each artifact prints as one line on standard output::

    name [size: 23 type: builtins.str] = 'hi there'

``size`` is the stored (encoded) size in bytes. A value is shown only when its stored size is
at most ``--max-value-size`` bytes (so a huge artifact is never loaded just to be cut), and its
``repr`` is cut to that many characters, with a visible marker either way. ``--file`` writes
every value, uncut, to a pickle instead: ``{"run_id/step/task_id": {name: value}}``, as Metaflow
does. The artifacts read are those of each task's latest successful attempt (else its latest).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from polyflow._cli._output import Console
from polyflow._cli._tasks import TaskPath, find_tasks, parse_task_path

if TYPE_CHECKING:
    from polyflow.client import DataArtifact, Task

__all__ = ["dump_command", "format_value", "select_artifacts"]

DEFAULT_MAX_VALUE_SIZE = 1000
"""Default of ``--max-value-size``, in bytes (Metaflow's)."""


def select_artifacts(
    names: Sequence[str], include: Sequence[str], private: bool
) -> tuple[list[str], list[str]]:
    """The names to dump, sorted, and the ``include`` names that are missing.

    Args:
        names: The task's artifact names.
        include: Only these names (all when empty).
        private: Keep names that start with ``_``.
    """
    wanted = set(include)
    chosen = sorted(
        name
        for name in names
        if (private or not name.startswith("_")) and (not wanted or name in wanted)
    )
    missing = sorted(wanted.difference(names)) if wanted else []
    return chosen, missing


def format_value(value: Any, max_size: int) -> str:
    """``repr(value)``, cut to ``max_size`` characters with a marker saying so."""
    text = repr(value)
    if len(text) <= max_size:
        return text
    return f"{text[:max_size]}... [truncated: the repr has {len(text)} characters]"


def _value_text(artifact: DataArtifact, max_size: int) -> str:
    if max_size == 0:
        return "<not loaded: --max-value-size is 0>"
    if artifact.size > max_size:
        return f"<not loaded: {artifact.size} bytes stored, over --max-value-size {max_size}>"
    try:
        value = artifact.data
    except Exception as error:  # e.g. a class this environment cannot import
        return f"<cannot load: {type(error).__name__}: {error}>"
    return format_value(value, max_size)


def _task_artifacts(task: Task, private: bool) -> dict[str, DataArtifact]:
    from polyflow._daemon import get_client
    from polyflow._transport import name_from_pathspec
    from polyflow.client import DataArtifact

    protos = get_client().list_artifacts(name_from_pathspec(task.pathspec), include_private=private)
    artifacts = {}
    for proto in protos:
        name = proto.ref.name or proto.name.rsplit("/", 1)[-1]
        artifacts[name] = DataArtifact(
            f"{task.pathspec}/{name}", _namespace_check=False, _proto=proto
        )
    return artifacts


def dump_tasks(
    path: TaskPath,
    *,
    private: bool,
    max_value_size: int,
    include: Sequence[str],
    file: str | None,
    console: Console,
) -> int:
    """Print (or pickle) the artifacts of the tasks ``path`` names; return the exit status.

    Raises:
        NotFoundError: The run, step or task does not exist.
    """
    tasks = find_tasks(path)
    if not tasks:
        raise click.ClickException(f"step {path.pathspec} has no task")
    collected: dict[str, dict[str, Any]] = {}
    for task in tasks:
        artifacts = _task_artifacts(task, private)
        names, missing = select_artifacts(list(artifacts), include, private)
        console.info(f"Artifacts of task {task.pathspec}:")
        for name in missing:
            console.error(f"    (no artifact named {name!r} in {task.pathspec})")
        if file is not None:
            key = "/".join(task.path_components[1:])  # Metaflow's key: run_id/step/task_id
            collected[key] = {name: artifacts[name].data for name in names}
            continue
        for name in names:
            artifact = artifacts[name]
            text = _value_text(artifact, max_value_size)
            click.echo(f"{name} [size: {artifact.size} type: {artifact.type_name}] = {text}")
    if file is not None:
        with open(file, "wb") as handle:
            pickle.dump(collected, handle, protocol=pickle.HIGHEST_PROTOCOL)
        console.info(f"Artifacts written to {file}")
    return 0


def dump_command(flow_cls: type) -> click.Command:
    """The ``dump`` command of a flow."""
    flow = flow_cls.__name__

    @click.command(
        "dump",
        help="Show the artifacts of a task, or of every task of a step. PATHSPEC is "
        "run_id/step_name or run_id/step_name/task_id.",
    )
    @click.argument("pathspec")
    @click.option(
        "--private/--no-private",
        default=False,
        show_default=True,
        help="Show also artifacts whose names start with '_'.",
    )
    @click.option(
        "--max-value-size",
        type=click.IntRange(min=0),
        default=DEFAULT_MAX_VALUE_SIZE,
        show_default=True,
        help="Show values stored in at most this many bytes, their repr cut to as many "
        "characters; 0 shows names only.",
    )
    @click.option(
        "--include",
        default="",
        metavar="NAMES",
        help="Show only these artifacts (comma-separated names).",
    )
    @click.option(
        "--file",
        type=click.Path(dir_okay=False, writable=True),
        default=None,
        help="Write every value, uncut, to this file as a pickle of "
        "{'run_id/step/task_id': {name: value}} instead of printing.",
    )
    @click.pass_context
    def dump(
        ctx: click.Context,
        pathspec: str,
        private: bool,
        max_value_size: int,
        include: str,
        file: str | None,
    ) -> None:
        path = parse_task_path(flow, pathspec)
        names = [name.strip() for name in include.split(",") if name.strip()]
        console = Console(bool((ctx.obj or {}).get("quiet")))
        ctx.exit(
            dump_tasks(
                path,
                private=private,
                max_value_size=max_value_size,
                include=names,
                file=file,
                console=console,
            )
        )

    return dump
