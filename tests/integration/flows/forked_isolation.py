"""Pre-forked workers keep tasks apart (tests/integration/test_forked_workers.py).

Every task of ``work`` appends its item to a module-level list, draws from numpy's global
random state and reports where it ran; the "leak" task keeps 256 MiB alive in a module global.
Run with ``--max-workers 1`` the tasks follow each other in one zygote.
"""

import os
import sys

import numpy as np
from polyflow import FlowSpec, step

SEEN: list[str] = []
"""Module-level state: each task should find it as the module left it."""


def _rss_mib(pid: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1.0


class ForkedIsolationFlow(FlowSpec):
    @step
    def start(self):
        self.items = ["mutate", "leak", "check", "check"]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        SEEN.append(self.input)
        self.seen = list(SEEN)
        self.pid = os.getpid()
        self.argv0 = sys.argv[0]  # the zygote's module when forked, the worker's when spawned
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as cmdline:
            self.parent = cmdline.read().replace(b"\0", b" ").decode().strip()
        self.random = float(np.random.rand())
        if self.input == "leak":
            globals()["BALLAST"] = b"x" * (256 << 20)
        self.rss_mib = _rss_mib("self")
        self.parent_rss_mib = _rss_mib(str(os.getppid()))
        print(f"task {self.input} in {self.pid}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.pids = [task.pid for task in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ForkedIsolationFlow()
