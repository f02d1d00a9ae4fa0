"""The client's cache of metadata reads never serves a stale answer.

A local client answers repeated reads from memory while the daemon's change stamp (bumped
after every commit) is the one it read before the call; any commit, from any process, makes
the next read go to the daemon.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow


def test_cached_reads_follow_commits_from_other_processes(fresh_project: FlowProject) -> None:
    from polyflow import Flow, Run
    from polyflow._daemon import get_client

    first = fresh_project.run_flow_ok("hello.py")
    with fresh_project.client_env():
        run = Run(f"HelloFlow/{first}")
        assert "extra" not in run.tags
        assert Flow("HelloFlow").latest_run.id == first  # type: ignore[union-attr]
        for _ in range(3):  # answered from the cache now
            assert Run(f"HelloFlow/{first}").data.message  # type: ignore[union-attr]
        assert get_client()._cache, "metadata reads of a local daemon are cached"

        # Another process adds a tag and starts a run: the next reads see both.
        code = (
            "from polyflow import Run, namespace; namespace(None); "
            f"Run('HelloFlow/{first}').add_tag('extra')"
        )
        subprocess.run(
            [sys.executable, "-c", code],
            env=fresh_project.env(),
            cwd=fresh_project.path,
            check=True,
            timeout=60,
        )
        assert "extra" in Run(f"HelloFlow/{first}").tags
        second = fresh_project.run_flow_ok("hello.py")
        assert Flow("HelloFlow").latest_run.id == second  # type: ignore[union-attr]
