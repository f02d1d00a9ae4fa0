"""The R tutorials (``r-package/inst/tutorials``) run as a user runs them, in order.

Episodes 00 to 04 are R flows (04 has a Python step); 05, the Python flow with an R step, is
covered by ``test_r_mixed.py``. Results are read back through the Python client, which also
shows that Python reads what R wrote.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from r_support import R_PACKAGE, RSetup, r_setup, stop_daemon

TUTORIALS = R_PACKAGE / "inst" / "tutorials"


@pytest.fixture(scope="module")
def r(tmp_path_factory: pytest.TempPathFactory) -> RSetup:
    """R with the package installed in a private library."""
    return r_setup(tmp_path_factory)


@pytest.fixture
def tutorials(tmp_path: Path) -> Iterator[Path]:
    """A copy of the tutorials folder, whose daemon is stopped at the end."""
    target = tmp_path / "tutorials"
    shutil.copytree(TUTORIALS, target)
    try:
        yield target
    finally:
        stop_daemon(target / ".polyflow")


def _run(r: RSetup, folder: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = r.env(folder.parent)
    proc = subprocess.run(
        [r.rscript, script, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{script} {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _read(r: RSetup, folder: Path, expression: str) -> object:
    code = textwrap.dedent(
        f"""
        import json
        from polyflow import Flow, namespace
        namespace(None)
        print(json.dumps({expression}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=r.env(folder),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_r_tutorials_run_in_order(r: RSetup, tutorials: Path) -> None:
    """Hello world, playlist (parameters, branches), statistics (foreach), redux (client)."""
    hello = _run(r, tutorials / "00-helloworld", "helloworld.R", "run")
    assert "Polyflow says: Hi!" in hello.stdout
    shown = _run(r, tutorials / "00-helloworld", "helloworld.R", "show")
    assert "Step hello (linear)" in shown.stdout

    playlist = _run(r, tutorials / "01-playlist", "playlist.R", "run", "--genre", "comedy",
                    "--recommendations", "2")  # fmt: skip
    assert "Playlist for movies in genre 'comedy':" in playlist.stdout
    assert "Pick 2:" in playlist.stdout and "Pick 3:" not in playlist.stdout

    _run(r, tutorials / "02-statistics", "stats.R", "run")
    redux = _run(r, tutorials / "03-playlist-redux", "playlist_redux.R", "run")
    assert "Playlist for the genre" in redux.stdout

    python_step = _run(r, tutorials / "04-python-step", "python_step.R", "run")
    assert "Best site: b" in python_step.stdout

    found = _read(
        r,
        tutorials,
        """{
            "message": Flow("HelloFlow").latest_run.data.message,
            "playlist": list(Flow("PlayListFlow").latest_run.data.playlist),
            "columns": list(Flow("MovieStatsFlow").latest_run.data.stats.columns),
            "genre": Flow("PlayListReduxFlow").latest_run.data.genre,
            "means": Flow("PythonStepFlow").latest_run["summarise"].task.data.means,
        }""",
    )
    assert isinstance(found, dict)
    assert found["message"] == "Polyflow says: Hi!"
    assert len(found["playlist"]) == 2
    assert found["columns"] == ["genre", "count", "q1", "median", "q3"]
    assert isinstance(found["genre"], str)
    assert found["means"] == {"a": 2.0, "b": 10.0, "c": 7.0}
