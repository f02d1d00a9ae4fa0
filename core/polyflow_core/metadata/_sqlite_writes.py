"""Write statements of the SQLite metadata store: each function runs inside the one write
transaction (or batch savepoint) the store opened for it, on the writer connection, so that
its statements apply or fail together. Arguments come checked; a ``now`` argument (the time
of the change, in microseconds) was read by the store before it took the write lock. Only
:mod:`polyflow_core.metadata.sqlite` uses this module.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from polyflow_core.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError
from polyflow_core.metadata._sqlite_codec import (
    TASK_COLUMNS,
    TASK_LEVEL,
    exception_json,
    frames_json,
    int_id,
    now_us,
    run_not_found,
    task_not_found,
    to_dt,
)
from polyflow_core.metadata._sqlite_reads import check_run, get_run
from polyflow_core.metadata.base import (
    MAX_USER_TAGS,
    ArtifactRecord,
    ExceptionRecord,
    ForeachFrameRecord,
    RunRecord,
    RunState,
    TaskRecord,
    TaskState,
)

__all__ = [
    "create_run",
    "create_task",
    "fail_unfinished_runs",
    "finish_attempt",
    "set_run_state",
    "start_attempt",
    "update_run_tags",
]

_UNFINISHED_RUN = (RunState.PENDING.value, RunState.RUNNING.value)
_UNFINISHED_ATTEMPT = (TaskState.PENDING.value, TaskState.RUNNING.value)


# --- runs -------------------------------------------------------------------------------------
def create_run(
    conn: sqlite3.Connection,
    *,
    flow_id: str,
    user: str,
    user_tags: list[str],
    sys_tags: list[str],
    graph: bytes,
    options: bytes,
    environment: bytes,
    namespace: str,
    origin_run_id: str,
    request_id: str,
    now: int,
) -> RunRecord:
    """Insert a PENDING run with its tags (sorted, without duplicates), its flow if new; or
    return the run ``request_id`` created already."""
    if request_id:
        row = conn.execute(
            "SELECT run_id FROM runs WHERE flow_id = ? AND request_id = ?",
            (flow_id, request_id),
        ).fetchone()
        if row is not None:
            return get_run(conn, flow_id, row[0], with_graph=True)
    conn.execute("INSERT OR IGNORE INTO flows (flow_id, create_time) VALUES (?, ?)", (flow_id, now))
    cursor = conn.execute(
        "INSERT INTO runs (flow_id, state, create_time, user, graph, origin_run_id, "
        "options, environment, namespace, request_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            flow_id,
            RunState.PENDING.value,
            now,
            user,
            bytes(graph),
            origin_run_id,
            bytes(options),
            bytes(environment),
            namespace,
            request_id,
        ),
    )
    run_id = cursor.lastrowid
    assert run_id is not None
    conn.executemany(
        "INSERT INTO run_tags (run_id, tag, system) VALUES (?, ?, ?)",
        [(run_id, tag, 0) for tag in user_tags] + [(run_id, tag, 1) for tag in sys_tags],
    )
    return RunRecord(
        flow_id=flow_id,
        run_id=str(run_id),
        state=RunState.PENDING,
        tags=tuple(user_tags),
        system_tags=tuple(sys_tags),
        create_time=to_dt(now),
        finish_time=None,
        user=user,
        graph=bytes(graph),
        origin_run_id=origin_run_id,
        options=bytes(options),
        environment=bytes(environment),
        namespace=namespace,
    )


def set_run_state(
    conn: sqlite3.Connection,
    flow_id: str,
    run_id: str,
    state: RunState,
    *,
    failure_message: str,
    end_task: int | None,
    finished: bool,
) -> None:
    """Move a run to ``state``; a ``finished`` run gets its finish time (now).

    Raises:
        NotFoundError: No such run.
    """
    cursor = conn.execute(
        "UPDATE runs SET state = ?, failure_message = ?, "
        "finish_time = ?, end_task_id = COALESCE(?, end_task_id) "
        "WHERE run_id = ? AND flow_id = ?",
        (
            state.value,
            failure_message,
            now_us() if finished else None,
            end_task,
            int_id(run_id),
            flow_id,
        ),
    )
    if cursor.rowcount == 0:
        raise run_not_found(flow_id, run_id)


def update_run_tags(
    conn: sqlite3.Connection,
    flow_id: str,
    run_id: str,
    *,
    add: Sequence[str],
    remove: Sequence[str],
) -> RunRecord:
    """Remove, then add user tags; the run as it is then (without its graph).

    Raises:
        NotFoundError: No such run.
        InvalidArgumentError: A removed tag is a system tag (``SYSTEM_TAG_IMMUTABLE``), or
            too many user tags would remain (``TOO_MANY_TAGS``).
    """
    run = int_id(run_id)
    check_run(conn, flow_id, run, run_id)
    user: set[str] = set()
    system: set[str] = set()
    for tag, is_system in conn.execute("SELECT tag, system FROM run_tags WHERE run_id = ?", (run,)):
        (system if is_system else user).add(tag)
    blocked = sorted(system.intersection(remove))
    if blocked:
        raise InvalidArgumentError(
            f"tag {blocked[0]!r} is a system tag of run {flow_id}/{run_id}: system tags "
            "cannot be changed",
            reason="SYSTEM_TAG_IMMUTABLE",
            metadata={"tag": blocked[0], "flow_id": flow_id, "run_id": run_id},
        )
    wanted = (user - set(remove)) | (set(add) - system)
    if len(wanted) > MAX_USER_TAGS and len(wanted) > len(user):
        raise InvalidArgumentError(
            f"run {flow_id}/{run_id} would carry {len(wanted)} user tags; at most "
            f"{MAX_USER_TAGS} are allowed",
            reason="TOO_MANY_TAGS",
            metadata={
                "flow_id": flow_id,
                "run_id": run_id,
                "count": str(len(wanted)),
                "max": str(MAX_USER_TAGS),
            },
        )
    conn.executemany(
        "DELETE FROM run_tags WHERE run_id = ? AND tag = ? AND system = 0",
        [(run, tag) for tag in sorted(user - wanted)],
    )
    conn.executemany(
        "INSERT INTO run_tags (run_id, tag, system) VALUES (?, ?, 0)",
        [(run, tag) for tag in sorted(wanted - user)],
    )
    assert run is not None  # check_run found it
    return get_run(conn, flow_id, run, with_graph=False)


def fail_unfinished_runs(conn: sqlite3.Connection, message: str, now: int) -> list[tuple[str, str]]:
    """Mark PENDING/RUNNING runs and attempts FAILED with ``message``; ``(flow_id, run_id)``
    of the runs, by run id."""
    runs = conn.execute(
        "SELECT flow_id, run_id FROM runs WHERE state IN (?, ?) ORDER BY run_id",
        _UNFINISHED_RUN,
    ).fetchall()
    attempts = conn.execute(
        "SELECT run_id, task_id, attempt FROM attempts WHERE state IN (?, ?)",
        _UNFINISHED_ATTEMPT,
    ).fetchall()
    conn.execute(
        "UPDATE attempts SET state = ?, finish_time = ?, failure_message = ? WHERE state IN (?, ?)",
        (TaskState.FAILED.value, now, message, *_UNFINISHED_ATTEMPT),
    )
    conn.executemany(
        "UPDATE tasks SET finish_time = ? WHERE run_id = ? AND task_id = ? AND latest_attempt = ?",
        [(now, run, task, attempt) for run, task, attempt in attempts],
    )
    conn.execute(
        "UPDATE runs SET state = ?, finish_time = ?, failure_message = ? WHERE state IN (?, ?)",
        (RunState.FAILED.value, now, message, *_UNFINISHED_RUN),
    )
    return [(flow_id, str(run_id)) for flow_id, run_id in runs]


# --- tasks and attempts -----------------------------------------------------------------------
def create_task(
    conn: sqlite3.Connection,
    *,
    flow_id: str,
    run_id: str,
    step_name: str,
    foreach_stack: Sequence[ForeachFrameRecord],
    input_tasks: Sequence[str],
    origin_task: str,
    metadata: dict[str, str],
    explicit: int | None,
    now: int,
) -> TaskRecord:
    """Insert a task with no attempt: id ``explicit``, or the run's next one (the counter then
    continues above it); its step if new; its task-level metadata.

    Raises:
        NotFoundError: No such run.
        AlreadyExistsError: An explicit id is taken.
    """
    run = int_id(run_id)
    row = conn.execute(
        "SELECT next_task_id FROM runs WHERE run_id = ? AND flow_id = ?", (run, flow_id)
    ).fetchone()
    if row is None:
        raise run_not_found(flow_id, run_id)
    counter = int(row[0])
    if explicit is None:
        new_id, counter = counter, counter + 1
    else:
        new_id, counter = explicit, max(counter, explicit + 1)
    try:
        conn.execute(
            f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run,
                new_id,
                flow_id,
                step_name,
                now,
                frames_json(foreach_stack),
                json.dumps(list(input_tasks)),
                origin_task,
            ),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExistsError(
            f"task {flow_id}/{run_id}/{new_id} exists already",
            metadata={"flow_id": flow_id, "run_id": run_id, "task_id": str(new_id)},
        ) from None
    conn.execute("UPDATE runs SET next_task_id = ? WHERE run_id = ?", (counter, run))
    conn.execute(
        "INSERT OR IGNORE INTO steps (run_id, step_name, seq, flow_id, create_time) "
        "VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?), "
        "?, ?)",
        (run, step_name, run, flow_id, now),
    )
    conn.executemany(
        "INSERT INTO metadata (run_id, task_id, attempt, field, value) VALUES (?, ?, ?, ?, ?)",
        [(run, new_id, TASK_LEVEL, k, v) for k, v in metadata.items()],
    )
    return TaskRecord(
        flow_id=flow_id,
        run_id=run_id,
        step_name=step_name,
        task_id=str(new_id),
        create_time=to_dt(now),
        foreach_stack=tuple(foreach_stack),
        input_tasks=tuple(input_tasks),
        attempts=(),
        origin_task=origin_task,
        metadata=metadata,
    )


def _task_row(
    conn: sqlite3.Connection, flow_id: str, run_id: str, task_id: str
) -> tuple[int, int, int | None]:
    """``(run, task, latest_attempt)`` of an existing task; NotFoundError otherwise."""
    run, task = int_id(run_id), int_id(task_id)
    row = conn.execute(
        "SELECT latest_attempt FROM tasks WHERE run_id = ? AND task_id = ? AND flow_id = ?",
        (run, task, flow_id),
    ).fetchone()
    if row is None or run is None or task is None:
        raise task_not_found(flow_id, run_id, task_id)
    return run, task, row[0]


def start_attempt(
    conn: sqlite3.Connection, flow_id: str, run_id: str, task_id: str, attempt: int
) -> None:
    """Insert a RUNNING attempt started now; it becomes the task's latest unless a later one
    exists.

    Raises:
        NotFoundError: No such task.
        FailedPreconditionError: The attempt exists already (reason ``ATTEMPT_EXISTS``).
    """
    run, task, latest = _task_row(conn, flow_id, run_id, task_id)
    try:
        conn.execute(
            "INSERT INTO attempts (run_id, task_id, attempt, state, start_time) "
            "VALUES (?, ?, ?, ?, ?)",
            (run, task, attempt, TaskState.RUNNING.value, now_us()),
        )
    except sqlite3.IntegrityError:
        raise FailedPreconditionError(
            f"attempt {attempt} of task {flow_id}/{run_id}/{task_id} exists already",
            reason="ATTEMPT_EXISTS",
            metadata={
                "flow_id": flow_id,
                "run_id": run_id,
                "task_id": task_id,
                "attempt": str(attempt),
            },
        ) from None
    if latest is None or attempt >= latest:
        conn.execute(
            "UPDATE tasks SET latest_attempt = ?, finish_time = NULL "
            "WHERE run_id = ? AND task_id = ?",
            (attempt, run, task),
        )


def finish_attempt(
    conn: sqlite3.Connection,
    flow_id: str,
    run_id: str,
    task_id: str,
    attempt: int,
    *,
    state: TaskState,
    artifacts: Sequence[ArtifactRecord],
    next_steps: Sequence[str],
    failure_message: str,
    exception: ExceptionRecord | None,
    metadata: dict[str, str] | None,
    now: int,
) -> None:
    """Record the end of an attempt (inserted when it never started), its artifacts and
    metadata; it becomes the task's latest unless a later one exists.

    Raises:
        NotFoundError: No such task.
        FailedPreconditionError: The attempt had finished already (reason
            ``ATTEMPT_FINISHED``).
    """
    run, task, latest = _task_row(conn, flow_id, run_id, task_id)
    row = conn.execute(
        "SELECT state FROM attempts WHERE run_id = ? AND task_id = ? AND attempt = ?",
        (run, task, attempt),
    ).fetchone()
    if row is not None and row[0] not in _UNFINISHED_ATTEMPT:
        raise FailedPreconditionError(
            f"attempt {attempt} of task {flow_id}/{run_id}/{task_id} has finished",
            reason="ATTEMPT_FINISHED",
            metadata={
                "flow_id": flow_id,
                "run_id": run_id,
                "task_id": task_id,
                "attempt": str(attempt),
            },
        )
    values = (
        state.value,
        now,
        failure_message,
        exception_json(exception),
        json.dumps(list(next_steps)),
    )
    if row is None:
        conn.execute(
            "INSERT INTO attempts (state, finish_time, failure_message, exception, "
            "next_steps, run_id, task_id, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, run, task, attempt),
        )
    else:
        conn.execute(
            "UPDATE attempts SET state = ?, finish_time = ?, failure_message = ?, "
            "exception = ?, next_steps = ? "
            "WHERE run_id = ? AND task_id = ? AND attempt = ?",
            (*values, run, task, attempt),
        )
    if latest is None or attempt >= latest:
        conn.execute(
            "UPDATE tasks SET latest_attempt = ?, finish_time = ? WHERE run_id = ? AND task_id = ?",
            (attempt, now, run, task),
        )
    conn.executemany(
        "INSERT INTO artifacts (run_id, task_id, attempt, name, flow_id, digest, "
        "encoding, size, type_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run,
                task,
                attempt,
                a.name,
                flow_id,
                a.digest,
                a.encoding,
                a.size_bytes,
                a.type_name,
            )
            for a in artifacts
        ],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO metadata (run_id, task_id, attempt, field, value) "
        "VALUES (?, ?, ?, ?, ?)",
        [(run, task, attempt, k, v) for k, v in (metadata or {}).items()],
    )
