"""Faults against a real daemon, real Python workers and real gRPC (issue 3, "Faults").

Each test provokes one fault the way it happens in the field and checks what a user sees
afterwards, through the flow CLI and the client API:

1. ``kill -9`` of a worker (pre-forked and spawned): the attempt fails naming the signal, and
   ``@retry`` runs it again.
2. ``kill -9`` of the daemon during a run: the next start marks the run FAILED, loses no finished
   task (even when the kill lands amid a flurry of task reports), and ``resume`` completes it.
3. A corrupted blob: every read (client and worker) fails naming the artifact, its task and both
   digests; no wrong value comes back.
4. A full disk while a worker stores an artifact (a small tmpfs as the root): the task fails
   cleanly, no partial blob or temporary file stays, metadata stays consistent, and a run works
   again once space is back. A disk too full even for the metadata stops the daemon rather
   than let it go on with changes it could not make durable.
5. Ctrl-C on ``python flow.py run`` during a foreach: the tasks and the processes they started
   are gone, the run is FAILED, and ``resume`` completes it.
6. Load: eight runs at once (racing to start the daemon), and 17,500 metadata records written
   by one run while a client reads, with nothing lost, nothing duplicated and no "database is
   locked".
7. Bad input over the wire: malformed, oversized and unknown-name requests and invalid graphs
   get a clean status code and message; the daemon keeps serving.

The flows are ``flows/fault_*.py``. Steps that must be caught in the act write their pid to
``$PF_FAULT_DIR/<name>.pid`` and wait while ``$PF_FAULT_DIR/hold`` exists. Only processes whose
environment carries this test's ``PF_FAULT_DIR`` are ever signalled (the daemon of the test's
own root excepted).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow

_RESTART_MESSAGE = "the daemon stopped before the run finished"
_CTRL_C_MESSAGE = "cancelled by the user (Ctrl-C)"
_FINISHED_RE = re.compile(r"\[(\w+/\d+/\w+/\d+)\] Task finished successfully\.$", re.M)
_WORKER_MODES = pytest.mark.parametrize(
    "worker_env",
    [pytest.param({}, id="pre-forked"), pytest.param({"POLYFLOW_FORK_WORKERS": "0"}, id="spawned")],
)


# --- processes ----------------------------------------------------------------------------------


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _environ(pid: int) -> dict[str, str]:
    """The environment a process started with (empty when it is gone or unreadable)."""
    raw = _read(Path(f"/proc/{pid}/environ")) or b""
    found = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            found[name.decode(errors="replace")] = value.decode(errors="replace")
    return found


def _cmdline(pid: int) -> list[str]:
    raw = _read(Path(f"/proc/{pid}/cmdline")) or b""
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, session id)`` of a process, or None when it is gone."""
    raw = _read(Path(f"/proc/{pid}/stat"))
    if raw is None:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[3])


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


class FaultDir:
    """The folder a test shares with its flow's steps (``$PF_FAULT_DIR``), and the processes
    the steps announce there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.env = {"PF_FAULT_DIR": str(path)}

    def hold(self) -> None:
        """Make waiting steps wait."""
        (self.path / "hold").touch()

    def release(self) -> None:
        """Let waiting steps go on."""
        (self.path / "hold").unlink(missing_ok=True)

    def owns(self, pid: int) -> bool:
        """Whether a live process was started by this test (it carries ``PF_FAULT_DIR``)."""
        return _alive(pid) and _environ(pid).get("PF_FAULT_DIR") == str(self.path)

    def pid(
        self, name: str, timeout: float = 60.0, proc: subprocess.Popen[str] | None = None
    ) -> int:
        """The pid a step announced as ``name``, waiting for it."""
        path = self.path / f"{name}.pid"

        def announced() -> bool:
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended before {name} was announced:\n{out}{err}")
            return path.exists()

        _wait_until(announced, timeout, f"{path}")
        pid = int(path.read_text())
        assert self.owns(pid), f"process {pid} ({name}) is not one of this test's"
        return pid

    def announced(self) -> dict[str, int]:
        """Every pid announced so far, by name."""
        return {p.stem: int(p.read_text()) for p in self.path.glob("*.pid")}

    def kill_leftovers(self) -> None:
        """SIGKILL what the steps announced and is still ours (teardown)."""
        for pid in self.announced().values():
            if self.owns(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def strays(self, daemon_pid: int | None) -> list[str]:
        """Processes of this test still running that are neither the daemon nor its pool of
        pre-forked workers (templates, zygotes) nor another helper of the daemon.

        A process counts as this test's when its environment carries ``PF_FAULT_DIR`` (the
        client's environment, which the daemon and every worker inherit).
        """
        strays = []
        for pid in _all_pids():
            stat = _stat(pid)
            if pid in (os.getpid(), daemon_pid) or stat is None or not self.owns(pid):
                continue
            _, ppid, sid = stat
            argv = _cmdline(pid)
            if "polyflow._worker.zygote" in argv and (ppid == daemon_pid or sid != pid):
                continue  # a template (the daemon's child) or a zygote (in its session)
            if ppid == daemon_pid and "polyflow._worker" not in argv:
                continue  # a helper of the daemon (the value converter)
            # Anything else is a task (a session leader) or what a task started.
            strays.append(f"{pid} (parent {ppid}, session {sid}): {' '.join(argv)}")
        return strays


@pytest.fixture
def fault_dir(tmp_path: Path) -> Iterator[FaultDir]:
    """A fresh ``$PF_FAULT_DIR``; what its steps announced is killed at the end."""
    folder = FaultDir(tmp_path / "fault")
    yield folder
    folder.release()
    folder.kill_leftovers()


def _kill_daemon(project: FlowProject) -> int:
    """SIGKILL the project's daemon and wait for it to be gone; return its pid."""
    pid = project.daemon_pid()
    assert pid is not None, "no daemon.pid"
    os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: not _alive(pid), 30, f"daemon {pid} to die")
    return pid


def _run(pathspec: str) -> Any:
    """A client ``Run`` (typed loosely: tests read artifacts by attribute)."""
    from polyflow import Run

    return Run(pathspec)


def _task(pathspec: str, attempt: int | None = None) -> Any:
    """A client ``Task``."""
    from polyflow import Task

    return Task(pathspec, attempt=attempt)


def _snapshot(project: FlowProject, pathspec: str, steps: tuple[str, ...]) -> dict[str, Any]:
    """What the client shows of the finished tasks of some steps: state, attempt, finish time
    and every artifact (digest and value)."""
    shot: dict[str, Any] = {}
    with project.client_env():
        run = _run(pathspec)
        for step in steps:
            for task in run[step]:
                shot[task.pathspec] = {
                    "successful": task.successful,
                    "attempt": task.current_attempt,
                    "finished_at": task.finished_at,
                    "artifacts": {a.id: (a.digest, a.data) for a in task},
                }
    return shot


def _resume(project: FlowProject, flow: str, env: dict[str, str]) -> str:
    """``python <flow> resume`` (the latest run); return the new run's id."""
    id_file = project.run_id_file()
    result = project.run_flow(flow, "resume", "--run-id-file", str(id_file), env=env)
    result.assert_ok()
    assert "Workflow starting" in result.stderr, result.describe()
    return id_file.read_text().strip()


# --- 1. kill -9 of a worker ----------------------------------------------------------------------


@_WORKER_MODES
def test_kill_9_of_a_worker_fails_the_attempt_and_retry_runs_it_again(
    fresh_project: FlowProject, fault_dir: FaultDir, worker_env: dict[str, str]
) -> None:
    env = {**fault_dir.env, **worker_env}
    id_file = fresh_project.run_id_file()
    proc = fresh_project.start_flow(
        "fault_kill_worker.py", "run", "--run-id-file", str(id_file), env=env
    )
    try:
        pid = fault_dir.pid("victim", proc=proc)
        if worker_env:  # a spawned worker is `python -m polyflow._worker` with its spec file
            assert _cmdline(pid)[-2:] == ["-m", "polyflow._worker"], _cmdline(pid)
            assert _environ(pid)["POLYFLOW_TASK_SPEC"].startswith(str(fresh_project.root))
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert not _alive(pid)
    run_id = id_file.read_text().strip()
    victim = f"FaultKillWorkerFlow/{run_id}/victim/"
    assert re.search(
        rf"\[{victim}\d+\] Task failed: worker killed by signal 9 \(SIGKILL\) before reporting "
        "its outcome$",
        err,
        re.M,
    ), err
    assert re.search(rf"\[{victim}\d+\] The task will be retried\.$", err, re.M), err
    assert re.search(rf"\[{victim}\d+\] Task is starting \(retry 1\)\.$", err, re.M), err

    with fresh_project.client_env():
        run = _run(f"FaultKillWorkerFlow/{run_id}")
        assert run.successful
        assert run.data.result == "kept after 1 retry"
        task = run["victim"].task
        assert task.current_attempt == 1 and task.successful
        assert task.data.retry_seen == 1
        killed = _task(task.pathspec, attempt=0)
        assert killed.finished and not killed.successful
        assert killed.exception is not None
        assert "killed by signal 9 (SIGKILL)" in killed.exception.message
        assert "waiting to be killed" in killed.stdout  # its output survived the kill


# --- 2. kill -9 of the daemon ---------------------------------------------------------------------

_CRASH_FLOW = "fault_daemon_crash.py"
_CRASH_FINISHED_STEPS = ("start", "square", "gather")


def _crash_the_daemon_mid_run(
    project: FlowProject, fault_dir: FaultDir, worker_env: dict[str, str] | None = None
) -> tuple[str, dict[str, Any], str]:
    """Run the crash flow until its ``wait`` step runs, kill -9 the daemon, and let the CLI
    (which restarts it to learn how the run ended) finish. The worker of ``wait`` (pre-forked
    unless ``worker_env`` says otherwise) must end with the daemon.

    Returns:
        The run id, the snapshot of the finished tasks taken before the kill, and the CLI's
        standard error.
    """
    fault_dir.hold()
    id_file = project.run_id_file()
    env = {**fault_dir.env, **(worker_env or {})}
    proc = project.start_flow(_CRASH_FLOW, "run", "--run-id-file", str(id_file), env=env)
    try:
        worker = fault_dir.pid("wait", proc=proc)
        spawned = _cmdline(worker)[-2:] == ["-m", "polyflow._worker"]
        assert spawned == bool(worker_env), _cmdline(worker)
        run_id = id_file.read_text().strip()
        before = _snapshot(project, f"FaultDaemonCrashFlow/{run_id}", _CRASH_FINISHED_STEPS)
        old_daemon = _kill_daemon(project)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert f"Workflow failed: {_RESTART_MESSAGE}" in err, err
    new_daemon = project.daemon_pid()
    assert new_daemon is not None and new_daemon != old_daemon
    # The worker of the running task ends with the daemon it belonged to.
    _wait_until(lambda: not _alive(worker), 20, f"the worker {worker} of the dead daemon to end")
    return run_id, before, err


@_WORKER_MODES
def test_kill_9_of_the_daemon_fails_the_run_and_loses_no_finished_task(
    fresh_project: FlowProject, fault_dir: FaultDir, worker_env: dict[str, str]
) -> None:
    run_id, before, _ = _crash_the_daemon_mid_run(fresh_project, fault_dir, worker_env)
    pathspec = f"FaultDaemonCrashFlow/{run_id}"
    assert len(before) == 5 and all(task["successful"] for task in before.values()), before
    after = _snapshot(fresh_project, pathspec, _CRASH_FINISHED_STEPS)
    assert after == before
    values = {path.split("/")[2]: task["artifacts"] for path, task in after.items()}
    assert values["gather"]["squares"][1] == [1, 4, 9]
    assert values["gather"]["blob"][1] == b"x" * 100_000
    with fresh_project.client_env():
        run = _run(pathspec)
        assert run.finished and not run.successful
        assert run.failure_message == _RESTART_MESSAGE
        wait = run["wait"].task
        assert wait.finished and not wait.successful
        assert wait.exception is not None and wait.exception.message == _RESTART_MESSAGE
        assert "end" not in run


def test_kill_9_of_the_daemon_amid_task_reports_loses_no_acknowledged_task(
    fresh_project: FlowProject,
) -> None:
    """Every task the CLI was told had finished (its report was acknowledged, so durable) is
    still SUCCEEDED with all its artifacts after the crash, and no attempt stays RUNNING."""
    id_file = fresh_project.run_id_file()
    proc = fresh_project.start_flow(
        "fault_stress.py",
        "run",
        "--width",
        "400",
        "--max-workers",
        "4",
        "--max-num-splits",
        "400",
        "--run-id-file",
        str(id_file),
    )
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    stdout = proc.stdout
    assert stdout is not None
    threading.Thread(target=stdout.read, daemon=True).start()  # drained, never read
    try:
        _wait_until(
            lambda: len(_FINISHED_RE.findall("".join(lines))) > 40 or proc.poll() is not None,
            120,
            "40 finished tasks",
        )
        assert proc.poll() is None, "".join(lines)
        _kill_daemon(fresh_project)
        proc.wait(timeout=120)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    err = "".join(lines)
    assert proc.returncode == 1, err
    assert f"Workflow failed: {_RESTART_MESSAGE}" in err, err
    acknowledged = set(_FINISHED_RE.findall(err))
    work = sorted(p for p in acknowledged if "/work/" in p)
    assert len(work) >= 40, err
    run_id = id_file.read_text().strip()
    with fresh_project.client_env():
        for pathspec in work:
            task = _task(pathspec)
            assert task.successful, pathspec
            index = task.index
            assert index is not None
            data = task.data
            assert (data.square, data.label, data.pair) == (
                index * index,
                f"item-{index}",
                (index, index),
            )
    db = fresh_project.root / "metadata.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        unfinished = conn.execute(
            "SELECT count(*) FROM attempts WHERE run_id = ? AND finish_time IS NULL", (run_id,)
        ).fetchone()[0]
    assert unfinished == 0


def test_resume_completes_a_run_whose_daemon_was_killed(
    fresh_project: FlowProject, fault_dir: FaultDir
) -> None:
    run_id, _, _ = _crash_the_daemon_mid_run(fresh_project, fault_dir)
    fault_dir.release()
    resumed = _resume(fresh_project, _CRASH_FLOW, fault_dir.env)
    assert resumed != run_id
    with fresh_project.client_env():
        run = _run(f"FaultDaemonCrashFlow/{resumed}")
        assert run.successful
        assert run.data.result == "total 14"
        # The finished tasks were cloned, not run again; the one the crash stopped ran.
        start = run["start"].task
        assert start.origin_pathspec == f"FaultDaemonCrashFlow/{run_id}/start/1"
        assert all(task.origin_pathspec for task in run["square"])
        assert run["gather"].task.data.blob == b"x" * 100_000
        assert run["wait"].task.origin_pathspec is None


# --- 3. a corrupted blob --------------------------------------------------------------------------


def _corrupt(root: Path, digest: str) -> str:
    """Flip the last byte of a blob's file; return the digest its payload has now (the file
    must hold the blob raw, which the test flow's random bytes guarantee)."""
    hex_digest = digest.split(":", 1)[1]
    path = root / "store" / "blobs" / hex_digest[:2] / hex_digest
    data = bytearray(path.read_bytes())
    assert data[:5] == b"PFB1\0", "the blob is not stored raw"
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    return "sha256:" + hashlib.sha256(data[5:]).hexdigest()


def _corruption_message(artifact: str, pathspec: str, expected: str, found: str) -> str:
    return f"artifact {artifact!r} of {pathspec} is corrupt: expected {expected}, found {found}"


class _NoLocalStore:
    """Stands in for ``os`` in the client's artifact module: no store folder is visible, so
    blobs are read through the core (``DatastoreService.ReadBlob``)."""

    class path:  # as os.path
        @staticmethod
        def isdir(path: object) -> bool:
            return False


def test_a_corrupted_blob_is_reported_naming_the_artifact_and_both_digests(
    fresh_project: FlowProject, fault_dir: FaultDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyflow.client import _artifact
    from polyflow.exceptions import ArtifactCorruptedError, DataLossError, PolyflowError

    # A run that finished: its artifact x is corrupted afterwards, then read by the client.
    (fault_dir.path / "go-one").touch()
    run_id = fresh_project.run_flow_ok("fault_corrupt_blob.py", "--token", "one", env=fault_dir.env)
    with fresh_project.client_env():
        run = _run(f"FaultCorruptBlobFlow/{run_id}")
        start = run["start"].task
        good = start["x"].data
        assert isinstance(good, bytes) and len(good) == 256
        digest = start["x"].digest
        found = _corrupt(fresh_project.root, digest)
        assert found != digest
        readers: list[tuple[str, Callable[[], object]]] = [
            (run["end"].task.pathspec, lambda: _run(run.pathspec).data.x),
            (start.pathspec, lambda: _task(start.pathspec).data.x),
            (start.pathspec, lambda: _task(start.pathspec)["x"].data),
            (run["reader"].task.pathspec, lambda: run["reader"].task.data.x),
        ]
        for pathspec, read in readers:
            with pytest.raises(ArtifactCorruptedError) as caught:
                read()
            error = caught.value
            assert str(error) == _corruption_message("x", pathspec, digest, found)
            assert isinstance(error, DataLossError) and isinstance(error, PolyflowError)
            assert (error.artifact, error.pathspec) == ("x", pathspec)
            assert (error.expected_digest, error.found_digest) == (digest, found)
        # The same through the core (a client that cannot see the store's folder).
        with monkeypatch.context() as patch:
            patch.setattr(_artifact, "os", _NoLocalStore)
            with pytest.raises(ArtifactCorruptedError) as caught:
                print(_task(start.pathspec).data.x)
            assert str(caught.value) == _corruption_message("x", start.pathspec, digest, found)
        # Other artifacts of the same tasks still read.
        assert _run(run.pathspec).data.y == [1, 2, 3]
        assert run["reader"].task.data.copy_length == 256

    # A run whose artifact is corrupted between the task that stored it and the one reading it.
    id_file = fresh_project.run_id_file()
    proc = fresh_project.start_flow(
        "fault_corrupt_blob.py",
        "run",
        "--token",
        "two",
        "--run-id-file",
        str(id_file),
        env=fault_dir.env,
    )
    try:
        fault_dir.pid("reader", proc=proc)
        run_id = id_file.read_text().strip()
        with fresh_project.client_env():
            start = _run(f"FaultCorruptBlobFlow/{run_id}")["start"].task
            digest = start["x"].digest
            start_pathspec = start.pathspec
        found = _corrupt(fresh_project.root, digest)
        (fault_dir.path / "go-two").touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out + err
    message = _corruption_message("x", start_pathspec, digest, found)
    assert f"Task failed: ArtifactCorruptedError: {message}" in err, err
    with fresh_project.client_env():
        run = _run(f"FaultCorruptBlobFlow/{run_id}")
        reader = run["reader"].task
        assert not reader.successful
        assert reader.exception is not None
        assert reader.exception.type == "polyflow.exceptions.ArtifactCorruptedError"
        assert reader.exception.message == message
        assert "copy_length" not in reader.data


def test_a_corrupted_blob_is_restored_by_the_next_writer_of_its_value(
    fresh_project: FlowProject, fault_dir: FaultDir
) -> None:
    from polyflow.exceptions import ArtifactCorruptedError

    (fault_dir.path / "go-heal").touch()
    first = fresh_project.run_flow_ok("fault_corrupt_blob.py", "--token", "heal", env=fault_dir.env)
    with fresh_project.client_env():
        start = _run(f"FaultCorruptBlobFlow/{first}")["start"].task
        expected, digest = start.data.x, start["x"].digest
    blob = fresh_project.root / "store" / "blobs" / digest[7:9] / digest[7:]

    # Bit rot: found by a read, which moves the file aside; a later run storing the same value
    # writes it afresh, and the first run's artifact reads again.
    _corrupt(fresh_project.root, digest)
    with fresh_project.client_env(), pytest.raises(ArtifactCorruptedError):
        print(_task(start.pathspec).data.x)
    assert not blob.exists()
    second = fresh_project.run_flow_ok(
        "fault_corrupt_blob.py", "--token", "heal", env=fault_dir.env
    )
    with fresh_project.client_env():
        assert _task(start.pathspec).data.x == expected
        assert _run(f"FaultCorruptBlobFlow/{second}")["start"].task["x"].digest == digest

    # A truncated file, never read: the writer's check of the header and size finds it.
    blob.write_bytes(blob.read_bytes()[:100])
    fresh_project.run_flow_ok("fault_corrupt_blob.py", "--token", "heal", env=fault_dir.env)
    with fresh_project.client_env():
        assert _task(start.pathspec).data.x == expected


# --- 4. a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk_project(fresh_project: FlowProject) -> Iterator[FlowProject]:
    """A project whose root (store, metadata, logs) is a 16 MiB tmpfs, mounted before its
    daemon starts and unmounted after it stopped."""
    root = fresh_project.root
    root.mkdir(parents=True)
    mount = shutil.which("mount")
    proc = subprocess.run(
        [mount or "mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield fresh_project
    finally:
        fresh_project.stop_daemon()
        for _ in range(50):
            if (
                subprocess.run(["umount", str(root)], capture_output=True, check=False).returncode
                == 0
            ):
                break
            time.sleep(0.1)  # the daemon's pre-forked workers may still be exiting
        else:
            subprocess.run(["umount", "-l", str(root)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill a file system with one file until ``leave`` bytes are free; return the file."""
    filler = folder / "filler"
    vfs = os.statvfs(folder)
    free = vfs.f_bavail * vfs.f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_fails_the_task_cleanly_and_a_later_run_works(
    small_disk_project: FlowProject,
) -> None:
    project = small_disk_project
    root = project.root
    project.polyflow("daemon", "start").assert_ok()
    filler = _fill(root, leave=1024 * 1024)
    size = 3 * 1024 * 1024
    id_file = project.run_id_file()
    result = project.run_flow(
        "fault_disk_full.py", "run", "--size", str(size), "--run-id-file", str(id_file)
    )
    assert result.returncode == 1, result.describe()
    message = "artifact 'payload' (bytes) cannot be stored: [Errno 28] No space left on device"
    assert f"Task failed: {message}" in result.stderr, result.describe()
    run_id = id_file.read_text().strip()

    from polyflow_core.datastore.local import LocalBlobStore

    store = LocalBlobStore(root / "store", fsync=False)
    # No temporary file stays, and every file under a blob's name is the whole blob.
    assert not list(store.tmp_dir.iterdir())
    blob_files = [p for p in store.blobs_dir.rglob("*") if p.is_file()]
    for path in blob_files:
        store.get_bytes(f"sha256:{path.name}")  # raises when partial or corrupted
    with project.client_env():
        run = _run(f"FaultDiskFullFlow/{run_id}")
        assert run.finished and not run.successful
        assert message in run.failure_message
        start = run["start"].task
        assert start.successful and start.data.small == {"kept": True}
        big = run["big"].task
        assert big.finished and not big.successful
        assert big.exception is not None and big.exception.message == message
        # Every artifact the metadata refers to is in the store (the payload is not referred to).
        for step in run:
            for task in step:
                for artifact in task:
                    assert store.has(artifact.digest), artifact.pathspec
        assert "payload" not in big.data

    filler.unlink()  # space is back
    again = project.run_flow_ok("fault_disk_full.py", "--size", str(size))
    with project.client_env():
        assert _run(f"FaultDiskFullFlow/{again}").data.payload_size == size
    assert "database is locked" not in (root / "daemon.log").read_text()


def test_a_disk_too_full_for_the_metadata_stops_the_daemon_and_loses_nothing(
    small_disk_project: FlowProject, fault_dir: FaultDir
) -> None:
    """The disk fills up completely while a task runs: its artifact cannot be stored, and its
    failure cannot be recorded either. The daemon must not go on with state it could not make
    durable (nor tell anyone about it): it stops, the CLI ends instead of waiting forever,
    and once there is space again the run is FAILED, every task the CLI saw finish is
    intact, and the run can be resumed."""
    project = small_disk_project
    root = project.root
    fault_dir.hold()
    id_file = project.run_id_file()
    proc = project.start_flow(_CRASH_FLOW, "run", "--run-id-file", str(id_file), env=fault_dir.env)
    try:
        fault_dir.pid("wait", proc=proc)
        daemon = project.daemon_pid()
        filler = _fill(root, leave=0)
        fault_dir.release()  # the step ends and stores `total`: no space left for anything
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    run_id = id_file.read_text().strip()
    assert daemon is not None
    _wait_until(lambda: not _alive(daemon), 30, "the daemon to stop")
    filler.unlink()  # space is back
    pathspec = f"FaultDaemonCrashFlow/{run_id}"
    acknowledged = set(_FINISHED_RE.findall(err))
    with project.client_env():
        run = _run(pathspec)
        assert run.finished and not run.successful
        for step in run:
            for task in step:
                if task.pathspec in acknowledged:
                    assert task.successful, task.pathspec
        assert {p.split("/")[2] for p in acknowledged} >= {"start", "square", "gather"}, err
        assert _run(pathspec)["gather"].task.data.squares == [1, 4, 9]
    resumed = _resume(project, _CRASH_FLOW, fault_dir.env)
    with project.client_env():
        assert _run(f"FaultDaemonCrashFlow/{resumed}").data.result == "total 14"


# --- 5. Ctrl-C during a foreach -------------------------------------------------------------------


def _interrupt_a_foreach(
    project: FlowProject, fault_dir: FaultDir, env: dict[str, str]
) -> tuple[str, str]:
    """Run the Ctrl-C flow until its four splits (and their children) run, send SIGINT to
    the CLI, and check that when the CLI is done the run has ended, every process of those
    tasks is gone and nothing else of the test's is left but the daemon and its pool.
    Returns the run id and the CLI's stderr."""
    fault_dir.hold()
    id_file = project.run_id_file()
    proc = project.start_flow("fault_ctrl_c.py", "run", "--run-id-file", str(id_file), env=env)
    try:
        workers = [fault_dir.pid(f"work-{i}", proc=proc) for i in range(4)]
        children = [fault_dir.pid(f"child-{i}", proc=proc) for i in range(4)]
        # The detector of strays sees the running tasks and their children.
        running = fault_dir.strays(project.daemon_pid())
        seen = {line.split()[0] for line in running}
        assert {str(pid) for pid in workers + children} <= seen, running
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    run_id = id_file.read_text().strip()
    assert f"Run FaultCtrlCFlow/{run_id} cancelled." in err, err
    # The CLI waited for the run to end: its workers are gone already.
    with project.client_env():
        assert _run(f"FaultCtrlCFlow/{run_id}").finished
    assert [pid for pid in workers if _alive(pid)] == []
    # Their children were killed with them (the signal may take a moment to land).
    _wait_until(lambda: not any(_alive(pid) for pid in children), 10, "the tasks' children to end")
    daemon = project.daemon_pid()
    assert daemon is not None and _alive(daemon)
    spec_holders = [
        pid
        for pid in _all_pids()
        if _environ(pid).get("POLYFLOW_TASK_SPEC", "").startswith(str(project.root))
    ]
    assert spec_holders == []
    assert fault_dir.strays(daemon) == []
    return run_id, err


@_WORKER_MODES
def test_ctrl_c_during_a_foreach_stops_its_tasks_and_leaves_no_orphan(
    fresh_project: FlowProject, fault_dir: FaultDir, worker_env: dict[str, str]
) -> None:
    run_id, _ = _interrupt_a_foreach(fresh_project, fault_dir, {**fault_dir.env, **worker_env})
    with fresh_project.client_env():
        run = _run(f"FaultCtrlCFlow/{run_id}")
        assert run.finished and not run.successful
        assert run.failure_message == _CTRL_C_MESSAGE
        assert run["start"].task.successful
        work = list(run["work"])
        assert len(work) == 4
        for task in work:
            assert task.finished and not task.successful
            assert task.exception is not None
            assert "killed by signal 9" in task.exception.message
            assert _CTRL_C_MESSAGE in task.exception.message
        assert "join" not in run


def test_resume_completes_a_run_stopped_by_ctrl_c(
    fresh_project: FlowProject, fault_dir: FaultDir
) -> None:
    run_id, _ = _interrupt_a_foreach(fresh_project, fault_dir, fault_dir.env)
    fault_dir.release()
    resumed = _resume(fresh_project, "fault_ctrl_c.py", fault_dir.env)
    with fresh_project.client_env():
        run = _run(f"FaultCtrlCFlow/{resumed}")
        assert run.successful
        assert run["join"].task.data.doubled == [0, 2, 4, 6]
        assert run["start"].task.origin_pathspec == f"FaultCtrlCFlow/{run_id}/start/1"
        assert [task.origin_pathspec for task in run["work"]] == [None] * 4  # they ran


# --- 6. load --------------------------------------------------------------------------------------


def test_eight_runs_at_once_all_finish_with_the_right_results(fresh_project: FlowProject) -> None:
    """No daemon runs yet: the eight CLIs race to start it, and one serves them all."""
    project = fresh_project
    launches: list[tuple[str, tuple[str, ...]]] = [
        ("fault_stress.py", ("--width", "3")),
        ("fault_stress.py", ("--width", "5")),
        ("fault_stress.py", ("--width", "7")),
        ("fault_stress.py", ("--width", "9")),
        ("foreach.py", ()),
        ("foreach.py", ()),
        ("nested_foreach.py", ()),
        ("wide_foreach.py", ("--width", "6")),
    ]
    procs = []
    for flow, args in launches:
        id_file = project.run_id_file()
        procs.append(
            (project.start_flow(flow, "run", "--run-id-file", str(id_file), *args), id_file)
        )
    outcomes = []
    try:
        for proc, id_file in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, out + err
            outcomes.append(id_file.read_text().strip())
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert len(set(zip((flow for flow, _ in launches), outcomes, strict=True))) == 8
    with project.client_env():
        for (flow, args), run_id in zip(launches, outcomes, strict=True):
            if flow == "fault_stress.py":
                width = int(args[1])
                run = _run(f"FaultStressFlow/{run_id}")
                assert run.successful
                assert run.data.total == sum(i * i for i in range(width))
                join = run["join"].task.data
                assert join.pairs == [(i, i) for i in range(width)]
                assert len(list(run["work"])) == width
            elif flow == "foreach.py":
                run = _run(f"ForeachFlow/{run_id}")
                assert run.successful and run.data.results == ["APPLE", "BANANA", "CHERRY"]
            elif flow == "nested_foreach.py":
                run = _run(f"NestedForeachFlow/{run_id}")
                assert run.successful
                assert run.data.all_pairs == ["a1", "a2", "a3", "b1", "b2", "b3"]
            else:
                run = _run(f"WideForeachFlow/{run_id}")
                assert run.successful and len(run["join"].task.data.spans) == 6
    daemon = project.daemon_pid()
    assert daemon is not None and _alive(daemon)
    log = (project.root / "daemon.log").read_text()
    assert log.count(" serving ") == 1, log  # one daemon served all eight
    assert "database is locked" not in log


def test_ten_thousand_metadata_records_are_neither_lost_nor_duplicated(
    fresh_project: FlowProject,
) -> None:
    """One foreach of 2,500 tasks, each recording a task, an attempt and five artifacts
    (17,500 records), while a client reads the run's tasks over and over."""
    project = fresh_project
    width = 2500
    project.polyflow("daemon", "start").assert_ok()
    id_file = project.run_id_file()
    proc = project.start_flow(
        "fault_stress.py",
        "--quiet",
        "run",
        "--width",
        str(width),
        "--max-num-splits",
        str(width),
        "--run-id-file",
        str(id_file),
    )
    reads = 0
    read_errors: list[BaseException] = []

    def read_while_running() -> None:
        nonlocal reads
        try:
            with contextlib.suppress(FileNotFoundError):
                while proc.poll() is None:
                    if id_file.exists() and id_file.read_text().strip():
                        run = _run(f"FaultStressFlow/{id_file.read_text().strip()}")
                        if "work" in run:
                            sum(1 for _ in run["work"])
                            reads += 1
                    time.sleep(0.2)
        except BaseException as error:  # reported by the test below
            read_errors.append(error)

    started = time.monotonic()
    with project.client_env():
        reader = threading.Thread(target=read_while_running)
        reader.start()
        try:
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            reader.join(30)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, out + err
    assert not read_errors, read_errors
    assert reads > 0
    run_id = id_file.read_text().strip()

    with project.client_env():
        run = _run(f"FaultStressFlow/{run_id}")
        assert run.successful
        assert run.data.total == sum(i * i for i in range(width))
        join = run["join"].task.data
        assert join.pairs == [(i, i) for i in range(width)]
        assert join.labels == [f"item-{i}" for i in range(width)]

    db = project.root / "metadata.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:

        def one(sql: str) -> Any:
            return conn.execute(sql, (run_id,)).fetchone()[0]

        tasks = one("SELECT count(*) FROM tasks WHERE run_id = ? AND step_name = 'work'")
        indexes = one(
            "SELECT count(DISTINCT foreach_stack) FROM tasks "
            "WHERE run_id = ? AND step_name = 'work'"
        )
        attempts = one(
            "SELECT count(*) FROM attempts a JOIN tasks t USING (run_id, task_id) "
            "WHERE a.run_id = ? AND t.step_name = 'work' AND a.state = 3"
        )
        artifacts = one(
            "SELECT count(*) FROM artifacts a JOIN tasks t USING (run_id, task_id) "
            "WHERE a.run_id = ? AND t.step_name = 'work'"
        )
        distinct_artifacts = one(
            "SELECT count(*) FROM (SELECT DISTINCT a.task_id, a.attempt, a.name FROM artifacts a "
            "JOIN tasks t USING (run_id, task_id) WHERE a.run_id = ? AND t.step_name = 'work')"
        )
        all_records = one(
            "SELECT (SELECT count(*) FROM tasks WHERE run_id = ?1)"
            " + (SELECT count(*) FROM attempts WHERE run_id = ?1)"
            " + (SELECT count(*) FROM artifacts WHERE run_id = ?1)"
        )
    assert tasks == width and indexes == width
    assert attempts == width
    assert artifacts == distinct_artifacts == 5 * width  # items, width, square, label, pair
    assert all_records >= 10_000
    assert "database is locked" not in (project.root / "daemon.log").read_text()
    assert elapsed < 150, f"{width} tasks took {elapsed:.0f} s"


# --- 7. bad input over the wire -------------------------------------------------------------------


def _status(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, str]:
    """Code, message and ErrorInfo reason (empty when none) of a failed call."""
    from google.rpc import error_details_pb2  # type: ignore[import-untyped]
    from grpc_status import rpc_status

    assert isinstance(error, grpc.Call)
    reason = ""
    status = rpc_status.from_call(error)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
    return error.code(), error.details() or "", reason


def test_bad_input_over_the_wire_gets_clean_statuses_and_the_daemon_keeps_serving(
    fresh_project: FlowProject,
) -> None:
    from polyflow.api.common.v1 import enums_pb2, graph_pb2
    from polyflow.api.metadata.v1 import request_response_pb2 as metadata_rr
    from polyflow.api.metadata.v1 import service_pb2_grpc as metadata_grpc
    from polyflow.api.runtime.v1 import request_response_pb2 as runtime_rr
    from polyflow.api.runtime.v1 import service_pb2_grpc as runtime_grpc
    from polyflow_core.paths import RootLayout, core_address

    project = fresh_project
    project.run_flow_ok("hello.py")  # starts the daemon, and gives it a run to know
    daemon = project.daemon_pid()
    address = core_address(RootLayout(project.root))
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)])
    runtime = runtime_grpc.RuntimeServiceStub(channel)
    metadata = metadata_grpc.MetadataServiceStub(channel)

    def fails(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str]:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        return _status(caught.value)

    untyped: Any = channel  # raw calls: identity serializers, bytes in and out

    def raw(method: str, payload: bytes) -> Callable[[], object]:
        return lambda: untyped.unary_unary(method)(payload, timeout=30)

    try:
        # Bytes that are not a message of the method's request type.
        garbage = b"\xff\xff\xff\xff\x0fnot a protobuf message"
        for method, message_type in [
            ("/polyflow.api.metadata.v1.MetadataService/GetRun", "GetRunRequest"),
            ("/polyflow.api.runtime.v1.RuntimeService/StartRun", "StartRunRequest"),
            ("/polyflow.api.runtime.v1.RuntimeService/CompleteTask", "CompleteTaskRequest"),
        ]:
            code, message, reason = fails(raw(method, garbage))
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
            assert method in message and message_type in message, message
        stream = untyped.unary_stream("/polyflow.api.runtime.v1.RuntimeService/WatchRun")
        code, message, reason = fails(lambda: list(stream(garbage, timeout=30)))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")

        # A request over the server's 16 MiB limit.
        oversized = b"\x0a\x80\x80\x80\x09" + b"a" * (17 * 1024 * 1024)  # field 1, 18 MiB
        code, message, _ = fails(raw("/polyflow.api.metadata.v1.MetadataService/GetRun", oversized))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in message and "16777216" in message, message

        # Unknown and malformed names.
        code, message, reason = fails(
            lambda: metadata.GetRun(metadata_rr.GetRunRequest(name="flows/NoSuchFlow/runs/9"))
        )
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
        assert "NoSuchFlow/9" in message, message
        code, message, reason = fails(
            lambda: metadata.GetTask(
                metadata_rr.GetTaskRequest(name="flows/HelloFlow/runs/1/steps/start/tasks/999")
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND and "999" in message, message
        code, message, _ = fails(
            lambda: metadata.GetArtifact(
                metadata_rr.GetArtifactRequest(
                    name="flows/HelloFlow/runs/1/steps/start/tasks/1/artifacts/nope"
                )
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND and "nope" in message, message
        code, message, _ = fails(
            lambda: metadata.GetRun(metadata_rr.GetRunRequest(name="flows//runs/x"))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "flows//runs/x" in message

        # Invalid graphs: StartRun refuses them; ValidateGraph reports their problems.
        linear = enums_pb2.TRANSITION_KIND_LINEAR

        def step(name: str, *targets: str) -> graph_pb2.StepSpec:
            kind = linear if targets else enums_pb2.TRANSITION_KIND_UNSPECIFIED
            return graph_pb2.StepSpec(
                name=name,
                transition=graph_pb2.Transition(kind=kind, targets=list(targets)),
                language=enums_pb2.LANGUAGE_PYTHON,
            )

        graphs = {
            "MISSING_START": graph_pb2.FlowGraph(flow_name="Bad"),
            "INVALID_STEP_NAME": graph_pb2.FlowGraph(
                flow_name="Bad", steps=[step("start", ""), step(""), step("end")]
            ),
            "DUPLICATE_STEP": graph_pb2.FlowGraph(
                flow_name="Bad", steps=[step("start", "end"), step("end"), step("end")]
            ),
            "DUPLICATE_PARAMETER": graph_pb2.FlowGraph(
                flow_name="Bad",
                steps=[step("start", "end"), step("end")],
                parameters=[graph_pb2.ParameterSpec(name="n"), graph_pb2.ParameterSpec(name="n")],
            ),
            "RESERVED_PARAMETER_NAME": graph_pb2.FlowGraph(
                flow_name="Bad",
                steps=[step("start", "end"), step("end")],
                parameters=[graph_pb2.ParameterSpec(name="max_workers")],
            ),
        }
        for rule, graph in graphs.items():
            request = runtime_rr.StartRunRequest(graph=graph)
            code, message, reason = fails(functools.partial(runtime.StartRun, request))
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "GRAPH_INVALID")
            assert "graph problem" in message, message
            checked = runtime.ValidateGraph(runtime_rr.ValidateGraphRequest(graph=graph))
            assert rule in [problem.rule for problem in checked.problems]
        code, message, _ = fails(lambda: runtime.StartRun(runtime_rr.StartRunRequest()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "no graph" in message
        code, message, reason = fails(
            lambda: runtime.StartRun(
                runtime_rr.StartRunRequest(
                    graph=graph_pb2.FlowGraph(
                        flow_name="", steps=[step("start", "end"), step("end")]
                    )
                )
            )
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FLOW_NAME")

        # The same daemon still serves, reads and runs.
        info = runtime.GetServerInfo(runtime_rr.GetServerInfoRequest(), timeout=30)
        assert info.pid == daemon
    finally:
        channel.close()
    project.run_flow_ok("hello.py")
    assert project.daemon_pid() == daemon
    log = (project.root / "daemon.log").read_text()
    assert "Traceback" not in log, log
