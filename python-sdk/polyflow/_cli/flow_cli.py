"""The command line of a flow file: ``python flow.py [--quiet] [--with SPEC] COMMAND``.

Commands: ``run`` (with one option per flow parameter), ``resume`` (the same options, without
parameters), ``check``, ``show``, ``logs``, ``tag``, ``dump`` and ``help``, as in Metaflow.
``FlowSpec()`` calls :func:`main` when the user's script runs.

gRPC, the client and the daemon are imported only by commands that talk to the core, so
``--help`` and option errors answer at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from polyflow._cli._output import Console
from polyflow.exceptions import PolyflowError

if TYPE_CHECKING:
    from polyflow._authoring.parameters import Parameter

__all__ = ["build_cli", "main"]

_PARAM_PREFIX = "pf_param_"


def _parameter_help(param: Parameter, env_var: str) -> str:
    from polyflow._authoring.parameters import ParameterKind

    parts = [param.help] if param.help else []
    if param.kind is ParameterKind.FILE:
        parts.append("A path; the file is read when the run starts.")
    if param.separator:
        parts.append(f"Split into a list on {param.separator!r}.")
    if param.required:
        parts.append("[required]")
    elif param.show_default and param.default is not None:
        default = "(computed)" if callable(param.default) else repr(param.default)
        parts.append(f"[default: {default}]")
    parts.append(f"[env: {env_var}]")
    return " ".join(parts)


def _metavar(param: Parameter) -> str:
    from polyflow._authoring.parameters import ParameterKind

    return {
        ParameterKind.STRING: "TEXT",
        ParameterKind.INT: "INTEGER",
        ParameterKind.FLOAT: "FLOAT",
        ParameterKind.BOOL: "BOOLEAN",
        ParameterKind.JSON: "JSON",
        ParameterKind.FILE: "PATH",
    }[param.kind]


def _parameter_option(index: int, param: Parameter) -> click.Option:
    """A ``run`` option for a parameter; its value is parsed later, by the parameter."""
    from polyflow._cli._run import env_var_name

    env_var = env_var_name(param.name)
    dest = f"{_PARAM_PREFIX}{index}"
    help_text = _parameter_help(param, env_var)
    if param.kwargs.get("is_flag"):
        # A flag, as Metaflow's is_flag=True: --name / --no-name; absent stays None so the
        # environment and the default still apply.
        return click.Option(
            [f"--{param.name}/--no-{param.name}", dest], default=None, help=help_text
        )
    # The raw text is kept (type=str, no click default): Parameter.resolve parses it, so a
    # bad value fails with a message naming the parameter and exit status 1, and the
    # environment variable is read explicitly when the option is absent.
    return click.Option(
        [f"--{param.name}", dest],
        type=str,
        default=None,
        metavar=_metavar(param),
        help=help_text,
    )


def _raw_parameters(params: Sequence[Parameter], kwargs: dict[str, Any]) -> dict[str, str | None]:
    raw: dict[str, str | None] = {}
    for index, param in enumerate(params):
        value = kwargs.get(f"{_PARAM_PREFIX}{index}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        raw[param.attribute] = value
    return raw


_RUN_OPTIONS = (
    click.option(
        "--max-workers",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="Tasks that may run at once.",
    ),
    click.option(
        "--max-num-splits",
        type=click.IntRange(min=1),
        default=100,
        show_default=True,
        help="Most splits one foreach may create.",
    ),
    click.option(
        "--max-log-size",
        type=click.FloatRange(min=0, min_open=True),
        default=10,
        show_default=True,
        help="Most MB of stdout and of stderr stored per task attempt (fractions allowed); "
        "later output is dropped and a truncation marker stored.",
    ),
    click.option("--tag", "tags", multiple=True, help="A tag for the run (repeatable)."),
    click.option(
        "--with",
        "run_decospecs",
        multiple=True,
        metavar="SPEC",
        help="Attach a decorator to every step, as the top-level --with does (repeatable).",
    ),
    click.option(
        "--run-id-file",
        type=click.Path(dir_okay=False, writable=True),
        default=None,
        help="Write the run id to this file as soon as the run exists.",
    ),
    click.option(
        "--namespace",
        default=None,
        help="The client namespace of the run's tasks; an empty value means global.",
    ),
)

F = TypeVar("F", bound=Callable[..., Any])


def _run_options(command: F) -> F:
    """The options ``run`` and ``resume`` share."""
    for option in reversed(_RUN_OPTIONS):
        command = option(command)
    return command


def build_cli(flow_cls: type) -> click.Group:
    """Make the click command line of a flow class.

    Args:
        flow_cls: The flow class.

    Returns:
        The command group (``run``, ``resume``, ``check``, ``show``, ``logs``, ``tag``,
        ``dump``, ``help``).
    """
    from polyflow._authoring.members import flow_parameters

    params = flow_parameters(flow_cls)
    doc = (flow_cls.__doc__ or "").strip()

    @click.group(
        help=doc or f"The {flow_cls.__name__} flow.",
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    @click.option("--quiet/--not-quiet", default=False, help="Print only task output and failures.")
    @click.option(
        "--with",
        "decospecs",
        multiple=True,
        metavar="SPEC",
        help="Attach a decorator to every step: name or name:attr=value,attr=value.",
    )
    @click.pass_context
    def cli(ctx: click.Context, quiet: bool, decospecs: tuple[str, ...]) -> None:
        ctx.obj = {"quiet": quiet, "decospecs": decospecs}

    @cli.command(help="Run the flow.")
    @_run_options
    @click.pass_context
    def run(
        ctx: click.Context,
        /,
        max_workers: int,
        max_num_splits: int,
        max_log_size: float,
        tags: tuple[str, ...],
        run_decospecs: tuple[str, ...],
        run_id_file: str | None,
        namespace: str | None,
        **kwargs: Any,
    ) -> None:
        from polyflow._cli._run import RunOptions, execute_run

        options = RunOptions(
            max_workers=max_workers,
            max_num_splits=max_num_splits,
            max_log_size_mb=max_log_size,
            tags=tags,
            run_id_file=run_id_file,
            namespace=namespace,
            decospecs=(*ctx.obj["decospecs"], *run_decospecs),
            quiet=ctx.obj["quiet"],
            raw_parameters=_raw_parameters(params, kwargs),
        )
        ctx.exit(execute_run(flow_cls, options))

    for index, param in enumerate(params):
        run.params.append(_parameter_option(index, param))

    @cli.command(
        help="Resume a run: tasks that succeeded in it are cloned (their artifacts reused, "
        "not copied) and the others run, with the origin run's parameters. STEP re-runs "
        "that step and every step after it even where they succeeded. By default the "
        "origin is the latest run started with `run` in the current namespace."
    )
    @click.argument("step", required=False)
    @click.option(
        "--origin-run-id",
        default=None,
        help="The run to resume (default: the latest run started with `run`).",
    )
    @click.option(
        "--clone-only",
        is_flag=True,
        default=False,
        hidden=True,
        help="Only clone the tasks that succeeded; run nothing.",
    )
    @_run_options
    @click.pass_context
    def resume(
        ctx: click.Context,
        /,
        step: str | None,
        origin_run_id: str | None,
        clone_only: bool,
        max_workers: int,
        max_num_splits: int,
        max_log_size: float,
        tags: tuple[str, ...],
        run_decospecs: tuple[str, ...],
        run_id_file: str | None,
        namespace: str | None,
        **kwargs: Any,
    ) -> None:
        from polyflow._cli._resume import ResumeOptions, execute_resume
        from polyflow._cli._run import RunOptions

        raw = _raw_parameters(params, kwargs)
        given = [f"--{param.name}" for param in params if raw[param.attribute] is not None]
        if given:
            raise click.UsageError(
                f"parameters cannot be changed on resume ({', '.join(given)} given): the "
                "resumed run uses the parameter values of the run it resumes. Start a new "
                "run with `run` to use other values.",
                ctx,
            )
        options = RunOptions(
            max_workers=max_workers,
            max_num_splits=max_num_splits,
            max_log_size_mb=max_log_size,
            tags=tags,
            run_id_file=run_id_file,
            namespace=namespace,
            decospecs=(*ctx.obj["decospecs"], *run_decospecs),
            quiet=ctx.obj["quiet"],
        )
        resume_options = ResumeOptions(
            step=step, origin_run_id=origin_run_id, clone_only=clone_only
        )
        ctx.exit(execute_resume(flow_cls, options, resume_options))

    # Parameter options are accepted only to refuse them with a clear message.
    for index, param in enumerate(params):
        option = _parameter_option(index, param)
        option.hidden = True
        resume.params.append(option)

    @cli.command(help="Check that the flow's graph is valid.")
    @click.pass_context
    def check(ctx: click.Context) -> None:
        ctx.exit(_check(flow_cls, ctx.obj["decospecs"], ctx.obj["quiet"]))

    @cli.command(help="Show the flow's steps, their kinds, decorators and edges.")
    @click.pass_context
    def show(ctx: click.Context) -> None:
        ctx.exit(_show(flow_cls, ctx.obj["decospecs"]))

    # Commands that read (or tag) finished runs: each in its own module.
    from polyflow._cli._dump import dump_command
    from polyflow._cli._logs import logs_group
    from polyflow._cli._tag import tag_group

    for command in (logs_group(flow_cls), tag_group(flow_cls), dump_command(flow_cls)):
        cli.add_command(command)

    @cli.command(name="help", help="Show the help of every command.")
    @click.pass_context
    def help_(ctx: click.Context) -> None:
        parent = ctx.parent
        assert parent is not None
        click.echo(cli.get_help(parent))
        for name in ("run", "resume", "check", "show", "logs", "tag", "dump"):
            command = cli.commands[name]
            sub = click.Context(command, info_name=name, parent=parent)
            click.echo("")
            click.echo(command.get_help(sub))

    return cli


def _check(flow_cls: type, decospecs: Sequence[str], quiet: bool) -> int:
    from polyflow._authoring.graph import run_launch_hooks
    from polyflow._cli._graph import extract, print_problems, validate
    from polyflow._daemon import get_client

    console = Console(quiet)
    console.info("Validating your flow...")
    definition = extract(flow_cls, decospecs)
    _, _, problems = validate(get_client(), definition)
    if problems:
        print_problems(console, problems, definition.source_file)
        return 1
    run_launch_hooks(definition)  # the step decorators' own checks, as before a run
    click.echo("    The graph looks good!")
    return 0


def _show(flow_cls: type, decospecs: Sequence[str]) -> int:
    from polyflow._cli._graph import extract, print_problems, show_text, validate
    from polyflow._daemon import get_client

    definition = extract(flow_cls, decospecs)
    _, derived, problems = validate(get_client(), definition)
    click.echo(show_text(derived))
    if problems:
        console = Console()
        console.error("The graph has problems:")
        print_problems(console, problems, definition.source_file)
    return 0


def main(flow_cls: type, argv: Sequence[str] | None = None) -> NoReturn:
    """Run a flow's command line and exit.

    Args:
        flow_cls: The flow class.
        argv: The arguments after the script's name (``sys.argv[1:]`` by default).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else flow_cls.__name__
    if args[:1] in (["run"], ["resume"]) and not {"-h", "--help"} & set(args):
        from polyflow._daemon import start_early

        start_early()  # the daemon starts while this process extracts and checks the flow
    try:
        cli = build_cli(flow_cls)
        result = cli.main(args=args, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        Console().error("Aborted!")
        sys.exit(1)
    except PolyflowError as error:
        Console().error(f"Error: {error}")
        sys.exit(1)
    # Without standalone mode, click returns the code given to ctx.exit (or the command's
    # return value, None for ours).
    sys.exit(result if isinstance(result, int) else 0)
