"""``tag add|remove|replace|list``: change and show the user tags of runs (Metaflow's ``tag``).

Only user tags change; system tags (``user:``, ``runtime:``, ``python_version:``,
``polyflow_version:``) are fixed when a run starts, and the core refuses any change to them.
As in Metaflow, ``add``, ``remove`` and ``replace`` need ``--run-id`` (a mistyped command must
not tag whatever run happens to be the latest; the error names the latest run), and find the
run in the current namespace unless ``--namespace`` names another (an empty value: global).

Output goes to standard output. With ``--quiet`` it is one parseable line per group, Metaflow's
form: ``<run(s)> ; <system tags> ; <user tags>`` (comma-separated), or with
``--group-by-tag`` ``user:<tag> ; <runs>`` / ``system:<tag> ; <runs>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from polyflow.client import Run

__all__ = ["RunTags", "format_by_run", "format_by_tag", "tag_group"]


@dataclass(frozen=True)
class RunTags:
    """The tags of one run, or the union of several runs' tags under one title."""

    title: str
    """The run's pathspec, or the pathspecs of the runs, comma-separated."""
    user: frozenset[str]
    """User tags."""
    system: frozenset[str]
    """System tags."""


def _joined(tags: Iterable[str], empty: str = "(none)") -> str:
    return ", ".join(sorted(tags)) or empty


def format_by_run(groups: Sequence[RunTags], *, hide_system: bool, quiet: bool) -> list[str]:
    """Lines listing each group's user tags, then its system tags unless hidden."""
    lines: list[str] = []
    for group in groups:
        system = frozenset[str]() if hide_system else group.system
        if quiet:
            lines.append(
                f"{group.title} ; {','.join(sorted(system))} ; {','.join(sorted(group.user))}"
            )
            continue
        lines.append(group.title)
        lines.append(f"    user tags:   {_joined(group.user)}")
        if not hide_system:
            lines.append(f"    system tags: {_joined(group.system)}")
    return lines


def format_by_tag(runs: Sequence[RunTags], *, hide_system: bool, quiet: bool) -> list[str]:
    """Lines listing, for each tag, the runs that carry it (user tags first)."""
    by_tag: dict[tuple[bool, str], list[str]] = {}
    for run in runs:
        for tag in run.user:
            by_tag.setdefault((False, tag), []).append(run.title)
        if not hide_system:
            for tag in run.system:
                by_tag.setdefault((True, tag), []).append(run.title)
    lines = []
    for (is_system, tag), titles in sorted(by_tag.items()):
        kind = "system" if is_system else "user"
        if quiet:
            lines.append(f"{kind}:{tag} ; {','.join(titles)}")
        else:
            lines.append(f"{kind} tag {tag!r}: {', '.join(titles)}")
    return lines


def _tags_of(run: Run) -> RunTags:
    return RunTags(run.pathspec, run.user_tags, run.system_tags)


def _echo(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)


def _namespace_for(option: str | None) -> str | None:
    """The namespace ``--namespace`` asks for: the current one when absent, global when
    empty."""
    from polyflow.client import get_namespace

    if option is None:
        return get_namespace()
    return option or None


def _run_to_change(flow: str, run_id: str | None, namespace_option: str | None) -> Run:
    """The run ``--run-id`` names, checked to be in the namespace.

    Raises:
        click.ClickException: The flow never ran (in the namespace), no ``--run-id`` was
            given, or the run is absent or in another namespace.
    """
    from polyflow.client import Flow, Run, namespace
    from polyflow.exceptions import NamespaceMismatchError, NotFoundError

    ns = _namespace_for(namespace_option)
    shown = ns if ns is not None else "(global)"
    namespace(ns)
    try:
        latest = Flow(flow).latest_run
    except NotFoundError:
        raise click.ClickException(
            f"No run of {flow} found: run the flow before tagging."
        ) from None
    except NamespaceMismatchError:
        raise click.ClickException(
            f"No run of {flow} found in namespace {shown}; choose another with --namespace "
            "(an empty value means every namespace)."
        ) from None
    if run_id is None:
        hint = f" The latest run of {flow} in namespace {shown} is {latest.id}." if latest else ""
        raise click.ClickException(f"Please give the run to tag with --run-id.{hint}")
    if not run_id or "/" in run_id:
        raise click.BadParameter(f"{run_id!r} is not a run id", param_hint="--run-id")
    try:
        return Run(f"{flow}/{run_id}")
    except NotFoundError:
        raise click.ClickException(f"Run {flow}/{run_id} does not exist.") from None
    except NamespaceMismatchError:
        raise click.ClickException(
            f"Run {flow}/{run_id} is not in namespace {shown}; choose its namespace with "
            "--namespace (an empty value means every namespace)."
        ) from None


def _report(run: Run, quiet: bool) -> None:
    if not quiet:
        click.echo("Operation successful. New tags:")
    _echo(format_by_run([_tags_of(run)], hide_system=False, quiet=quiet))


def _quiet(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("quiet"))


_RUN_ID = click.option(
    "--run-id", default=None, help="The run to change (required; the error names the latest)."
)
_NAMESPACE = click.option(
    "--namespace",
    "namespace_option",
    default=None,
    help="Find the run in this namespace instead of the current one; empty means global.",
)


def tag_group(flow_cls: type) -> click.Group:
    """The ``tag`` command group of a flow."""
    flow = flow_cls.__name__

    @click.group("tag", help="Change or list the user tags of runs; system tags are fixed.")
    def tag() -> None:
        pass

    @tag.command("add", help="Add user tags to a run.")
    @_RUN_ID
    @_NAMESPACE
    @click.argument("tags", nargs=-1, required=True)
    @click.pass_context
    def add(
        ctx: click.Context, run_id: str | None, namespace_option: str | None, tags: tuple[str, ...]
    ) -> None:
        run = _run_to_change(flow, run_id, namespace_option)
        run.add_tags(tags)
        _report(run, _quiet(ctx))

    @tag.command("remove", help="Remove user tags from a run.")
    @_RUN_ID
    @_NAMESPACE
    @click.argument("tags", nargs=-1, required=True)
    @click.pass_context
    def remove(
        ctx: click.Context, run_id: str | None, namespace_option: str | None, tags: tuple[str, ...]
    ) -> None:
        run = _run_to_change(flow, run_id, namespace_option)
        run.remove_tags(tags)
        _report(run, _quiet(ctx))

    @tag.command(
        "replace",
        help="Remove and add user tags of a run in one atomic change; removals come first.",
    )
    @_RUN_ID
    @_NAMESPACE
    @click.option("--add", "to_add", multiple=True, help="A tag to add (repeatable).")
    @click.option("--remove", "to_remove", multiple=True, help="A tag to remove (repeatable).")
    @click.pass_context
    def replace(
        ctx: click.Context,
        run_id: str | None,
        namespace_option: str | None,
        to_add: tuple[str, ...],
        to_remove: tuple[str, ...],
    ) -> None:
        # As in Metaflow: a change that only adds or only removes has its own command.
        if not to_add and not to_remove:
            raise click.UsageError("give at least one tag to --add and one to --remove")
        if not to_remove:
            raise click.UsageError("give at least one tag to --remove, or use 'tag add'")
        if not to_add:
            raise click.UsageError("give at least one tag to --add, or use 'tag remove'")
        run = _run_to_change(flow, run_id, namespace_option)
        run.replace_tags(to_remove, to_add)
        _report(run, _quiet(ctx))

    @tag.command("list", help="List the tags of runs: every run of the flow by default.")
    @click.option("--run-id", default=None, help="List the tags of this run only.")
    @click.option("--all", "list_all", is_flag=True, help="Every run of the flow (the default).")
    @click.option("--my-runs", is_flag=True, help="Only the runs in your namespace (user:<you>).")
    @click.option("--hide-system-tags", is_flag=True, help="Leave system tags out.")
    @click.option("--group-by-tag", is_flag=True, help="For each tag, list the runs carrying it.")
    @click.option("--group-by-run", is_flag=True, help="List the tags of each run separately.")
    @click.option("--flat", is_flag=True, help="One tag per line, no grouping.")
    @click.argument("arg_run_id", metavar="[RUN_ID]", required=False, default=None)
    @click.pass_context
    def list_(
        ctx: click.Context,
        run_id: str | None,
        list_all: bool,
        my_runs: bool,
        hide_system_tags: bool,
        group_by_tag: bool,
        group_by_run: bool,
        flat: bool,
        arg_run_id: str | None,
    ) -> None:
        if run_id is not None and arg_run_id is not None:
            raise click.UsageError("give the run either with --run-id or as an argument, not both")
        run_id = run_id if run_id is not None else arg_run_id
        if list_all and my_runs:
            raise click.UsageError("--all cannot be used together with --my-runs")
        if run_id is not None and (list_all or my_runs):
            raise click.UsageError("--run-id cannot be used together with --all or --my-runs")
        if group_by_tag and group_by_run:
            raise click.UsageError("--group-by-tag cannot be used together with --group-by-run")
        if flat and (group_by_tag or group_by_run):
            raise click.UsageError("--flat cannot be used together with a --group-by option")
        runs = _runs_to_list(flow, run_id, my_runs)
        quiet = _quiet(ctx)
        if flat:
            tags = set().union(*(r.user for r in runs))
            if not hide_system_tags:
                tags = tags.union(*(r.system for r in runs))
            _echo(sorted(tags))
        elif group_by_tag:
            _echo(format_by_tag(runs, hide_system=hide_system_tags, quiet=quiet))
        elif group_by_run:
            _echo(format_by_run(runs, hide_system=hide_system_tags, quiet=quiet))
        else:
            union = RunTags(
                ", ".join(r.title for r in runs),
                frozenset().union(*(r.user for r in runs)),
                frozenset().union(*(r.system for r in runs)),
            )
            _echo(format_by_run([union], hide_system=hide_system_tags, quiet=quiet))

    return tag


def _runs_to_list(flow: str, run_id: str | None, my_runs: bool) -> list[RunTags]:
    """The runs ``tag list`` shows: one run (any namespace), your runs, or every run.

    Raises:
        click.ClickException: The flow never ran, the run does not exist, or you have no run.
    """
    from polyflow.client import Flow, Run, namespace
    from polyflow.client._namespace import current_user
    from polyflow.exceptions import NamespaceMismatchError, NotFoundError

    if run_id is not None:
        namespace(None)
        try:
            return [_tags_of(Run(f"{flow}/{run_id}"))]
        except NotFoundError:
            raise click.ClickException(f"Run {flow}/{run_id} does not exist.") from None
    ns = f"user:{current_user()}" if my_runs else None
    namespace(ns)
    try:
        runs = [_tags_of(run) for run in Flow(flow).runs()]
    except NotFoundError:
        raise click.ClickException(f"Cannot list tags: {flow} has never been run.") from None
    except NamespaceMismatchError:
        raise click.ClickException(f"You ({ns}) have no run of {flow}.") from None
    return runs
