"""Tests of the SQLite metadata store."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from polyflow_core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from polyflow_core.metadata.base import (
    ArtifactRecord,
    ExceptionRecord,
    ForeachFrameRecord,
    MetadataStore,
    RunRecord,
    RunState,
    TaskState,
)
from polyflow_core.metadata.sqlite import SCHEMA_VERSION, SqliteMetadataStore

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / ".polyflow" / "metadata.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteMetadataStore]:
    opened = SqliteMetadataStore(db_path)
    yield opened
    opened.close()


def _run(
    store: MetadataStore,
    flow: str = "HelloFlow",
    tags: tuple[str, ...] = (),
    request_id: str = "",
) -> RunRecord:
    return store.create_run(
        flow_id=flow,
        user="alice",
        tags=list(tags),
        system_tags=["user:alice", "runtime:dev"],
        graph=b"graph-bytes",
        options=b"opts",
        environment=b"env",
        namespace="user:alice",
        request_id=request_id,
    )


def _task(store: MetadataStore, run: RunRecord, step: str, task_id: str | None = None) -> str:
    return store.create_task(
        flow_id=run.flow_id,
        run_id=run.run_id,
        step_name=step,
        foreach_stack=[],
        input_tasks=[],
        task_id=task_id,
    ).task_id


# --- runs -----------------------------------------------------------------------------------
def test_create_and_get_run(store: SqliteMetadataStore) -> None:
    created = _run(store, tags=("b", "a", "b"))
    assert created.run_id == "1"
    assert created.state is RunState.PENDING
    assert created.tags == ("a", "b")
    assert created.system_tags == ("runtime:dev", "user:alice")
    assert created.create_time.tzinfo is not None
    assert created.finish_time is None
    got = store.get_run("HelloFlow", "1")
    assert got == created
    assert store.get_flow("HelloFlow").create_time == created.create_time


def test_run_ids_are_global_and_increasing(store: SqliteMetadataStore) -> None:
    ids = [_run(store, flow).run_id for flow in ("A", "B", "A", "C")]
    assert ids == ["1", "2", "3", "4"]
    with pytest.raises(NotFoundError):
        store.get_run("B", "1")  # run 1 belongs to A


def test_request_id_makes_create_run_idempotent(store: SqliteMetadataStore) -> None:
    first = _run(store, request_id="req-1")
    again = _run(store, request_id="req-1")
    assert again.run_id == first.run_id
    assert again.graph == first.graph
    assert _run(store, request_id="req-2").run_id != first.run_id
    assert _run(store, flow="Other", request_id="req-1").run_id != first.run_id


def test_set_run_state(store: SqliteMetadataStore) -> None:
    run = _run(store)
    end = _task(store, run, "end")
    store.set_run_state("HelloFlow", run.run_id, RunState.RUNNING)
    assert store.get_run("HelloFlow", run.run_id).finish_time is None
    store.set_run_state("HelloFlow", run.run_id, RunState.SUCCEEDED, end_task_id=end)
    got = store.get_run("HelloFlow", run.run_id)
    assert got.state is RunState.SUCCEEDED
    assert got.finish_time is not None
    assert (got.end_task_id, got.end_step_name) == (end, "end")
    store.set_run_state("HelloFlow", run.run_id, RunState.SUCCEEDED)
    assert store.get_run("HelloFlow", run.run_id).end_task_id == end, "kept when not given"
    with pytest.raises(NotFoundError):
        store.set_run_state("HelloFlow", "999", RunState.FAILED)
    with pytest.raises(NotFoundError):
        store.set_run_state("HelloFlow", "abc", RunState.FAILED)


def test_missing_objects(store: SqliteMetadataStore) -> None:
    run = _run(store)
    for call in (
        lambda: store.get_flow("Nope"),
        lambda: store.list_runs("Nope", 10, ""),
        lambda: store.get_run("HelloFlow", "42"),
        lambda: store.get_run("HelloFlow", "not-a-number"),
        lambda: store.list_steps("HelloFlow", "42", 10, ""),
        lambda: store.get_step("HelloFlow", run.run_id, "start"),
        lambda: store.list_tasks("HelloFlow", run.run_id, "start", 10, ""),
        lambda: store.get_task("HelloFlow", run.run_id, "1"),
        lambda: store.list_artifacts("HelloFlow", run.run_id, "1", 0),
        lambda: store.create_task(
            flow_id="HelloFlow", run_id="42", step_name="s", foreach_stack=[], input_tasks=[]
        ),
        lambda: store.start_attempt("HelloFlow", run.run_id, "7", 0),
    ):
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.reason == "NOT_FOUND"


# --- listing runs ---------------------------------------------------------------------------
def _all_pages(store: SqliteMetadataStore, size: int, **filters: object) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page = store.list_runs("F", size, token, **filters)  # type: ignore[arg-type]
        pages.append([run.run_id for run in page.items])
        token = page.next_page_token
        if not token:
            return pages


def test_list_runs_pages_newest_first(store: SqliteMetadataStore) -> None:
    for _ in range(25):
        _run(store, "F")
    pages = _all_pages(store, 10)
    assert [len(page) for page in pages] == [10, 10, 5]
    flat = [run for page in pages for run in page]
    assert flat == [str(i) for i in range(25, 0, -1)]
    assert all(run.graph == b"" for run in store.list_runs("F", 10, "").items)
    # Exactly a page: no empty trailing page.
    assert [len(page) for page in _all_pages(store, 25)] == [25]


def test_list_runs_keyset_is_stable_under_inserts(store: SqliteMetadataStore) -> None:
    for _ in range(6):
        _run(store, "F")
    first = store.list_runs("F", 3, "")
    for _ in range(4):
        _run(store, "F")  # newer runs arrive between pages
    second = store.list_runs("F", 3, first.next_page_token)
    assert [r.run_id for r in first.items] == ["6", "5", "4"]
    assert [r.run_id for r in second.items] == ["3", "2", "1"]


def test_list_runs_filters(store: SqliteMetadataStore) -> None:
    a = _run(store, "F", tags=("x",))
    b = _run(store, "F", tags=("x", "y"))
    c = _run(store, "F", tags=("y",))
    store.set_run_state("F", b.run_id, RunState.FAILED, failure_message="boom")

    def ids(**filters: object) -> list[str]:
        return [run_id for page in _all_pages(store, 1, **filters) for run_id in page]

    assert ids(tags=["x"]) == [b.run_id, a.run_id]
    assert ids(tags=["x", "y"]) == [b.run_id]
    assert ids(tags=["y", "user:alice"]) == [c.run_id, b.run_id], "system tags count too"
    assert ids(tags=["x", "missing"]) == []
    assert ids(states=[RunState.FAILED]) == [b.run_id]
    assert ids(states=[RunState.PENDING, RunState.RUNNING]) == [c.run_id, a.run_id]
    assert ids(tags=["y"], states=[RunState.PENDING]) == [c.run_id]
    failed = store.get_run("F", b.run_id)
    assert failed.failure_message == "boom"


def test_page_tokens_are_opaque_and_checked(store: SqliteMetadataStore) -> None:
    for _ in range(3):
        _run(store, "F")
    _run(store, "G")
    token = store.list_runs("F", 1, "").next_page_token
    assert token
    for bad in ("garbage!", "e30", base64.urlsafe_b64encode(b"[1,2]").decode()):
        with pytest.raises(InvalidArgumentError) as info:
            store.list_runs("F", 1, bad)
        assert info.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgumentError):
        store.list_runs("G", 1, token)  # issued for another flow
    with pytest.raises(InvalidArgumentError):
        store.list_runs("F", 1, token, tags=["x"])  # issued for other filters
    with pytest.raises(InvalidArgumentError):
        store.list_flows(1, token)  # issued for another listing
    forged = json.dumps({"l": "runs", "s": ["F", [], []], "k": "1 OR 1=1"})
    with pytest.raises(InvalidArgumentError):
        store.list_runs("F", 1, base64.urlsafe_b64encode(forged.encode()).decode())
    with pytest.raises(InvalidArgumentError) as info:
        store.list_runs("F", -1, "")
    assert info.value.reason == "INVALID_PAGE_SIZE"
    assert len(store.list_runs("F", 0, "").items) == 3, "0 means the default size"


def test_list_flows(store: SqliteMetadataStore) -> None:
    for flow in ("Charlie", "Alpha", "Bravo", "Alpha"):
        _run(store, flow)
    first = store.list_flows(2, "")
    assert [f.flow_id for f in first.items] == ["Alpha", "Bravo"]
    second = store.list_flows(2, first.next_page_token)
    assert [f.flow_id for f in second.items] == ["Charlie"]
    assert second.next_page_token == ""


# --- steps, tasks, attempts -----------------------------------------------------------------
def test_task_ids_count_per_run(store: SqliteMetadataStore) -> None:
    run1, run2 = _run(store), _run(store)
    assert _task(store, run1, "_parameters", task_id="0") == "0"
    assert [_task(store, run1, "start") for _ in range(3)] == ["1", "2", "3"]
    assert _task(store, run2, "start") == "1"
    with pytest.raises(AlreadyExistsError):
        _task(store, run1, "start", task_id="2")
    assert _task(store, run1, "x", task_id="10") == "10"
    assert _task(store, run1, "x") == "11", "the counter continues above explicit ids"
    with pytest.raises(InvalidArgumentError):
        _task(store, run1, "x", task_id="t-1")


def test_task_record_and_attempts(store: SqliteMetadataStore) -> None:
    run = _run(store)
    frames = [ForeachFrameRecord("start", "items", 2, 5, "'c'")]
    created = store.create_task(
        flow_id="HelloFlow",
        run_id=run.run_id,
        step_name="work",
        foreach_stack=frames,
        input_tasks=["HelloFlow/1/start/1"],
        origin_task="HelloFlow/0/work/3",
        metadata={"resources": "cpu=1"},
    )
    assert created.attempts == ()
    assert created.latest is None
    store.start_attempt("HelloFlow", run.run_id, created.task_id, 0)
    failure = ExceptionRecord("builtins.ValueError", "bad", "Traceback...")
    store.finish_attempt(
        "HelloFlow",
        run.run_id,
        created.task_id,
        0,
        state=TaskState.FAILED,
        failure_message="ValueError: bad",
        exception=failure,
        metadata={"attempt": "0"},
    )
    store.start_attempt("HelloFlow", run.run_id, created.task_id, 1)
    running = store.get_task("HelloFlow", run.run_id, created.task_id)
    assert [a.state for a in running.attempts] == [TaskState.FAILED, TaskState.RUNNING]
    store.finish_attempt(
        "HelloFlow",
        run.run_id,
        created.task_id,
        1,
        state=TaskState.SUCCEEDED,
        artifacts=[ArtifactRecord("x", DIGEST, "json", 3, "builtins.int")],
        next_steps=["join"],
        metadata={"attempt": "1"},
    )
    task = store.get_task("HelloFlow", run.run_id, created.task_id)
    assert task.foreach_stack == tuple(frames)
    assert task.input_tasks == ("HelloFlow/1/start/1",)
    assert task.origin_task == "HelloFlow/0/work/3"
    assert task.metadata == {"resources": "cpu=1"}
    first, second = task.attempts
    assert (first.attempt, first.state, first.exception) == (0, TaskState.FAILED, failure)
    assert first.failure_message == "ValueError: bad"
    assert first.metadata == {"attempt": "0"}
    assert first.start_time is not None and first.finish_time is not None
    assert first.start_time <= first.finish_time
    assert task.latest == second
    assert (second.state, second.next_steps, second.metadata) == (
        TaskState.SUCCEEDED,
        ("join",),
        {"attempt": "1"},
    )
    assert store.list_artifacts("HelloFlow", run.run_id, created.task_id, 0) == []
    assert store.list_artifacts("HelloFlow", run.run_id, created.task_id, 1) == [
        ArtifactRecord("x", DIGEST, "json", 3, "builtins.int")
    ]


def test_attempt_state_rules(store: SqliteMetadataStore) -> None:
    run = _run(store)
    task = _task(store, run, "start")
    store.start_attempt("HelloFlow", run.run_id, task, 0)
    with pytest.raises(FailedPreconditionError) as info:
        store.start_attempt("HelloFlow", run.run_id, task, 0)
    assert info.value.reason == "ATTEMPT_EXISTS"
    with pytest.raises(InvalidArgumentError):
        store.finish_attempt("HelloFlow", run.run_id, task, 0, state=TaskState.RUNNING)
    store.finish_attempt("HelloFlow", run.run_id, task, 0, state=TaskState.SUCCEEDED)
    with pytest.raises(FailedPreconditionError) as info:
        store.finish_attempt("HelloFlow", run.run_id, task, 0, state=TaskState.FAILED)
    assert info.value.reason == "ATTEMPT_FINISHED"
    with pytest.raises(InvalidArgumentError):
        store.start_attempt("HelloFlow", run.run_id, task, -1)
    # An attempt that never started (its worker could not be launched) can still fail.
    other = _task(store, run, "start")
    store.finish_attempt(
        "HelloFlow", run.run_id, other, 0, state=TaskState.FAILED, failure_message="no python"
    )
    (attempt,) = store.get_task("HelloFlow", run.run_id, other).attempts
    assert (attempt.state, attempt.start_time, attempt.failure_message) == (
        TaskState.FAILED,
        None,
        "no python",
    )


def test_artifacts_of_an_attempt_are_one_transaction(store: SqliteMetadataStore) -> None:
    run = _run(store)
    task = _task(store, run, "start")
    store.start_attempt("HelloFlow", run.run_id, task, 0)
    with pytest.raises(InvalidArgumentError) as info:
        store.finish_attempt(
            "HelloFlow",
            run.run_id,
            task,
            0,
            state=TaskState.SUCCEEDED,
            artifacts=[
                ArtifactRecord("a", DIGEST, "json", 1),
                ArtifactRecord("a", DIGEST, "json", 1),
            ],
        )
    assert info.value.reason == "DUPLICATE_ARTIFACT"
    assert store.get_task("HelloFlow", run.run_id, task).latest.state is TaskState.RUNNING  # type: ignore[union-attr]
    many = [ArtifactRecord(f"a{i:04d}", DIGEST, "pickle-v5", i, "builtins.int") for i in range(500)]
    store.finish_attempt(
        "HelloFlow", run.run_id, task, 0, state=TaskState.SUCCEEDED, artifacts=list(reversed(many))
    )
    assert store.list_artifacts("HelloFlow", run.run_id, task, 0) == many


def test_steps_in_order_of_first_task(store: SqliteMetadataStore) -> None:
    run = _run(store)
    _task(store, run, "_parameters", task_id="0")
    start = _task(store, run, "start")
    a1, a2 = _task(store, run, "a"), _task(store, run, "a")
    _task(store, run, "b")
    page = store.list_steps("HelloFlow", run.run_id, 2, "")
    assert [s.step_name for s in page.items] == ["_parameters", "start"]
    rest = store.list_steps("HelloFlow", run.run_id, 2, page.next_page_token)
    assert [s.step_name for s in rest.items] == ["a", "b"]
    assert rest.next_page_token == ""
    # A step finishes when every one of its tasks has.
    assert store.get_step("HelloFlow", run.run_id, "start").finish_time is None
    store.start_attempt("HelloFlow", run.run_id, start, 0)
    store.finish_attempt("HelloFlow", run.run_id, start, 0, state=TaskState.SUCCEEDED)
    assert store.get_step("HelloFlow", run.run_id, "start").finish_time is not None
    store.finish_attempt("HelloFlow", run.run_id, a1, 0, state=TaskState.SUCCEEDED)
    assert store.get_step("HelloFlow", run.run_id, "a").finish_time is None
    store.finish_attempt("HelloFlow", run.run_id, a2, 0, state=TaskState.FAILED)
    step_a = store.get_step("HelloFlow", run.run_id, "a")
    assert step_a.finish_time is not None
    assert step_a.create_time <= step_a.finish_time


def test_list_tasks_pages_in_numeric_order(store: SqliteMetadataStore) -> None:
    run = _run(store)
    other = [_task(store, run, "start")]
    ids = [_task(store, run, "work") for _ in range(12)]
    other.append(_task(store, run, "end"))
    seen: list[str] = []
    token = ""
    while True:
        page = store.list_tasks("HelloFlow", run.run_id, "work", 5, token)
        seen.extend(t.task_id for t in page.items)
        assert all(t.step_name == "work" for t in page.items)
        token = page.next_page_token
        if not token:
            break
    assert seen == ids == [str(i) for i in range(2, 14)]
    with pytest.raises(InvalidArgumentError):
        store.list_tasks(
            "HelloFlow",
            run.run_id,
            "end",
            5,
            store.list_tasks("HelloFlow", run.run_id, "work", 5, "").next_page_token,
        )


def test_fail_unfinished_runs(store: SqliteMetadataStore) -> None:
    done, running, pending = _run(store), _run(store), _run(store)
    store.set_run_state("HelloFlow", done.run_id, RunState.SUCCEEDED)
    store.set_run_state("HelloFlow", running.run_id, RunState.RUNNING)
    busy = _task(store, running, "start")
    store.start_attempt("HelloFlow", running.run_id, busy, 0)
    waiting = _task(store, running, "other")
    affected = store.fail_unfinished_runs("the daemon stopped")
    assert affected == [("HelloFlow", running.run_id), ("HelloFlow", pending.run_id)]
    assert store.get_run("HelloFlow", done.run_id).state is RunState.SUCCEEDED
    for run in (running, pending):
        got = store.get_run("HelloFlow", run.run_id)
        assert got.state is RunState.FAILED
        assert got.failure_message == "the daemon stopped"
        assert got.finish_time is not None
    attempt = store.get_task("HelloFlow", running.run_id, busy).latest
    assert attempt is not None
    assert (attempt.state, attempt.failure_message) == (TaskState.FAILED, "the daemon stopped")
    assert store.get_step("HelloFlow", running.run_id, "start").finish_time is not None
    assert store.get_task("HelloFlow", running.run_id, waiting).attempts == ()
    assert store.fail_unfinished_runs("again") == []


# --- durability, schema, connections --------------------------------------------------------
def test_durable_settings_and_schema_version(store: SqliteMetadataStore, db_path: Path) -> None:
    writer = store._writer
    assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_reopen_keeps_everything(db_path: Path) -> None:
    first = SqliteMetadataStore(db_path)
    run = _run(first)
    _task(first, run, "start")
    first.close()
    with pytest.raises(FailedPreconditionError):
        first.get_run("HelloFlow", run.run_id)
    second = SqliteMetadataStore(db_path)
    try:
        assert second.get_run("HelloFlow", run.run_id) == run
        assert _run(second).run_id == "2"
        assert _task(second, run, "start") == "2"
    finally:
        second.close()


def test_newer_schema_is_refused(db_path: Path) -> None:
    SqliteMetadataStore(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FailedPreconditionError) as info:
        SqliteMetadataStore(db_path)
    assert info.value.reason == "SCHEMA_TOO_NEW"


def test_ten_thousand_writes_lose_nothing(db_path: Path) -> None:
    """10,000 acknowledged writes, with readers polling from other threads all along."""
    store = SqliteMetadataStore(db_path)
    stop = threading.Event()
    reader_errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                page = store.list_runs("Bulk", 50, "")
                for run in page.items[:2]:
                    store.list_tasks("Bulk", run.run_id, "work", 100, "")
                reads[0] += 1
            except NotFoundError:
                pass  # before the first run or the first task
            except BaseException as exc:  # pragma: no cover - reported below
                reader_errors.append(exc)
                return
            time.sleep(0.005)  # a polling client, not a busy loop hogging the GIL

    threads = [threading.Thread(target=reader) for _ in range(2)]
    started = time.monotonic()
    writes = 0
    for thread in threads:
        thread.start()
    try:
        while writes < 10_000:
            run = _run(store, "Bulk")
            writes += 1
            for _ in range(333):
                task = _task(store, run, "work")
                store.start_attempt("Bulk", run.run_id, task, 0)
                store.finish_attempt(
                    "Bulk",
                    run.run_id,
                    task,
                    0,
                    state=TaskState.SUCCEEDED,
                    artifacts=[ArtifactRecord("x", DIGEST, "json", 1)],
                )
                writes += 3
                if writes >= 10_000:
                    break
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    elapsed = time.monotonic() - started
    store.close()
    assert reader_errors == []
    assert reads[0] > 0
    # About 3 s on an idle 2-core VM; the bound only catches gross regressions, since
    # fsync latency on a shared or loaded machine varies a lot.
    assert elapsed < 60, f"10,000 durable writes took {elapsed:.1f} s"

    conn = sqlite3.connect(db_path)
    try:
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        tasks = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        attempts = conn.execute("SELECT COUNT(*) FROM attempts WHERE state = 3").fetchone()[0]
        artifacts = conn.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0]
    finally:
        conn.close()
    assert tasks == attempts == artifacts
    assert writes == 10_000
    assert runs + 3 * tasks == 10_000


_KILLED_WRITER = """
import sys
from polyflow_core.metadata.sqlite import SqliteMetadataStore
store = SqliteMetadataStore(sys.argv[1])
run = store.create_run(flow_id="K", user="u", tags=[], system_tags=[], graph=b"",
                       options=b"", environment=b"", namespace="")
i = 0
while True:
    store.create_task(flow_id="K", run_id=run.run_id, step_name="s", foreach_stack=[],
                      input_tasks=[])
    i += 1
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
"""


def test_acknowledged_writes_survive_a_killed_writer(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    acknowledged = 0
    try:
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 500:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert acknowledged >= 500
    store = SqliteMetadataStore(db_path)
    try:
        page = store.list_tasks("K", "1", "s", 1000, "")
        count = len(page.items)
        assert count >= acknowledged
        assert [t.task_id for t in page.items] == [str(i) for i in range(1, count + 1)]
    finally:
        store.close()


# --- scale: indexes -------------------------------------------------------------------------
def _plan(store: SqliteMetadataStore, sql: str, params: tuple[object, ...]) -> str:
    rows = store._writer.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return "\n".join(str(row[-1]) for row in rows)


def test_listing_and_reading_stay_fast_at_scale(store: SqliteMetadataStore) -> None:
    """10,000 runs and 100,000 tasks (bulk-loaded): the hot reads use indexes only."""
    with store._write() as conn:
        conn.execute("INSERT INTO flows VALUES ('Big', 0), ('Other', 0)")
        conn.executemany(
            "INSERT INTO runs (run_id, flow_id, state, create_time, user, graph, options, "
            "environment) VALUES (?, ?, 3, ?, 'u', X'00', X'', X'')",
            [(i, "Big" if i % 2 else "Other", i) for i in range(1, 10_001)],
        )
        conn.executemany(
            "INSERT INTO run_tags VALUES (?, ?, ?)",
            [(i, "user:u", 1) for i in range(1, 10_001)]
            + [(i, "t", 0) for i in range(1, 10_001, 7)],
        )
        conn.executemany(
            "INSERT INTO steps VALUES (?, ?, ?, 'Big', 0)",
            [(r, s, n) for r in range(1, 101, 2) for n, s in enumerate(("start", "work"), 1)],
        )
        conn.executemany(
            "INSERT INTO tasks (run_id, task_id, flow_id, step_name, create_time, "
            "foreach_stack, input_tasks, latest_attempt, finish_time) "
            "VALUES (?, ?, 'Big', ?, 0, '[]', '[]', 0, 1)",
            [
                (r, t, "work" if t > 1 else "start")
                for r in range(1, 101, 2)
                for t in range(1, 2001)
            ],
        )
        conn.executemany(
            "INSERT INTO attempts (run_id, task_id, attempt, state, start_time, finish_time) "
            "VALUES (?, ?, 0, 3, 0, 1)",
            [(r, t) for r in range(1, 101, 2) for t in range(1, 2001)],
        )
    assert store._writer.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 100_000
    store._writer.execute("ANALYZE")

    started = time.perf_counter()
    page = store.list_runs("Big", 100, "")
    second = store.list_runs("Big", 100, page.next_page_token)
    tagged = store.list_runs("Big", 100, "", tags=["t", "user:u"])
    task = store.get_task("Big", "51", "1500")
    tasks = store.list_tasks("Big", "51", "work", 100, "")
    steps = store.list_steps("Big", "51", 100, "")
    elapsed = time.perf_counter() - started
    assert page.items[0].run_id == "9999"
    assert len(page.items) == 100 and len(second.items) == 100
    assert second.items[0].run_id == "9799"
    assert len(tagged.items) == 100
    assert all("t" in run.tags for run in tagged.items)
    assert task.step_name == "work" and len(task.attempts) == 1
    assert [t.task_id for t in tasks.items] == [str(i) for i in range(2, 102)]
    assert [s.step_name for s in steps.items] == ["start", "work"]
    assert elapsed < 2.0, f"hot reads took {elapsed:.3f} s"  # ~0.05 s when idle

    runs_plan = _plan(
        store,
        "SELECT run_id FROM runs r WHERE r.flow_id = ? ORDER BY r.run_id DESC LIMIT 101",
        ("Big",),
    )
    assert "runs_by_flow" in runs_plan and "TEMP B-TREE" not in runs_plan, runs_plan
    tasks_plan = _plan(
        store,
        "SELECT task_id FROM tasks WHERE run_id = ? AND step_name = ? AND task_id > ? "
        "ORDER BY task_id LIMIT 101",
        (51, "work", 0),
    )
    assert "tasks_by_step" in tasks_plan and "TEMP B-TREE" not in tasks_plan, tasks_plan
    task_plan = _plan(store, "SELECT * FROM tasks WHERE run_id = ? AND task_id = ?", (51, 1500))
    assert "SEARCH" in task_plan and "SCAN" not in task_plan, task_plan
