"""The default metadata back-end: one SQLite file in WAL mode, written by the daemon only.

Connections: one writer connection (``synchronous=FULL``, so a write is on disk when the
method returns: "durable before acknowledged"), used under a lock by the scheduler thread;
one read-only connection per reading thread (``threading.local``), each read running in one
snapshot (WAL readers never wait for the writer).

Schema (version 1; ``PRAGMA user_version`` and the ``schema_version`` table record it)::

    flows(flow_id PK, create_time)
    runs(run_id INTEGER PK AUTOINCREMENT, flow_id, state, ..., next_task_id)
         index (flow_id, run_id): a flow's newest runs without sorting
    run_tags(run_id, tag, system) PK (run_id, tag, system), index (tag, run_id)
    steps(run_id, step_name) PK, seq: the order in which steps got their first task
    tasks(run_id, task_id) PK, flow_id, step_name, ..., latest_attempt, finish_time
         index (run_id, step_name, task_id, finish_time): a step's tasks and its finish time
    attempts(run_id, task_id, attempt) PK, state, times, failure, exception, next_steps
    artifacts(run_id, task_id, attempt, name) PK, flow_id, digest, encoding, size, type_name
    metadata(run_id, task_id, attempt, field) PK, value    (attempt -1: task-level)

Times are stored as integer microseconds since the epoch (UTC). Run ids come from one counter
for the whole file (``AUTOINCREMENT``: never reused); task ids from a per-run counter starting
at 1. Page tokens are opaque: URL-safe base64 of a JSON cursor (keyset pagination, never
``OFFSET``), bound to the listing they came from.

This module holds the store itself: connections, locking, transactions and batches, and the
checks of its methods' arguments. Its SQL lives in private modules next to it:
``_sqlite_schema`` (the tables, and the migration creating them), ``_sqlite_writes`` and
``_sqlite_reads`` (statements and queries, as functions of a connection) and
``_sqlite_codec`` (times, ids, page tokens, JSON columns, not-found errors).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from polyflow_core.errors import FailedPreconditionError, InvalidArgumentError
from polyflow_core.metadata import _sqlite_reads as reads
from polyflow_core.metadata import _sqlite_writes as writes
from polyflow_core.metadata._sqlite_codec import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    check_attempt,
    check_key,
    decode_token,
    effective_page_size,
    encode_token,
    int_id,
    now_us,
    run_not_found,
)
from polyflow_core.metadata._sqlite_schema import SCHEMA_VERSION, migrate
from polyflow_core.metadata.base import (
    ArtifactRecord,
    ExceptionRecord,
    FlowRecord,
    ForeachFrameRecord,
    MetadataStore,
    Page,
    RunRecord,
    RunState,
    StepRecord,
    TaskRecord,
    TaskState,
)
from polyflow_core.stamp import StampWriter, stamp_path_for

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "SCHEMA_VERSION", "SqliteMetadataStore"]


class SqliteMetadataStore(MetadataStore):
    """The :class:`MetadataStore` in one SQLite file.

    Opening creates the file and its schema when absent. Write methods may be called from
    any one thread at a time (they take a lock; the design has the scheduler thread as the
    only writer); read methods from any thread, concurrently with writes.

    Args:
        db_path: The database file (``<.polyflow>/metadata.db``).

    Raises:
        FailedPreconditionError: The file was written by a newer schema version (reason
            ``SCHEMA_TOO_NEW``).
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self._path = Path(db_path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.RLock()
        self._batch_owner: int | None = None  # thread id of the open batch, if any
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=FULL")
        # Changed after every commit, for local clients' caches (polyflow_core.stamp).
        self._stamp: StampWriter | None = None
        with contextlib.suppress(OSError):
            self._stamp = StampWriter(stamp_path_for(self._path))
        with self._write() as conn:
            migrate(conn, self._path)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # --- connections --------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPreconditionError(
                "the metadata store is closed", reason="STORE_CLOSED", metadata={}
            )

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (durably) on exit, rolled back on error.

        Inside :meth:`batch` it is a savepoint of the batch's transaction instead: an error
        undoes this write only, and nothing is durable before the batch commits.
        """
        with self._write_lock:
            self._check_open()
            conn = self._writer
            if self._batch_owner is not None:
                conn.execute("SAVEPOINT write")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK TO write")
                    conn.execute("RELEASE write")
                    raise
                conn.execute("RELEASE write")
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self._committed()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes made inside into one transaction: one commit, one sync.

        The writes become durable together when the block ends (the caller acknowledges
        them only after that). Each write still applies or fails as a whole (a savepoint).
        Reads made inside the block by the same thread see the batch's writes; other threads
        see them once it commits. A nested call joins the open batch. An exception leaving
        the block rolls every write of the batch back.
        """
        with self._write_lock:
            if self._batch_owner is not None:
                yield
                return
            self._check_open()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            self._batch_owner = threading.get_ident()
            try:
                yield
            except BaseException:
                self._batch_owner = None
                conn.execute("ROLLBACK")
                raise
            self._batch_owner = None
            conn.execute("COMMIT")
            self._committed()

    def _committed(self) -> None:
        """After a commit: change the stamp (local clients' cached reads are now stale)."""
        if self._stamp is not None:
            self._stamp.bump()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read snapshot on this thread's connection (the batch's own connection and
        transaction for the thread that holds an open :meth:`batch`)."""
        self._check_open()
        if self._batch_owner == threading.get_ident():
            yield self._writer
            return
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            with self._readers_lock:
                self._check_open()
                self._readers.append(conn)
            self._local.conn = conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection; later calls raise ``FailedPreconditionError``."""
        with self._write_lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._writer.close()
            if self._stamp is not None:
                self._stamp.close()

    # --- writes -------------------------------------------------------------------------
    def create_run(
        self,
        *,
        flow_id: str,
        user: str,
        tags: Sequence[str],
        system_tags: Sequence[str],
        graph: bytes,
        options: bytes,
        environment: bytes,
        namespace: str,
        origin_run_id: str = "",
        request_id: str = "",
    ) -> RunRecord:
        """Create a PENDING run (see :meth:`MetadataStore.create_run`).

        Raises:
            InvalidArgumentError: Empty ``flow_id``.
        """
        if not flow_id:
            raise InvalidArgumentError("flow_id must not be empty", metadata={})
        now = now_us()
        user_tags = sorted(set(tags))
        sys_tags = sorted(set(system_tags))
        with self._write() as conn:
            return writes.create_run(
                conn,
                flow_id=flow_id,
                user=user,
                user_tags=user_tags,
                sys_tags=sys_tags,
                graph=graph,
                options=options,
                environment=environment,
                namespace=namespace,
                origin_run_id=origin_run_id,
                request_id=request_id,
                now=now,
            )

    def set_run_state(
        self,
        flow_id: str,
        run_id: str,
        state: RunState,
        *,
        failure_message: str = "",
        end_task_id: str = "",
    ) -> None:
        """Move a run to ``state`` (see :meth:`MetadataStore.set_run_state`).

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: ``end_task_id`` is not a decimal id.
        """
        end_task: int | None = None
        if end_task_id:
            end_task = int_id(end_task_id)
            if end_task is None:
                raise InvalidArgumentError(
                    f"end_task_id {end_task_id!r} is not a task id",
                    metadata={"end_task_id": end_task_id},
                )
        finished = state in (RunState.SUCCEEDED, RunState.FAILED)
        with self._write() as conn:
            writes.set_run_state(
                conn,
                flow_id,
                run_id,
                state,
                failure_message=failure_message,
                end_task=end_task,
                finished=finished,
            )

    def update_run_tags(
        self, flow_id: str, run_id: str, *, add: Sequence[str], remove: Sequence[str]
    ) -> RunRecord:
        """Remove, then add user tags in one transaction (see
        :meth:`MetadataStore.update_run_tags`).

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: A removed tag is a system tag (``SYSTEM_TAG_IMMUTABLE``), or
                too many user tags would remain (``TOO_MANY_TAGS``).
        """
        with self._write() as conn:
            return writes.update_run_tags(conn, flow_id, run_id, add=add, remove=remove)

    def create_task(
        self,
        *,
        flow_id: str,
        run_id: str,
        step_name: str,
        foreach_stack: Sequence[ForeachFrameRecord],
        input_tasks: Sequence[str],
        origin_task: str = "",
        metadata: dict[str, str] | None = None,
        task_id: str | None = None,
    ) -> TaskRecord:
        """Create a task with no attempt (see :meth:`MetadataStore.create_task`).

        An explicit ``task_id`` must be decimal; the counter then continues above it.

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: Empty step name, or an explicit ``task_id`` not decimal.
            AlreadyExistsError: An explicit ``task_id`` is taken.
        """
        if not step_name:
            raise InvalidArgumentError("step_name must not be empty", metadata={})
        explicit: int | None = None
        if task_id is not None:
            explicit = int_id(task_id)
            if explicit is None:
                raise InvalidArgumentError(
                    f"task_id {task_id!r} is not a decimal id", metadata={"task_id": task_id}
                )
        now = now_us()
        meta = dict(metadata or {})
        with self._write() as conn:
            return writes.create_task(
                conn,
                flow_id=flow_id,
                run_id=run_id,
                step_name=step_name,
                foreach_stack=foreach_stack,
                input_tasks=input_tasks,
                origin_task=origin_task,
                metadata=meta,
                explicit=explicit,
                now=now,
            )

    def start_attempt(self, flow_id: str, run_id: str, task_id: str, attempt: int) -> None:
        """Record that an attempt started: RUNNING, start time now.

        Raises:
            NotFoundError: No such task.
            InvalidArgumentError: Negative attempt.
            FailedPreconditionError: The attempt exists already (reason ``ATTEMPT_EXISTS``).
        """
        check_attempt(attempt)
        with self._write() as conn:
            writes.start_attempt(conn, flow_id, run_id, task_id, attempt)

    def finish_attempt(
        self,
        flow_id: str,
        run_id: str,
        task_id: str,
        attempt: int,
        *,
        state: TaskState,
        artifacts: Sequence[ArtifactRecord] = (),
        next_steps: Sequence[str] = (),
        failure_message: str = "",
        exception: ExceptionRecord | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Record the end of an attempt, its artifacts and metadata, in one transaction.

        An attempt that was never started (e.g. its worker could not be launched) is
        recorded with no start time.

        Raises:
            NotFoundError: No such task.
            InvalidArgumentError: ``state`` is not SUCCEEDED/FAILED, negative attempt, or two
                artifacts share a name (reason ``DUPLICATE_ARTIFACT``).
            FailedPreconditionError: The attempt had finished already (reason
                ``ATTEMPT_FINISHED``).
        """
        check_attempt(attempt)
        if state not in (TaskState.SUCCEEDED, TaskState.FAILED):
            raise InvalidArgumentError(
                f"an attempt finishes SUCCEEDED or FAILED, not {state.name}",
                metadata={"state": state.name},
            )
        names = [artifact.name for artifact in artifacts]
        if len(set(names)) != len(names):
            duplicate = next(name for name in names if names.count(name) > 1)
            raise InvalidArgumentError(
                f"artifact {duplicate!r} is reported twice",
                reason="DUPLICATE_ARTIFACT",
                metadata={"artifact": duplicate},
            )
        now = now_us()
        with self._write() as conn:
            writes.finish_attempt(
                conn,
                flow_id,
                run_id,
                task_id,
                attempt,
                state=state,
                artifacts=artifacts,
                next_steps=next_steps,
                failure_message=failure_message,
                exception=exception,
                metadata=metadata,
                now=now,
            )

    def fail_unfinished_runs(self, message: str) -> list[tuple[str, str]]:
        """Mark PENDING/RUNNING runs and attempts FAILED with ``message``.

        Tasks that never got an attempt are left without one (their run is FAILED).
        """
        now = now_us()
        with self._write() as conn:
            return writes.fail_unfinished_runs(conn, message, now)

    # --- reads --------------------------------------------------------------------------
    def list_flows(self, page_size: int, page_token: str) -> Page[FlowRecord]:
        """Flows by name."""
        size = effective_page_size(page_size)
        after = decode_token(page_token, "flows", None)
        if after is not None:
            check_key(after, str)
        with self._read() as conn:
            items, last = reads.list_flows(conn, size, after)
        token = encode_token("flows", None, last) if last is not None else ""
        return Page(items=items, next_page_token=token)

    def get_flow(self, flow_id: str) -> FlowRecord:
        """One flow; NotFoundError when it has no run."""
        with self._read() as conn:
            return reads.get_flow(conn, flow_id)

    def list_runs(
        self,
        flow_id: str,
        page_size: int,
        page_token: str,
        *,
        tags: Sequence[str] = (),
        states: Sequence[RunState] = (),
    ) -> Page[RunRecord]:
        """A flow's runs, newest first (see :meth:`MetadataStore.list_runs`).

        Raises:
            NotFoundError: The flow has no run.
            InvalidArgumentError: Bad page size or token.
        """
        size = effective_page_size(page_size)
        wanted_tags = sorted(set(tags))
        wanted_states = sorted({state.value for state in states})
        scope = [flow_id, wanted_tags, wanted_states]
        before = decode_token(page_token, "runs", scope)
        if before is not None:
            before = check_key(before, int)
        with self._read() as conn:
            runs, last = reads.list_runs(conn, flow_id, size, before, wanted_tags, wanted_states)
        token = ""
        if last is not None:
            token = encode_token("runs", scope, last)
        return Page(items=runs, next_page_token=token)

    def get_run(self, flow_id: str, run_id: str) -> RunRecord:
        """One run, graph included; NotFoundError when absent."""
        run = int_id(run_id)
        with self._read() as conn:
            if run is None:
                raise run_not_found(flow_id, run_id)
            return reads.get_run(conn, flow_id, run, with_graph=True)

    def list_steps(
        self, flow_id: str, run_id: str, page_size: int, page_token: str
    ) -> Page[StepRecord]:
        """A run's steps, in the order they got their first task.

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: Bad page size or token.
        """
        size = effective_page_size(page_size)
        after = decode_token(page_token, "steps", [flow_id, run_id])
        seq = 0 if after is None else check_key(after, int)
        with self._read() as conn:
            items, last = reads.list_steps(conn, flow_id, run_id, size, seq)
        token = ""
        if last is not None:
            token = encode_token("steps", [flow_id, run_id], last)
        return Page(items=items, next_page_token=token)

    def get_step(self, flow_id: str, run_id: str, step_name: str) -> StepRecord:
        """One step; NotFoundError when the run is absent or the step has no task."""
        with self._read() as conn:
            return reads.get_step(conn, flow_id, run_id, step_name)

    def list_tasks(
        self, flow_id: str, run_id: str, step_name: str, page_size: int, page_token: str
    ) -> Page[TaskRecord]:
        """A step's tasks by ascending task id.

        Raises:
            NotFoundError: The run is absent or the step has no task.
            InvalidArgumentError: Bad page size or token.
        """
        size = effective_page_size(page_size)
        scope = [flow_id, run_id, step_name]
        after = decode_token(page_token, "tasks", scope)
        start = -1 if after is None else check_key(after, int)
        with self._read() as conn:
            tasks, last = reads.list_tasks(conn, flow_id, run_id, step_name, size, start)
        token = ""
        if last is not None:
            token = encode_token("tasks", scope, last)
        return Page(items=tasks, next_page_token=token)

    def get_task(self, flow_id: str, run_id: str, task_id: str) -> TaskRecord:
        """One task with its attempts; NotFoundError when absent."""
        with self._read() as conn:
            return reads.get_task(conn, flow_id, run_id, task_id)

    def list_artifacts(
        self, flow_id: str, run_id: str, task_id: str, attempt: int
    ) -> list[ArtifactRecord]:
        """The artifacts one attempt stored, by name.

        Raises:
            NotFoundError: The task or the attempt does not exist.
        """
        with self._read() as conn:
            return reads.list_artifacts(conn, flow_id, run_id, task_id, attempt)
