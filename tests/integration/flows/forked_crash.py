"""A task that crashes its process (tests/integration/test_forked_workers.py).

``start`` behaves as its ``mode`` parameter says: ``segv`` dereferences a null pointer,
``kill9`` SIGKILLs itself, ``sleep`` waits to be killed, ``exit3`` calls ``os._exit(3)``,
anything else succeeds. Every task records the module-level list it found.
"""

import ctypes
import os
import sys
import time

from polyflow import FlowSpec, Parameter, step

STATE: list[str] = []


class ForkedCrashFlow(FlowSpec):
    mode = Parameter("mode", default="ok")

    @step
    def start(self):
        STATE.append(self.mode)
        self.seen = list(STATE)
        self.argv0 = sys.argv[0]  # the zygote's module when forked, the worker's when spawned
        print(f"mode {self.mode}", flush=True)
        if self.mode == "segv":
            ctypes.string_at(0)
        elif self.mode == "kill9":
            os.kill(os.getpid(), 9)
        elif self.mode == "exit3":
            os._exit(3)
        elif self.mode == "sleep":
            time.sleep(120)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ForkedCrashFlow()
