"""The SQLite metadata store's schema: its tables and indexes (described in
:mod:`polyflow_core.metadata.sqlite`), and the migration that creates them in a new file.
Only :mod:`polyflow_core.metadata.sqlite` uses this module.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from polyflow_core.errors import FailedPreconditionError
from polyflow_core.metadata._sqlite_codec import now_us

__all__ = ["SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 1
"""Version of the schema this module creates and reads."""

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


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file; refuse a file from a newer version.

    ``conn`` is the writer, inside a write transaction; ``path`` is the file, for the error.

    Raises:
        FailedPreconditionError: The file was written by a newer schema version (reason
            ``SCHEMA_TOO_NEW``).
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise FailedPreconditionError(
            f"{path} has schema version {version}; this Polyflow reads up to {SCHEMA_VERSION}",
            reason="SCHEMA_TOO_NEW",
            metadata={"path": str(path), "version": str(version)},
        )
    if version == 0:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (SCHEMA_VERSION, now_us()),
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    # Future versions: apply migrations version+1 .. SCHEMA_VERSION here.
