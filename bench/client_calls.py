"""Client API calls in a warm process: ``Flow(name).latest_run`` and ``Run(pathspec).data.x``.

Run by ``bench/run.py`` with each system's interpreter, in a project where ``HelloFlow`` ran:

    python client_calls.py {metaflow|polyflow} CALLS

Prints one JSON line: the per-call times (seconds) of each call, after a few warm-up calls.
"""

from __future__ import annotations

import importlib
import json
import sys
import time

WARMUP = 5


def main() -> None:
    system, calls = sys.argv[1], int(sys.argv[2])
    api = importlib.import_module(system)
    flow_cls, run_cls = api.Flow, api.Run

    def latest_run() -> str:
        return str(flow_cls("HelloFlow").latest_run.pathspec)

    pathspec = latest_run()

    def data_x() -> object:
        return run_cls(pathspec).data.x

    result: dict[str, list[float]] = {}
    for name, call in (("latest_run", latest_run), ("data_x", data_x)):
        for _ in range(WARMUP):
            call()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        result[name] = times
    assert data_x() == 1
    print(json.dumps(result))


if __name__ == "__main__":
    main()
