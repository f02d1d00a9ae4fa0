"""Metadata at scale: with many runs and tasks stored, list a flow's first page of runs and
read a task, in the store itself and through the daemon (gRPC, the client API's path).

    .venv/bin/python bench/metadata_scale.py [--runs 10000] [--tasks 100000] [--calls 200]

The store is filled once (kept under ``.cache/`` at the repository root, keyed by the sizes)
through the store's own write API, in group commits. Prints one JSON line with the per-call
times in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOW = "ScaleFlow"
ARTIFACTS_PER_TASK = 3


def _fill(root: Path, runs: int, tasks: int) -> None:
    from polyflow_core.metadata.base import (
        ArtifactRecord,
        ForeachFrameRecord,
        RunState,
        TaskState,
    )
    from polyflow_core.metadata.sqlite import SqliteMetadataStore

    store = SqliteMetadataStore(root / "metadata.db")
    per_run = max(1, tasks // runs)
    digest = "sha256:" + "0" * 64
    started = time.perf_counter()
    for run_index in range(runs):
        with store.batch():
            run = store.create_run(
                flow_id=FLOW,
                user="bench",
                tags=("user:bench", f"batch:{run_index % 10}"),
                system_tags=("runtime:dev",),
                graph=b"",
                options=b"",
                environment=b"",
                namespace="user:bench",
            )
            for index in range(per_run):
                frames = (ForeachFrameRecord("start", "items", index, per_run, str(index)),)
                task = store.create_task(
                    flow_id=FLOW,
                    run_id=run.run_id,
                    step_name="square" if index else "start",
                    foreach_stack=frames if index else (),
                    input_tasks=(),
                )
                store.start_attempt(FLOW, run.run_id, task.task_id, 0)
                store.finish_attempt(
                    FLOW,
                    run.run_id,
                    task.task_id,
                    0,
                    state=TaskState.SUCCEEDED,
                    artifacts=[
                        ArtifactRecord(f"a{i}", digest, "json", 2, "builtins.int")
                        for i in range(ARTIFACTS_PER_TASK)
                    ],
                    next_steps=("join",),
                )
            store.set_run_state(FLOW, run.run_id, RunState.SUCCEEDED)
        if run_index % 1000 == 999:
            print(
                f"filled {run_index + 1} runs in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    store.close()


def _times(call: Callable[[], object], calls: int) -> list[float]:
    for _ in range(5):
        call()
    found = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        found.append((time.perf_counter() - start) * 1000)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    base = Path(os.environ.get("POLYFLOW_BENCH_CACHE") or REPO / ".cache")
    cache = base / f"bench-metadata-{args.runs}-{args.tasks}"
    root = cache / ".polyflow"
    if not (root / "metadata.db").exists() or not (cache / "complete").exists():
        shutil.rmtree(cache, ignore_errors=True)
        root.mkdir(parents=True, mode=0o700)
        _fill(root, args.runs, args.tasks)
        (cache / "complete").write_text("ok\n")

    from polyflow_core.metadata.sqlite import SqliteMetadataStore

    timings: dict[str, list[float]] = {}
    store = SqliteMetadataStore(root / "metadata.db")
    newest = store.list_runs(FLOW, 1, "").items[0]
    middle_run = str(int(newest.run_id) // 2 or 1)
    task_id = "2"
    timings["store: list_runs, first page (100)"] = _times(
        lambda: store.list_runs(FLOW, 100, ""), args.calls
    )
    timings["store: list_runs with a tag, first page (100)"] = _times(
        lambda: store.list_runs(FLOW, 100, "", tags=("batch:3",)), args.calls
    )
    timings["store: get_task"] = _times(
        lambda: store.get_task(FLOW, middle_run, task_id), args.calls
    )
    timings["store: list_artifacts of a task"] = _times(
        lambda: store.list_artifacts(FLOW, middle_run, task_id, 0), args.calls
    )
    store.close()

    # Through a daemon on that root, as the client API reads it.
    env = dict(os.environ)
    env.pop("POLYFLOW_CORE_ADDRESS", None)
    env["POLYFLOW_ROOT"] = str(root)
    code = (
        "import json, sys, time\n"
        "from polyflow import Flow, Task, namespace\n"
        "namespace(None)\n"
        "calls = int(sys.argv[1]); run = sys.argv[2]\n"
        "from polyflow._daemon import get_client\n"
        "client = get_client()\n"
        "def t(call):\n"
        "    for _ in range(5): call()\n"
        "    out = []\n"
        "    for _ in range(calls):\n"
        "        s = time.perf_counter(); call(); out.append((time.perf_counter() - s) * 1000)\n"
        "    return out\n"
        "res = {}\n"
        f"res['gRPC: ListRuns, first page (100)'] = t(lambda: list(zip(range(100), "
        f"client.list_runs('flows/{FLOW}', page_size=100))))\n"
        f"res['client: Flow(...).latest_run'] = t(lambda: Flow('{FLOW}').latest_run)\n"
        f"res['client: Task(...) and its .finished_at'] = t(lambda: "
        f"Task('{FLOW}/' + run + '/square/{task_id}').finished_at)\n"
        "print(json.dumps(res))\n"
    )
    try:
        for cache_reads in ("0", "1"):
            env["POLYFLOW_CLIENT_CACHE"] = cache_reads
            proc = subprocess.run(
                [sys.executable, "-c", code, str(args.calls), middle_run],
                env=env,
                cwd=cache,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                raise SystemExit(f"client timing failed:\n{proc.stdout}\n{proc.stderr}")
            suffix = " (cached: nothing changed since)" if cache_reads == "1" else ""
            for key, value in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                timings[key + suffix] = value
    finally:
        subprocess.run(
            [sys.executable, "-c", "from polyflow._cli.main import main; main()", "daemon", "stop"],
            env=env,
            cwd=cache,
            capture_output=True,
            timeout=60,
        )
    print(json.dumps({"runs": args.runs, "tasks": args.tasks, "timings_ms": timings}))


if __name__ == "__main__":
    main()
