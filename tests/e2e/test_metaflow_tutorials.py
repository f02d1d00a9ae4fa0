"""Metaflow's own tutorials run under Polyflow with only their import line changed.

The tutorials ship inside the `metaflow` package on PyPI. The test installs it into a separate
virtual environment (cached under `.cache/` at the repository root), copies the tutorial
files at test time (they are not part of this repository), rewrites `from metaflow import`
to `from polyflow import`, runs them and checks their results through the client API.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Project

METAFLOW_VERSION = "2.19.39"
REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".cache" / f"metaflow-{METAFLOW_VERSION}"


def _tutorials_dir() -> Path:
    """Returns the `metaflow/tutorials` folder of a metaflow installed in its own venv."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"metaflow=={METAFLOW_VERSION}"],
            check=True,
        )
    # Ask the other interpreter where the package is, without importing it (importing metaflow
    # is slow and not needed to find files).
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; "
            "print(u.find_spec('metaflow').submodule_search_locations[0])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Path(out) / "tutorials"


@pytest.fixture(scope="module")
def tutorials() -> Path:
    try:
        return _tutorials_dir()
    except subprocess.CalledProcessError as exc:  # pragma: no cover - only without PyPI
        pytest.fail(f"could not install metaflow {METAFLOW_VERSION} in {VENV}: {exc}")


IMPORT = re.compile(r"^(\s*)from metaflow import ", re.MULTILINE)


def _copy(tutorials: Path, name: str, dest: Path) -> Path:
    """Copies one tutorial folder and rewrites its import lines; returns the new folder."""
    target = dest / name
    # Leave out compiled files: a .pyc made moments earlier by pip can match the rewritten
    # source by size and mtime second ("metaflow" and "polyflow" have the same length).
    shutil.copytree(
        tutorials / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for source in target.glob("*.py"):
        text = source.read_text()
        rewritten, count = IMPORT.subn(r"\1from polyflow import ", text)
        assert count >= 1, f"{source.name} has no metaflow import to rewrite"
        assert not re.search(r"^\s*(from|import) metaflow\b", rewritten, re.MULTILINE)
        source.write_text(rewritten)
    return target


def _read(project: Project, expr: str) -> object:
    """Evaluates a client-API expression in the project and returns its JSON value."""
    out = project.python(f"import json; from polyflow import *; print(json.dumps({expr}))")
    return json.loads(out.strip().splitlines()[-1])


def test_helloworld(project: Project, tutorials: Path) -> None:
    folder = _copy(tutorials, "00-helloworld", project.path)
    result = project.run(str(folder / "helloworld.py"), "run")
    assert "Metaflow says: Hi!" in result.stdout + result.stderr
    assert _read(project, "Flow('HelloFlow').latest_run.successful") is True
    steps = _read(project, "sorted(s.id for s in Flow('HelloFlow').latest_run)")
    assert steps == ["end", "hello", "start"]


def test_playlist_parameters_include_file_branches(project: Project, tutorials: Path) -> None:
    folder = _copy(tutorials, "01-playlist", project.path)
    project.run(str(folder / "playlist.py"), "run", "--genre", "comedy", "--recommendations", "3")
    run = "Flow('PlayListFlow').latest_run"
    assert _read(project, f"{run}.successful") is True
    assert _read(project, f"{run}.data.genre") == "comedy"
    assert _read(project, f"{run}.data.recommendations") == 3
    playlist = _read(project, f"{run}.data.playlist")
    assert isinstance(playlist, list) and playlist, "the comedy playlist is empty"
    # Every pick really is a comedy from the included CSV.
    import csv

    with open(folder / "movies.csv", newline="") as f:
        genres_of = {row["movie_title"]: row["genres"] for row in csv.DictReader(f)}
    assert all("comedy" in genres_of[title].lower() for title in playlist)
    bonus = _read(project, f"list({run}.data.bonus)")
    assert len(bonus) == 2 and "comedy" not in bonus[1].lower()
    # IncludeFile stored the file's content as an artifact.
    assert (
        _read(
            project,
            f"{run}['start'].task.data.movie_data == open({str(folder / 'movies.csv')!r}).read()",
        )
        is True
    )


def test_statistics_foreach_then_playlist_redux(project: Project, tutorials: Path) -> None:
    stats = _copy(tutorials, "02-statistics", project.path)
    project.run(str(stats / "stats.py"), "run")
    run = "Flow('MovieStatsFlow').latest_successful_run"
    genres = _read(project, f"sorted({run}.data.genre_stats)")
    assert "comedy" in genres and "drama" in genres
    num_tasks = _read(project, f"len(list({run}['compute_statistics'].tasks()))")
    assert num_tasks == len(genres)
    quartiles = _read(project, f"{run}.data.genre_stats['drama']['quartiles']")
    assert len(quartiles) == 3 and quartiles == sorted(quartiles)

    redux = _copy(tutorials, "03-playlist-redux", project.path)
    result = project.run(str(redux / "playlist.py"), "run", "--genre", "Drama")
    output = result.stdout + result.stderr
    assert "Using metadata provider:" in output
    assert "MovieStatsFlow" in output
    playlist_run = "Flow('PlayListFlow').latest_run"
    assert _read(project, f"{playlist_run}.successful") is True
    # The redux flow copied the statistics of the stats run through the client API.
    assert (
        _read(project, f"{playlist_run}['start'].task.data.genre_stats == {run}.data.genre_stats")
        is True
    )
    assert _read(project, f"len({playlist_run}.data.playlist) > 0") is True
