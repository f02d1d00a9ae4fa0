"""Command line of the core daemon.

::

    python -m polyflow_core serve --root DIR [--address ADDR] [--idle-timeout SECONDS]
    polyflow-core serve --root DIR ...

``--root`` is the ``.polyflow`` folder whose state the daemon serves. ``--address`` defaults to
the root's unix socket; ``--idle-timeout`` to ``$POLYFLOW_DAEMON_IDLE_TIMEOUT``, else 600
seconds (0 never exits). Logs go to stderr (the SDK appends them to ``daemon.log``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyflow-core", description="The Polyflow core daemon.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a root until stopped or idle")
    serve.add_argument("--root", required=True, type=Path, help="the .polyflow folder to serve")
    serve.add_argument(
        "--address", default="", help="gRPC address (default: unix socket of the root)"
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after this long with no run and no call (default: "
        "$POLYFLOW_DAEMON_IDLE_TIMEOUT, else 600; 0: never)",
    )
    serve.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s",
    )
    # Imported here so that `--help` stays fast and never touches gRPC.
    from polyflow_core.errors import CoreError
    from polyflow_core.server import ServerConfig, serve

    try:
        config = ServerConfig.from_environment(
            args.root, address=args.address, idle_timeout=args.idle_timeout
        )
    except ValueError as error:
        print(f"polyflow-core: bad POLYFLOW_DAEMON_IDLE_TIMEOUT: {error}", file=sys.stderr)
        return 2
    try:
        return serve(config)
    except (CoreError, OSError, RuntimeError) as error:  # grpc reports bind failures so
        logging.getLogger("polyflow_core").error("cannot serve %s: %s", args.root, error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
