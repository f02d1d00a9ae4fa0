"""Tests of polyflow_core.paths: the files under a root, the socket fallback, find_root."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from polyflow_core import paths
from polyflow_core.errors import FailedPreconditionError, InvalidArgumentError
from polyflow_core.paths import RootLayout, core_address, find_root


def test_files_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / ".polyflow"
    layout = RootLayout(root)
    assert layout.root == root.resolve()
    assert layout.lock_path == layout.root / "daemon.lock"
    assert layout.pid_path == layout.root / "daemon.pid"
    assert layout.log_path == layout.root / "daemon.log"
    assert layout.db_path == layout.root / "metadata.db"
    assert layout.store_root == layout.root / "store"
    assert layout.logs_root == layout.root / "logs"
    assert layout.tasks_dir == layout.root / "tasks"
    assert layout.task_log_path("HelloFlow", "12", "start", "3", 1, "stderr") == (
        layout.root / "logs" / "HelloFlow" / "12" / "start" / "3" / "1.stderr"
    )
    assert layout.task_spec_path("12", "3", 0) == layout.root / "tasks" / "12-3-0.pb"
    assert not root.exists(), "computing paths creates nothing"


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert RootLayout(Path(".polyflow")).root == (tmp_path / ".polyflow").resolve()
    assert RootLayout(Path(".polyflow")) == RootLayout(tmp_path / ".polyflow")


def test_short_root_keeps_socket_inside(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / ".polyflow")
    if layout.uses_socket_fallback:  # pragma: no cover - very deep tmp folders
        pytest.skip("tmp_path itself is too long")
    assert layout.socket_path == layout.root / "daemon.sock"
    assert core_address(layout) == f"unix:{layout.root / 'daemon.sock'}"


def test_long_root_falls_back_to_a_short_private_socket(tmp_path: Path) -> None:
    root = tmp_path / ("x" * 120) / ".polyflow"
    layout = RootLayout(root)
    assert layout.uses_socket_fallback
    expected_hash = hashlib.sha256(os.fsencode(layout.root)).hexdigest()[:16]
    assert layout.socket_path == Path(f"/tmp/polyflow-{os.getuid()}/{expected_hash}.sock")
    assert len(os.fsencode(layout.socket_path)) <= paths.MAX_SOCKET_PATH_BYTES
    assert core_address(layout) == f"unix:{layout.socket_path}"
    # Another root gets another socket.
    assert RootLayout(tmp_path / ("y" * 120) / ".polyflow").socket_path != layout.socket_path


def test_limit_is_counted_in_bytes(tmp_path: Path) -> None:
    base = len(os.fsencode(tmp_path / "x" / ".polyflow" / "daemon.sock")) - 1
    accents = paths.MAX_SOCKET_PATH_BYTES - base  # that many "é": <= 100 chars, > 100 bytes
    if accents < 1:  # pragma: no cover - very deep tmp folders
        pytest.skip("tmp_path itself is too long")
    layout = RootLayout(tmp_path / ("é" * accents) / ".polyflow")
    assert len(str(layout.socket_in_root)) <= paths.MAX_SOCKET_PATH_BYTES
    assert len(os.fsencode(layout.socket_in_root)) > paths.MAX_SOCKET_PATH_BYTES
    assert layout.uses_socket_fallback


def test_ensure_socket_dir_in_root(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / ".polyflow")
    if layout.uses_socket_fallback:  # pragma: no cover
        pytest.skip("tmp_path itself is too long")
    folder = layout.ensure_socket_dir()
    assert folder == layout.root
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_ensure_socket_dir_fallback_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "_FALLBACK_PARENT", tmp_path / "t")
    (tmp_path / "t").mkdir()
    layout = RootLayout(tmp_path / ("x" * 120) / ".polyflow")
    assert not (tmp_path / "t" / f"polyflow-{os.getuid()}").exists(), "created only when asked"
    folder = layout.ensure_socket_dir()
    assert folder == tmp_path / "t" / f"polyflow-{os.getuid()}"
    assert layout.socket_path.parent == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # A folder left too open is tightened again.
    folder.chmod(0o755)
    layout.ensure_socket_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not layout.root.exists(), "the fallback does not create the root"


def test_ensure_socket_dir_refuses_a_non_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "_FALLBACK_PARENT", tmp_path)
    (tmp_path / f"polyflow-{os.getuid()}").write_text("not a folder")
    layout = RootLayout(tmp_path / ("x" * 120) / ".polyflow")
    with pytest.raises(FailedPreconditionError) as info:
        layout.ensure_socket_dir()
    assert info.value.reason == "UNSAFE_SOCKET_DIR"


@pytest.mark.parametrize(
    ("flow", "run", "step", "task"),
    [("..", "1", "s", "1"), ("F", "a/b", "s", "1"), ("F", "1", "", "1"), ("F", "1", "s", ".")],
)
def test_task_log_path_refuses_escaping_segments(
    tmp_path: Path, flow: str, run: str, step: str, task: str
) -> None:
    layout = RootLayout(tmp_path / ".polyflow")
    with pytest.raises(InvalidArgumentError) as info:
        layout.task_log_path(flow, run, step, task, 0, "stdout")
    assert info.value.reason == "INVALID_PATH_SEGMENT"


def test_task_log_path_refuses_bad_stream_and_attempt(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / ".polyflow")
    with pytest.raises(InvalidArgumentError):
        layout.task_log_path("F", "1", "s", "1", 0, "stdin")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        layout.task_log_path("F", "1", "s", "1", -1, "stdout")


def test_find_root_walks_up(tmp_path: Path) -> None:
    project = tmp_path / "project"
    deep = project / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_root(deep) is None or find_root(deep) != project / ".polyflow"
    (project / ".polyflow").mkdir()
    assert find_root(deep) == (project / ".polyflow").resolve()
    assert find_root(project) == (project / ".polyflow").resolve()
    assert find_root(project / ".polyflow") == (project / ".polyflow").resolve()
    (project / ".polyflow" / "logs").mkdir()
    assert find_root(project / ".polyflow" / "logs") == (project / ".polyflow").resolve()
    # The nearest one wins.
    (project / "a" / ".polyflow").mkdir()
    assert find_root(deep) == (project / "a" / ".polyflow").resolve()


def test_find_root_ignores_a_file_named_like_the_root(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / ".polyflow").write_text("")
    found = find_root(tmp_path / "p")
    assert found != (tmp_path / "p" / ".polyflow").resolve()


def test_import_is_light() -> None:
    code = (
        "import sys, polyflow_core.paths; "
        "heavy = [m for m in ('grpc', 'sqlite3', 'zstandard', 'google.protobuf') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""
