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
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from polyflow_core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from polyflow_core.metadata.base import (
    MAX_USER_TAGS,
    ArtifactRecord,
    AttemptRecord,
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

SCHEMA_VERSION = 1
"""Version of the schema this module creates and reads."""
DEFAULT_PAGE_SIZE = 100
"""Page size used when a listing is given 0."""
MAX_PAGE_SIZE = 1000
"""Larger page sizes are reduced to this."""

_UNFINISHED_RUN = (RunState.PENDING.value, RunState.RUNNING.value)
_UNFINISHED_ATTEMPT = (TaskState.PENDING.value, TaskState.RUNNING.value)
_TASK_LEVEL = -1  # the `attempt` of task-level rows in the metadata table
_IN_CHUNK = 500  # bound on the number of `?` in one IN (...) list

_SCHEMA = """
CREATE TABLE schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    applied_at INTEGER NOT NULL
);
CREATE TABLE flows (
    flow_id TEXT NOT NULL PRIMARY KEY,
    create_time INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    finish_time INTEGER,
    user TEXT NOT NULL,
    graph BLOB NOT NULL,
    failure_message TEXT NOT NULL DEFAULT '',
    origin_run_id TEXT NOT NULL DEFAULT '',
    end_task_id INTEGER,
    options BLOB NOT NULL,
    environment BLOB NOT NULL,
    namespace TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    next_task_id INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX runs_by_flow ON runs (flow_id, run_id);
CREATE UNIQUE INDEX runs_by_request ON runs (flow_id, request_id) WHERE request_id != '';
CREATE INDEX runs_unfinished ON runs (state) WHERE state IN (1, 2);
CREATE TABLE run_tags (
    run_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    system INTEGER NOT NULL,
    PRIMARY KEY (run_id, tag, system)
) WITHOUT ROWID;
CREATE INDEX run_tags_by_tag ON run_tags (tag, run_id);
CREATE TABLE steps (
    run_id INTEGER NOT NULL,
    step_name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    flow_id TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_name)
) WITHOUT ROWID;
CREATE UNIQUE INDEX steps_by_seq ON steps (run_id, seq);
CREATE TABLE tasks (
    run_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    flow_id TEXT NOT NULL,
    step_name TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    foreach_stack TEXT NOT NULL,
    input_tasks TEXT NOT NULL,
    origin_task TEXT NOT NULL DEFAULT '',
    latest_attempt INTEGER,
    finish_time INTEGER,
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX tasks_by_step ON tasks (run_id, step_name, task_id, finish_time);
CREATE TABLE attempts (
    run_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    state INTEGER NOT NULL,
    start_time INTEGER,
    finish_time INTEGER,
    failure_message TEXT NOT NULL DEFAULT '',
    exception TEXT,
    next_steps TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, task_id, attempt)
);
CREATE INDEX attempts_unfinished ON attempts (state) WHERE state IN (1, 2);
CREATE TABLE artifacts (
    run_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    name TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    encoding TEXT NOT NULL,
    size INTEGER NOT NULL,
    type_name TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id, attempt, name)
) WITHOUT ROWID;
CREATE TABLE metadata (
    run_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id, attempt, field)
) WITHOUT ROWID;
"""

_RUN_COLUMNS = (
    "r.run_id, r.flow_id, r.state, r.create_time, r.finish_time, r.user, {graph}, "
    "r.failure_message, r.origin_run_id, r.end_task_id, r.options, r.environment, r.namespace, "
    "(SELECT t.step_name FROM tasks t WHERE t.run_id = r.run_id AND t.task_id = r.end_task_id)"
)
_NO_GRAPH = "X''"  # an empty blob in place of the graph column
_TASK_COLUMNS = (
    "run_id, task_id, flow_id, step_name, create_time, foreach_stack, input_tasks, origin_task"
)
_STEP_FINISH = (
    "(SELECT CASE WHEN COUNT(*) = COUNT(t.finish_time) THEN MAX(t.finish_time) END "
    "FROM tasks t WHERE t.run_id = s.run_id AND t.step_name = s.step_name)"
)


# --- conversions --------------------------------------------------------------------------
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _now_us() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1000


def _to_dt(micros: int) -> dt.datetime:
    """Stored time to an aware UTC datetime."""
    return _EPOCH + dt.timedelta(microseconds=micros)


def _to_dt_opt(micros: int | None) -> dt.datetime | None:
    """Like :func:`_to_dt`, keeping None."""
    return None if micros is None else _to_dt(micros)


def _int_id(value: str) -> int | None:
    """A decimal id as an int; None for anything else (which then matches nothing)."""
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def _page_size(page_size: int) -> int:
    """Apply the default and the maximum.

    Raises:
        InvalidArgumentError: Negative page size.
    """
    if page_size < 0:
        raise InvalidArgumentError(
            f"page_size must be >= 0, got {page_size}",
            reason="INVALID_PAGE_SIZE",
            metadata={"page_size": str(page_size)},
        )
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def _encode_token(listing: str, scope: object, key: object) -> str:
    """An opaque token for the page after ``key`` of ``listing`` within ``scope``."""
    raw = json.dumps({"l": listing, "s": scope, "k": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, listing: str, scope: object) -> Any:
    """The cursor in ``token``, or None for an empty token.

    Raises:
        InvalidArgumentError: The token is malformed or belongs to another listing (reason
            ``INVALID_PAGE_TOKEN``).
    """
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = json.loads(raw)
        if (
            isinstance(cursor, dict)
            and cursor.get("l") == listing
            and cursor.get("s") == json.loads(json.dumps(scope))
            and "k" in cursor
        ):
            return cursor["k"]
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise InvalidArgumentError(
        "page_token is malformed or was issued for another listing",
        reason="INVALID_PAGE_TOKEN",
        metadata={"page_token": token[:100]},
    )


def _check_key(key: Any, kind: type) -> Any:
    """Check a decoded cursor key's type."""
    if not isinstance(key, kind) or isinstance(key, bool):
        raise InvalidArgumentError(
            "page_token is malformed", reason="INVALID_PAGE_TOKEN", metadata={}
        )
    return key


def _exception_json(exception: ExceptionRecord | None) -> str | None:
    if exception is None:
        return None
    return json.dumps(
        {"type": exception.type, "message": exception.message, "traceback": exception.traceback}
    )


def _exception_from(text: str | None) -> ExceptionRecord | None:
    if text is None:
        return None
    data = json.loads(text)
    return ExceptionRecord(type=data["type"], message=data["message"], traceback=data["traceback"])


def _frames_json(frames: Sequence[ForeachFrameRecord]) -> str:
    return json.dumps([[f.step, f.var, f.index, f.num_splits, f.value_repr] for f in frames])


def _frames_from(text: str) -> tuple[ForeachFrameRecord, ...]:
    return tuple(
        ForeachFrameRecord(step=s, var=v, index=i, num_splits=n, value_repr=r)
        for s, v, i, n, r in json.loads(text)
    )


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _run_not_found(flow_id: str, run_id: str) -> NotFoundError:
    return NotFoundError(
        f"run {flow_id}/{run_id} does not exist", metadata={"flow_id": flow_id, "run_id": run_id}
    )


def _task_not_found(flow_id: str, run_id: str, task_id: str) -> NotFoundError:
    return NotFoundError(
        f"task {flow_id}/{run_id}/*/{task_id} does not exist",
        metadata={"flow_id": flow_id, "run_id": run_id, "task_id": task_id},
    )


def _check_attempt(attempt: int) -> None:
    if attempt < 0:
        raise InvalidArgumentError(
            f"attempt must be >= 0, got {attempt}", metadata={"attempt": str(attempt)}
        )


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
        self._migrate()

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

    def _migrate(self) -> None:
        """Create the schema in a new file; refuse a file from a newer version."""
        with self._write() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise FailedPreconditionError(
                    f"{self._path} has schema version {version}; this Polyflow reads up to "
                    f"{SCHEMA_VERSION}",
                    reason="SCHEMA_TOO_NEW",
                    metadata={"path": str(self._path), "version": str(version)},
                )
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (SCHEMA_VERSION, _now_us()),
                )
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # Future versions: apply migrations version+1 .. SCHEMA_VERSION here.

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
        now = _now_us()
        user_tags = sorted(set(tags))
        sys_tags = sorted(set(system_tags))
        with self._write() as conn:
            if request_id:
                row = conn.execute(
                    "SELECT run_id FROM runs WHERE flow_id = ? AND request_id = ?",
                    (flow_id, request_id),
                ).fetchone()
                if row is not None:
                    return self._get_run(conn, flow_id, row[0], with_graph=True)
            conn.execute(
                "INSERT OR IGNORE INTO flows (flow_id, create_time) VALUES (?, ?)", (flow_id, now)
            )
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
            create_time=_to_dt(now),
            finish_time=None,
            user=user,
            graph=bytes(graph),
            origin_run_id=origin_run_id,
            options=bytes(options),
            environment=bytes(environment),
            namespace=namespace,
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
            end_task = _int_id(end_task_id)
            if end_task is None:
                raise InvalidArgumentError(
                    f"end_task_id {end_task_id!r} is not a task id",
                    metadata={"end_task_id": end_task_id},
                )
        finished = state in (RunState.SUCCEEDED, RunState.FAILED)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE runs SET state = ?, failure_message = ?, "
                "finish_time = ?, end_task_id = COALESCE(?, end_task_id) "
                "WHERE run_id = ? AND flow_id = ?",
                (
                    state.value,
                    failure_message,
                    _now_us() if finished else None,
                    end_task,
                    _int_id(run_id),
                    flow_id,
                ),
            )
            if cursor.rowcount == 0:
                raise _run_not_found(flow_id, run_id)

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
        run = _int_id(run_id)
        with self._write() as conn:
            self._check_run(conn, flow_id, run, run_id)
            user: set[str] = set()
            system: set[str] = set()
            for tag, is_system in conn.execute(
                "SELECT tag, system FROM run_tags WHERE run_id = ?", (run,)
            ):
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
            assert run is not None  # _check_run found it
            return self._get_run(conn, flow_id, run, with_graph=False)

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
            explicit = _int_id(task_id)
            if explicit is None:
                raise InvalidArgumentError(
                    f"task_id {task_id!r} is not a decimal id", metadata={"task_id": task_id}
                )
        run = _int_id(run_id)
        now = _now_us()
        meta = dict(metadata or {})
        with self._write() as conn:
            row = conn.execute(
                "SELECT next_task_id FROM runs WHERE run_id = ? AND flow_id = ?", (run, flow_id)
            ).fetchone()
            if row is None:
                raise _run_not_found(flow_id, run_id)
            counter = int(row[0])
            if explicit is None:
                new_id, counter = counter, counter + 1
            else:
                new_id, counter = explicit, max(counter, explicit + 1)
            try:
                conn.execute(
                    f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run,
                        new_id,
                        flow_id,
                        step_name,
                        now,
                        _frames_json(foreach_stack),
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
                "INSERT INTO metadata (run_id, task_id, attempt, field, value) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run, new_id, _TASK_LEVEL, k, v) for k, v in meta.items()],
            )
        return TaskRecord(
            flow_id=flow_id,
            run_id=run_id,
            step_name=step_name,
            task_id=str(new_id),
            create_time=_to_dt(now),
            foreach_stack=tuple(foreach_stack),
            input_tasks=tuple(input_tasks),
            attempts=(),
            origin_task=origin_task,
            metadata=meta,
        )

    def _task_row(
        self, conn: sqlite3.Connection, flow_id: str, run_id: str, task_id: str
    ) -> tuple[int, int, int | None]:
        """``(run, task, latest_attempt)`` of an existing task; NotFoundError otherwise."""
        run, task = _int_id(run_id), _int_id(task_id)
        row = conn.execute(
            "SELECT latest_attempt FROM tasks WHERE run_id = ? AND task_id = ? AND flow_id = ?",
            (run, task, flow_id),
        ).fetchone()
        if row is None or run is None or task is None:
            raise _task_not_found(flow_id, run_id, task_id)
        return run, task, row[0]

    def start_attempt(self, flow_id: str, run_id: str, task_id: str, attempt: int) -> None:
        """Record that an attempt started: RUNNING, start time now.

        Raises:
            NotFoundError: No such task.
            InvalidArgumentError: Negative attempt.
            FailedPreconditionError: The attempt exists already (reason ``ATTEMPT_EXISTS``).
        """
        _check_attempt(attempt)
        with self._write() as conn:
            run, task, latest = self._task_row(conn, flow_id, run_id, task_id)
            try:
                conn.execute(
                    "INSERT INTO attempts (run_id, task_id, attempt, state, start_time) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (run, task, attempt, TaskState.RUNNING.value, _now_us()),
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
        _check_attempt(attempt)
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
        now = _now_us()
        with self._write() as conn:
            run, task, latest = self._task_row(conn, flow_id, run_id, task_id)
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
                _exception_json(exception),
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
                    "UPDATE tasks SET latest_attempt = ?, finish_time = ? "
                    "WHERE run_id = ? AND task_id = ?",
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

    def fail_unfinished_runs(self, message: str) -> list[tuple[str, str]]:
        """Mark PENDING/RUNNING runs and attempts FAILED with ``message``.

        Tasks that never got an attempt are left without one (their run is FAILED).
        """
        now = _now_us()
        with self._write() as conn:
            runs = conn.execute(
                "SELECT flow_id, run_id FROM runs WHERE state IN (?, ?) ORDER BY run_id",
                _UNFINISHED_RUN,
            ).fetchall()
            attempts = conn.execute(
                "SELECT run_id, task_id, attempt FROM attempts WHERE state IN (?, ?)",
                _UNFINISHED_ATTEMPT,
            ).fetchall()
            conn.execute(
                "UPDATE attempts SET state = ?, finish_time = ?, failure_message = ? "
                "WHERE state IN (?, ?)",
                (TaskState.FAILED.value, now, message, *_UNFINISHED_ATTEMPT),
            )
            conn.executemany(
                "UPDATE tasks SET finish_time = ? "
                "WHERE run_id = ? AND task_id = ? AND latest_attempt = ?",
                [(now, run, task, attempt) for run, task, attempt in attempts],
            )
            conn.execute(
                "UPDATE runs SET state = ?, finish_time = ?, failure_message = ? "
                "WHERE state IN (?, ?)",
                (RunState.FAILED.value, now, message, *_UNFINISHED_RUN),
            )
        return [(flow_id, str(run_id)) for flow_id, run_id in runs]

    # --- reads --------------------------------------------------------------------------
    def list_flows(self, page_size: int, page_token: str) -> Page[FlowRecord]:
        """Flows by name."""
        size = _page_size(page_size)
        after = _decode_token(page_token, "flows", None)
        if after is not None:
            _check_key(after, str)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT flow_id, create_time FROM flows WHERE flow_id > ? ORDER BY flow_id LIMIT ?",
                ("" if after is None else after, size + 1),
            ).fetchall()
        items = [FlowRecord(flow_id=f, create_time=_to_dt(t)) for f, t in rows[:size]]
        token = _encode_token("flows", None, items[-1].flow_id) if len(rows) > size else ""
        return Page(items=items, next_page_token=token)

    def get_flow(self, flow_id: str) -> FlowRecord:
        """One flow; NotFoundError when it has no run."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT create_time FROM flows WHERE flow_id = ?", (flow_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"flow {flow_id} does not exist", metadata={"flow_id": flow_id})
        return FlowRecord(flow_id=flow_id, create_time=_to_dt(row[0]))

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
        size = _page_size(page_size)
        wanted_tags = sorted(set(tags))
        wanted_states = sorted({state.value for state in states})
        scope = [flow_id, wanted_tags, wanted_states]
        before = _decode_token(page_token, "runs", scope)
        sql = [f"SELECT {_RUN_COLUMNS.format(graph=_NO_GRAPH)} FROM runs r WHERE r.flow_id = ?"]
        params: list[object] = [flow_id]
        if before is not None:
            sql.append("AND r.run_id < ?")
            params.append(_check_key(before, int))
        if wanted_states:
            sql.append(f"AND r.state IN ({', '.join('?' * len(wanted_states))})")
            params.extend(wanted_states)
        for tag in wanted_tags:
            sql.append(
                "AND EXISTS (SELECT 1 FROM run_tags g WHERE g.run_id = r.run_id AND g.tag = ?)"
            )
            params.append(tag)
        sql.append("ORDER BY r.run_id DESC LIMIT ?")
        params.append(size + 1)
        with self._read() as conn:
            if conn.execute("SELECT 1 FROM flows WHERE flow_id = ?", (flow_id,)).fetchone() is None:
                raise NotFoundError(f"flow {flow_id} does not exist", metadata={"flow_id": flow_id})
            rows = conn.execute(" ".join(sql), params).fetchall()
            runs = self._runs_from_rows(conn, rows[:size])
        token = ""
        if len(rows) > size:
            token = _encode_token("runs", scope, int(runs[-1].run_id))
        return Page(items=runs, next_page_token=token)

    def get_run(self, flow_id: str, run_id: str) -> RunRecord:
        """One run, graph included; NotFoundError when absent."""
        run = _int_id(run_id)
        with self._read() as conn:
            if run is None:
                raise _run_not_found(flow_id, run_id)
            return self._get_run(conn, flow_id, run, with_graph=True)

    def _get_run(
        self, conn: sqlite3.Connection, flow_id: str, run: int, *, with_graph: bool
    ) -> RunRecord:
        graph = "r.graph" if with_graph else _NO_GRAPH
        row = conn.execute(
            f"SELECT {_RUN_COLUMNS.format(graph=graph)} FROM runs r "
            "WHERE r.run_id = ? AND r.flow_id = ?",
            (run, flow_id),
        ).fetchone()
        if row is None:
            raise _run_not_found(flow_id, str(run))
        return self._runs_from_rows(conn, [row])[0]

    @staticmethod
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
                create_time=_to_dt(created),
                finish_time=_to_dt_opt(finished),
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

    def list_steps(
        self, flow_id: str, run_id: str, page_size: int, page_token: str
    ) -> Page[StepRecord]:
        """A run's steps, in the order they got their first task.

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: Bad page size or token.
        """
        size = _page_size(page_size)
        run = _int_id(run_id)
        after = _decode_token(page_token, "steps", [flow_id, run_id])
        seq = 0 if after is None else _check_key(after, int)
        with self._read() as conn:
            self._check_run(conn, flow_id, run, run_id)
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
                create_time=_to_dt(created),
                finish_time=_to_dt_opt(finished),
            )
            for name, created, finished, _ in rows[:size]
        ]
        token = ""
        if len(rows) > size:
            token = _encode_token("steps", [flow_id, run_id], rows[size - 1][3])
        return Page(items=items, next_page_token=token)

    @staticmethod
    def _check_run(conn: sqlite3.Connection, flow_id: str, run: int | None, run_id: str) -> None:
        row = conn.execute(
            "SELECT 1 FROM runs WHERE run_id = ? AND flow_id = ?", (run, flow_id)
        ).fetchone()
        if row is None:
            raise _run_not_found(flow_id, run_id)

    def get_step(self, flow_id: str, run_id: str, step_name: str) -> StepRecord:
        """One step; NotFoundError when the run is absent or the step has no task."""
        run = _int_id(run_id)
        with self._read() as conn:
            row = conn.execute(
                f"SELECT s.create_time, {_STEP_FINISH} FROM steps s "
                "WHERE s.run_id = ? AND s.step_name = ? AND s.flow_id = ?",
                (run, step_name, flow_id),
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
            create_time=_to_dt(row[0]),
            finish_time=_to_dt_opt(row[1]),
        )

    def list_tasks(
        self, flow_id: str, run_id: str, step_name: str, page_size: int, page_token: str
    ) -> Page[TaskRecord]:
        """A step's tasks by ascending task id.

        Raises:
            NotFoundError: The run is absent or the step has no task.
            InvalidArgumentError: Bad page size or token.
        """
        size = _page_size(page_size)
        run = _int_id(run_id)
        scope = [flow_id, run_id, step_name]
        after = _decode_token(page_token, "tasks", scope)
        start = -1 if after is None else _check_key(after, int)
        with self._read() as conn:
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
                f"SELECT {_TASK_COLUMNS} FROM tasks "
                "WHERE run_id = ? AND step_name = ? AND task_id > ? ORDER BY task_id LIMIT ?",
                (run, step_name, start, size + 1),
            ).fetchall()
            tasks = self._tasks_from_rows(conn, rows[:size])
        token = ""
        if len(rows) > size:
            token = _encode_token("tasks", scope, int(tasks[-1].task_id))
        return Page(items=tasks, next_page_token=token)

    def get_task(self, flow_id: str, run_id: str, task_id: str) -> TaskRecord:
        """One task with its attempts; NotFoundError when absent."""
        run, task = _int_id(run_id), _int_id(task_id)
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks "
                "WHERE run_id = ? AND task_id = ? AND flow_id = ?",
                (run, task, flow_id),
            ).fetchone()
            if row is None:
                raise _task_not_found(flow_id, run_id, task_id)
            return self._tasks_from_rows(conn, [row])[0]

    @staticmethod
    def _tasks_from_rows(conn: sqlite3.Connection, rows: Sequence[Any]) -> list[TaskRecord]:
        """Records for task rows of one run (``_TASK_COLUMNS`` order), with attempts and
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
                    create_time=_to_dt(created),
                    foreach_stack=_frames_from(frames),
                    input_tasks=tuple(json.loads(inputs)),
                    attempts=tuple(
                        AttemptRecord(
                            attempt=number,
                            state=TaskState(state),
                            start_time=_to_dt_opt(started),
                            finish_time=_to_dt_opt(finished),
                            failure_message=failure,
                            exception=_exception_from(exception),
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
                    metadata=metadata.get((task_id, _TASK_LEVEL), {}),
                )
            )
        return records

    def list_artifacts(
        self, flow_id: str, run_id: str, task_id: str, attempt: int
    ) -> list[ArtifactRecord]:
        """The artifacts one attempt stored, by name.

        Raises:
            NotFoundError: The task or the attempt does not exist.
        """
        run, task = _int_id(run_id), _int_id(task_id)
        with self._read() as conn:
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
