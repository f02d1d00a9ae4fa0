"""The ``polyflow`` console script: ``polyflow daemon start|stop|status`` and ``polyflow version``.

The daemon commands act on the project's root (``POLYFLOW_ROOT``, else the nearest
``.polyflow`` folder), or on ``POLYFLOW_CORE_ADDRESS`` for ``status``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from polyflow.exceptions import PolyflowError

if TYPE_CHECKING:
    from polyflow.api.runtime.v1.request_response_pb2 import GetServerInfoResponse

__all__ = ["cli", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("polyflow")
    except PackageNotFoundError:
        return "unknown"


def _print_info(info: GetServerInfoResponse) -> None:
    click.echo("polyflow daemon is running")
    click.echo(f"  address: {info.address}")
    click.echo(f"  pid:     {info.pid}")
    click.echo(f"  root:    {info.root}")
    click.echo(f"  version: {info.version}")
    if info.metadata:
        click.echo(f"  metadata: {info.metadata}")
    if info.store.kind:
        click.echo(f"  store:   {info.store.kind} {info.store.root}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Polyflow: manage the local core daemon."""


@cli.command()
def version() -> None:
    """Print the SDK's version."""
    click.echo(f"polyflow {_version()}")


@cli.group()
def daemon() -> None:
    """Start, stop or inspect the project's daemon."""


@daemon.command()
def start() -> None:
    """Start the project's daemon (a no-op when it runs already)."""
    from polyflow._daemon import ensure_daemon, resolve_root

    if os.environ.get("POLYFLOW_CORE_ADDRESS"):
        raise click.ClickException(
            "POLYFLOW_CORE_ADDRESS is set: this client uses that core and starts no daemon"
        )
    root = resolve_root()
    assert root is not None  # create=True always yields a root
    _print_info(ensure_daemon(root))


@daemon.command()
def stop() -> None:
    """Stop the project's daemon (SIGTERM, then wait for it to exit)."""
    from polyflow._daemon import resolve_root, stop_daemon

    root = resolve_root(create=False)
    if root is None:
        click.echo(f"polyflow daemon is not running (no .polyflow root found from {Path.cwd()})")
        return
    pid = stop_daemon(root)
    if pid is None:
        click.echo(f"polyflow daemon is not running (root {root})")
    else:
        click.echo(f"polyflow daemon stopped (pid {pid}, root {root})")


@daemon.command()
def status() -> None:
    """Print the daemon's address, pid, root and version, or "not running" (exit status 1)."""
    from polyflow._daemon import probe, resolve_endpoint

    endpoint = resolve_endpoint(create_root=False)
    if endpoint is None:
        click.echo(f"polyflow daemon is not running (no .polyflow root found from {Path.cwd()})")
        sys.exit(1)
    info = probe(endpoint.address)
    if info is None:
        where = f"root {endpoint.root}" if endpoint.root else f"address {endpoint.address}"
        click.echo(f"polyflow daemon is not running ({where})")
        sys.exit(1)
    _print_info(info)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the ``polyflow`` command line.

    Args:
        argv: The arguments (``sys.argv[1:]`` by default).
    """
    try:
        result = cli.main(args=argv, prog_name="polyflow", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except PolyflowError as error:
        click.echo(f"polyflow: {error}", err=True)
        sys.exit(1)
    # Without standalone mode, click returns the code given to ctx.exit (or the command's
    # return value, None for ours).
    sys.exit(result if isinstance(result, int) else 0)
