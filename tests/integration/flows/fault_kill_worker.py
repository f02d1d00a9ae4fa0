"""A step whose first attempt announces its worker's pid and sleeps, waiting to be killed
with SIGKILL by the test; its retry finishes."""

import os
import time

from polyflow import FlowSpec, current, retry, step


def announce(name):
    """Write this process's pid to $PF_FAULT_DIR/<name>.pid (atomically)."""
    folder = os.environ["PF_FAULT_DIR"]
    temporary = os.path.join(folder, f".{name}.{os.getpid()}")
    with open(temporary, "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(temporary, os.path.join(folder, f"{name}.pid"))


class FaultKillWorkerFlow(FlowSpec):
    @step
    def start(self):
        self.before = "kept"
        self.next(self.victim)

    @retry(times=1, minutes_between_retries=0)
    @step
    def victim(self):
        self.retry_seen = current.retry_count
        if current.retry_count == 0:
            print("waiting to be killed", flush=True)
            announce("victim")
            time.sleep(600)
        self.next(self.end)

    @step
    def end(self):
        self.result = f"{self.before} after {self.retry_seen} retry"


if __name__ == "__main__":
    FaultKillWorkerFlow()
