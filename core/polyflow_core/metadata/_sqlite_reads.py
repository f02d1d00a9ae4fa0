"""Read queries of the SQLite metadata store: each function runs on a connection the store
gives it (a read snapshot, or the write transaction of a write that returns what it wrote)
and returns records. Arguments come checked, page sizes applied and page tokens decoded: the
store does that before it opens the snapshot, and encodes the next page's token from the key a
listing returns (None on the last page). Only the ``polyflow_core.metadata.sqlite`` modules
use this module.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from polyflow_core.errors import NotFoundError
from polyflow_core.metadata._sqlite_codec import (
    TASK_COLUMNS,
    TASK_LEVEL,
    exception_from,
    frames_from,
    int_id,
    run_not_found,
    task_not_found,
    to_dt,
    to_dt_opt,
)
from polyflow_core.metadata.base import (
    ArtifactRecord,
    AttemptRecord,
    FlowRecord,
    RunRecord,
    RunState,
    StepRecord,
    TaskRecord,
    TaskState,
)

__all__ = [
    "check_run",
    "get_flow",
    "get_run",
    "get_step",
    "get_task",
    "list_artifacts",
    "list_flows",
    "list_runs",
    "list_steps",
    "list_tasks",
]

_IN_CHUNK = 500  # bound on the number of `?` in one IN (...) list

_RUN_COLUMNS = (
    "r.run_id, r.flow_id, r.state, r.create_time, r.finish_time, r.user, {graph}, "
    "r.failure_message, r.origin_run_id, r.end_task_id, r.options, r.environment, r.namespace, "
    "(SELECT t.step_name FROM tasks t WHERE t.run_id = r.run_id AND t.task_id = r.end_task_id)"
)
_NO_GRAPH = "X''"  # an empty blob in place of the graph column
_STEP_FINISH = (
    "(SELECT CASE WHEN COUNT(*) = COUNT(t.finish_time) THEN MAX(t.finish_time) END "
    "FROM tasks t WHERE t.run_id = s.run_id AND t.step_name = s.step_name)"
)


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


# --- flows ------------------------------------------------------------------------------------
def list_flows(
    conn: sqlite3.Connection, size: int, after: str | None
) -> tuple[list[FlowRecord], str | None]:
    """Up to ``size`` flows by name after ``after``, and the next page's key."""
    rows = conn.execute(
        "SELECT flow_id, create_time FROM flows WHERE flow_id > ? ORDER BY flow_id LIMIT ?",
        ("" if after is None else after, size + 1),
    ).fetchall()
    items = [FlowRecord(flow_id=f, create_time=to_dt(t)) for f, t in rows[:size]]
    return items, items[-1].flow_id if len(rows) > size else None


def get_flow(conn: sqlite3.Connection, flow_id: str) -> FlowRecord:
    """One flow; NotFoundError when it has no run."""
    row = conn.execute("SELECT create_time FROM flows WHERE flow_id = ?", (flow_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"flow {flow_id} does not exist", metadata={"flow_id": flow_id})
    return FlowRecord(flow_id=flow_id, create_time=to_dt(row[0]))


# --- runs -------------------------------------------------------------------------------------
def list_runs(
    conn: sqlite3.Connection,
    flow_id: str,
    size: int,
    before: int | None,
    tags: Sequence[str],
    states: Sequence[int],
) -> tuple[list[RunRecord], int | None]:
    """Up to ``size`` of a flow's runs older than run ``before``, newest first, carrying every
    tag of ``tags`` and in one of ``states`` (values; empty: any), and the next page's key.

    Raises:
        NotFoundError: The flow has no run.
    """
    sql = [f"SELECT {_RUN_COLUMNS.format(graph=_NO_GRAPH)} FROM runs r WHERE r.flow_id = ?"]
    params: list[object] = [flow_id]
    if before is not None:
        sql.append("AND r.run_id < ?")
        params.append(before)
    if states:
        sql.append(f"AND r.state IN ({', '.join('?' * len(states))})")
        params.extend(states)
    for tag in tags:
        sql.append("AND EXISTS (SELECT 1 FROM run_tags g WHERE g.run_id = r.run_id AND g.tag = ?)")
        params.append(tag)
    sql.append("ORDER BY r.run_id DESC LIMIT ?")
    params.append(size + 1)
    if conn.execute("SELECT 1 FROM flows WHERE flow_id = ?", (flow_id,)).fetchone() is None:
        raise NotFoundError(f"flow {flow_id} does not exist", metadata={"flow_id": flow_id})
    rows = conn.execute(" ".join(sql), params).fetchall()
    runs = _runs_from_rows(conn, rows[:size])
    return runs, int(runs[-1].run_id) if len(rows) > size else None


def get_run(conn: sqlite3.Connection, flow_id: str, run: int, *, with_graph: bool) -> RunRecord:
    """One run (its graph an empty blob unless ``with_graph``); NotFoundError when absent."""
    graph = "r.graph" if with_graph else _NO_GRAPH
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS.format(graph=graph)} FROM runs r "
        "WHERE r.run_id = ? AND r.flow_id = ?",
        (run, flow_id),
    ).fetchone()
    if row is None:
        raise run_not_found(flow_id, str(run))
    return _runs_from_rows(conn, [row])[0]


def check_run(conn: sqlite3.Connection, flow_id: str, run: int | None, run_id: str) -> None:
    """NotFoundError unless run ``run`` (``run_id`` parsed) of ``flow_id`` exists."""
    row = conn.execute(
        "SELECT 1 FROM runs WHERE run_id = ? AND flow_id = ?", (run, flow_id)
    ).fetchone()
    if row is None:
        raise run_not_found(flow_id, run_id)


def _runs_from_rows(conn: sqlite3.Connection, rows: Sequence[Any]) -> list[RunRecord]:
    """Records for run rows (``_RUN_COLUMNS`` order), tags fetched in one query."""
    ids = [row[0] for row in rows]
    user_tags: dict[int, list[str]] = {i: [] for i in ids}
    sys_tags: dict[int, list[str]] = {i: [] for i in ids}
    for chunk in _chunks(ids):
        for run, tag, system in conn.execute(
            "SELECT run_id, tag, system FROM run_tags "
            f"WHERE run_id IN ({', '.join('?' * len(chunk))}) ORDER BY tag",
            list(chunk),
        ):
            (sys_tags if system else user_tags)[run].append(tag)
    return [
        RunRecord(
            flow_id=flow,
            run_id=str(run),
            state=RunState(state),
            tags=tuple(user_tags[run]),
            system_tags=tuple(sys_tags[run]),
            create_time=to_dt(created),
            finish_time=to_dt_opt(finished),
            user=user,
            graph=bytes(graph),
            failure_message=failure,
            origin_run_id=origin,
            end_task_id="" if end_task is None else str(end_task),
            end_step_name=end_step or "",
            options=bytes(options),
            environment=bytes(environment),
            namespace=namespace,
        )
        for (
            run,
            flow,
            state,
            created,
            finished,
            user,
            graph,
            failure,
            origin,
            end_task,
            options,
            environment,
            namespace,
            end_step,
        ) in rows
    ]


# --- steps ------------------------------------------------------------------------------------
def list_steps(
    conn: sqlite3.Connection, flow_id: str, run_id: str, size: int, seq: int
) -> tuple[list[StepRecord], int | None]:
    """Up to ``size`` of a run's steps after position ``seq``, in the order they got their
    first task, and the next page's key.

    Raises:
        NotFoundError: No such run.
    """
    run = int_id(run_id)
    check_run(conn, flow_id, run, run_id)
    rows = conn.execute(
        f"SELECT s.step_name, s.create_time, {_STEP_FINISH}, s.seq FROM steps s "
        "WHERE s.run_id = ? AND s.seq > ? ORDER BY s.seq LIMIT ?",
        (run, seq, size + 1),
    ).fetchall()
    items = [
        StepRecord(
            flow_id=flow_id,
            run_id=run_id,
            step_name=name,
            create_time=to_dt(created),
            finish_time=to_dt_opt(finished),
        )
        for name, created, finished, _ in rows[:size]
    ]
    return items, rows[size - 1][3] if len(rows) > size else None


def get_step(conn: sqlite3.Connection, flow_id: str, run_id: str, step_name: str) -> StepRecord:
    """One step; NotFoundError when the run is absent or the step has no task."""
    row = conn.execute(
        f"SELECT s.create_time, {_STEP_FINISH} FROM steps s "
        "WHERE s.run_id = ? AND s.step_name = ? AND s.flow_id = ?",
        (int_id(run_id), step_name, flow_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"step {flow_id}/{run_id}/{step_name} does not exist",
            metadata={"flow_id": flow_id, "run_id": run_id, "step_name": step_name},
        )
    return StepRecord(
        flow_id=flow_id,
        run_id=run_id,
        step_name=step_name,
        create_time=to_dt(row[0]),
        finish_time=to_dt_opt(row[1]),
    )


# --- tasks ------------------------------------------------------------------------------------
def list_tasks(
    conn: sqlite3.Connection, flow_id: str, run_id: str, step_name: str, size: int, start: int
) -> tuple[list[TaskRecord], int | None]:
    """Up to ``size`` of a step's tasks with ids above ``start``, by ascending task id, and
    the next page's key.

    Raises:
        NotFoundError: The run is absent or the step has no task.
    """
    run = int_id(run_id)
    exists = conn.execute(
        "SELECT 1 FROM steps WHERE run_id = ? AND step_name = ? AND flow_id = ?",
        (run, step_name, flow_id),
    ).fetchone()
    if exists is None:
        raise NotFoundError(
            f"step {flow_id}/{run_id}/{step_name} does not exist",
            metadata={"flow_id": flow_id, "run_id": run_id, "step_name": step_name},
        )
    rows = conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks "
        "WHERE run_id = ? AND step_name = ? AND task_id > ? ORDER BY task_id LIMIT ?",
        (run, step_name, start, size + 1),
    ).fetchall()
    tasks = _tasks_from_rows(conn, rows[:size])
    return tasks, int(tasks[-1].task_id) if len(rows) > size else None


def get_task(conn: sqlite3.Connection, flow_id: str, run_id: str, task_id: str) -> TaskRecord:
    """One task with its attempts; NotFoundError when absent."""
    row = conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE run_id = ? AND task_id = ? AND flow_id = ?",
        (int_id(run_id), int_id(task_id), flow_id),
    ).fetchone()
    if row is None:
        raise task_not_found(flow_id, run_id, task_id)
    return _tasks_from_rows(conn, [row])[0]


def _tasks_from_rows(conn: sqlite3.Connection, rows: Sequence[Any]) -> list[TaskRecord]:
    """Records for task rows of one run (``TASK_COLUMNS`` order), with attempts and
    metadata fetched in one query each."""
    if not rows:
        return []
    run = rows[0][0]
    ids = [row[1] for row in rows]
    attempts: dict[int, list[tuple[Any, ...]]] = {i: [] for i in ids}
    metadata: dict[tuple[int, int], dict[str, str]] = {}
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for attempt_row in conn.execute(
            "SELECT task_id, attempt, state, start_time, finish_time, failure_message, "
            f"exception, next_steps FROM attempts WHERE run_id = ? AND task_id IN ({marks}) "
            "ORDER BY task_id, attempt",
            [run, *chunk],
        ):
            attempts[attempt_row[0]].append(attempt_row[1:])
        for task, attempt, key, value in conn.execute(
            "SELECT task_id, attempt, field, value FROM metadata "
            f"WHERE run_id = ? AND task_id IN ({marks})",
            [run, *chunk],
        ):
            metadata.setdefault((task, attempt), {})[key] = value
    records = []
    for run_id, task_id, flow, step, created, frames, inputs, origin in rows:
        records.append(
            TaskRecord(
                flow_id=flow,
                run_id=str(run_id),
                step_name=step,
                task_id=str(task_id),
                create_time=to_dt(created),
                foreach_stack=frames_from(frames),
                input_tasks=tuple(json.loads(inputs)),
                attempts=tuple(
                    AttemptRecord(
                        attempt=number,
                        state=TaskState(state),
                        start_time=to_dt_opt(started),
                        finish_time=to_dt_opt(finished),
                        failure_message=failure,
                        exception=exception_from(exception),
                        next_steps=tuple(json.loads(next_steps)),
                        metadata=metadata.get((task_id, number), {}),
                    )
                    for (
                        number,
                        state,
                        started,
                        finished,
                        failure,
                        exception,
                        next_steps,
                    ) in attempts[task_id]
                ),
                origin_task=origin,
                metadata=metadata.get((task_id, TASK_LEVEL), {}),
            )
        )
    return records


# --- artifacts --------------------------------------------------------------------------------
def list_artifacts(
    conn: sqlite3.Connection, flow_id: str, run_id: str, task_id: str, attempt: int
) -> list[ArtifactRecord]:
    """The artifacts one attempt stored, by name.

    Raises:
        NotFoundError: The task or the attempt does not exist.
    """
    run, task = int_id(run_id), int_id(task_id)
    row = conn.execute(
        "SELECT 1 FROM attempts a JOIN tasks t USING (run_id, task_id) "
        "WHERE a.run_id = ? AND a.task_id = ? AND a.attempt = ? AND t.flow_id = ?",
        (run, task, attempt, flow_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"attempt {attempt} of task {flow_id}/{run_id}/*/{task_id} does not exist",
            metadata={
                "flow_id": flow_id,
                "run_id": run_id,
                "task_id": task_id,
                "attempt": str(attempt),
            },
        )
    rows = conn.execute(
        "SELECT name, digest, encoding, size, type_name FROM artifacts "
        "WHERE run_id = ? AND task_id = ? AND attempt = ? ORDER BY name",
        (run, task, attempt),
    ).fetchall()
    return [
        ArtifactRecord(name=n, digest=d, encoding=e, size_bytes=s, type_name=t)
        for n, d, e, s, t in rows
    ]
